using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Worker;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A worker host as production builds it (AddWorkerServices), pointed at a test database, with the
/// test providers registered and optionally a clock of the test's. Tests either start it (the real
/// loop, LISTEN/NOTIFY and all) or drive single batches through <see cref="RunOnceAsync"/>.
/// A <see cref="FakeTimeProvider"/> is far from PostgreSQL's clock by design (days, or a minute
/// ahead), so with one the clock-skew guard, on in production, is off unless the test's settings
/// turn it on (ClockSkewGuardTests do). Each harness is a host of its own to the guard (one clock
/// vote per host) unless <c>clockHost</c> names one.
/// </summary>
public sealed class WorkerHarness : IAsyncDisposable
{
    private readonly IHost host;
    private bool started;

    public WorkerHarness(string connectionString, IEnumerable<IMessageProvider> providers, TimeProvider? time = null, Dictionary<string, string?>? settings = null, string? clockHost = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Outbox"] = connectionString,
            ["Dispatch:RetryBaseDelay"] = "00:00:10",
            // Short, so stopping is quick, yet above the 3 s the clock check needs (its limit is then 0.667 s).
            ["Dispatch:ShutdownGrace"] = "00:00:04",
            ["OUTBOXCOMMS_ENCRYPTION_KEY"] = TestKeys.Encryption,
            ["Providers:AllowPrivateNetworks"] = "true",   // the test servers listen on loopback
        });
        if (time is FakeTimeProvider)
        {
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Dispatch:MaxClockSkew"] = "00:00:00" });
        }
        if (settings is not null)
        {
            builder.Configuration.AddInMemoryCollection(settings);
        }
        builder.AddWorkerServices();
        builder.Services.AddFakeLogging();
        builder.Services.Replace(ServiceDescriptor.Singleton(new WorkerHost(clockHost ?? $"harness:{Guid.NewGuid():N}")));
        if (time is not null)
        {
            builder.Services.Replace(ServiceDescriptor.Singleton<TimeProvider>(time));
        }
        foreach (var provider in providers)
        {
            builder.Services.AddSingleton(provider);
        }
        host = builder.Build();
    }

    public IServiceProvider Services => host.Services;

    /// <summary>What the worker logged, every level.</summary>
    public FakeLogCollector Logs => host.Services.GetFakeLogCollector();

    public string WorkerId => host.Services.GetRequiredService<BatchProcessor>().WorkerId;

    public async Task StartAsync()
    {
        await host.StartAsync();
        started = true;
    }

    public Task StopAsync() => host.StopAsync();

    /// <summary>One claim-decide-send-record cycle; returns how many rows were claimed.</summary>
    public Task<int> RunOnceAsync() =>
        host.Services.GetRequiredService<BatchProcessor>().RunOnceAsync(CancellationToken.None, CancellationToken.None);

    public async ValueTask DisposeAsync()
    {
        if (started)
        {
            await host.StopAsync();
        }
        host.Dispose();
    }

    public static CountingProvider Email() => new("SMTP", Channel.Email);

    public static CountingProvider WhatsApp() => new("WHATSAPP_BUSINESS_API", Channel.WhatsApp);

    public static CountingProvider Sms() => new("TWILIO", Channel.Sms);
}
