using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>The real API host (Program) on a test database, with test keys.</summary>
public sealed class ApiFactory(string connectionString, IReadOnlyDictionary<string, string?>? settings = null) : WebApplicationFactory<Program>
{
    /// <summary>A clock for the API (e.g. a FakeTimeProvider shared with a worker harness); the system clock when null.</summary>
    public TimeProvider? Time { get; init; }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        if (Time is not null)
        {
            builder.ConfigureTestServices(services => services.Replace(ServiceDescriptor.Singleton(Time)));
        }
        builder.UseSetting("ConnectionStrings:Outbox", connectionString);
        builder.UseSetting("OUTBOXCOMMS_ENCRYPTION_KEY", TestKeys.Encryption);
        builder.UseSetting("OUTBOXCOMMS_ADMIN_KEY", TestKeys.Admin);
        builder.UseSetting("Providers:AllowPrivateNetworks", "true");   // the test servers listen on loopback
        builder.UseSetting("Attachments:AllowPrivateNetworks", "true");
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            builder.UseSetting(key, value);
        }
    }
}
