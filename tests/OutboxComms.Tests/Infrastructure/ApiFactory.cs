using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>The real API host (Program) on a test database, with test keys.</summary>
public sealed class ApiFactory(string connectionString, IReadOnlyDictionary<string, string?>? settings = null) : WebApplicationFactory<Program>
{
    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("ConnectionStrings:Outbox", connectionString);
        builder.UseSetting("OUTBOXCOMMS_ENCRYPTION_KEY", TestKeys.Encryption);
        builder.UseSetting("OUTBOXCOMMS_ADMIN_KEY", TestKeys.Admin);
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            builder.UseSetting(key, value);
        }
    }
}
