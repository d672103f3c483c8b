using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Tests.Observability;

public sealed class MetricsTests(PostgresServer server) : IAsyncLifetime
{
    private readonly DatabaseFixture db = new(server);

    public ValueTask InitializeAsync() => db.InitializeAsync();

    public ValueTask DisposeAsync() => db.DisposeAsync();

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    [Fact]
    public async Task A_worker_exports_dispatch_outcomes_and_backlog_in_prometheus_format()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var port = FreePort();
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], settings: new() { ["Metrics:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        await worker.StartAsync();
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: DateTimeOffset.UtcNow.AddHours(5));

        for (var i = 0; i < 600 && (await Outbox.GetAsync(db.DataSource, id)).Status != "SENT"; i++)
        {
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
        using var http = new HttpClient();
        string text = "";
        // Generous bounds: this waits for a mechanism (a scrape showing the outcome), it times nothing.
        // It waits for every series asserted below: the provider-call counter is recorded a moment
        // before the processed counter, and a scrape may fall in between.
        string[] expected = ["outbox_messages_processed", "status=\"SENT\"", "outbox_provider_duration", "outbox_queue_deferred", "outbox_worker_last_dispatch", "outbox_scheduler_passes"];
        for (var i = 0; i < 600 && !expected.All(e => text.Contains(e, StringComparison.Ordinal)); i++)
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
            text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), TestContext.Current.CancellationToken);
        }

        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, id)).Status);
        var sampler = worker.Services.GetServices<IHostedService>().OfType<QueueDepthSampler>().Single();
        var snapshot = await sampler.SampleAsync(TestContext.Current.CancellationToken);
        Assert.Equal((0, 1, 0), (snapshot.Due, snapshot.Deferred, snapshot.InFlight));
        Assert.Contains("outbox_messages_processed", text, StringComparison.Ordinal);
        Assert.Contains("status=\"SENT\"", text, StringComparison.Ordinal);
        Assert.Contains("outbox_provider_duration", text, StringComparison.Ordinal);
        Assert.Contains("outbox_queue_deferred", text, StringComparison.Ordinal);
        // The dispatch loop's last claim, as Unix time: alert when it falls behind the clock.
        var lastDispatch = text.Split('\n').Single(l => l.StartsWith("outboxcomms_outbox_worker_last_dispatch ", StringComparison.Ordinal));
        var at = DateTimeOffset.FromUnixTimeMilliseconds((long)(double.Parse(lastDispatch.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) * 1000));
        Assert.InRange(at, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.Contains("outbox_scheduler_passes{outcome=\"ok\"}", text, StringComparison.Ordinal);
        // This test's own HTTP client has dialled 127.0.0.1 many times: .NET's networking meters,
        // labelled by host (tenants' hosts in production), are not exported.
        Assert.DoesNotContain("http_client_", text, StringComparison.Ordinal);
        Assert.DoesNotContain("dns_lookup_", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_running_worker_keeps_its_heartbeat_file_fresh_for_a_container_healthcheck()
    {
        var file = Path.Combine(Path.GetTempPath(), $"outboxcomms-heartbeat-{Guid.NewGuid():N}");
        try
        {
            await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], settings: new() { ["Health:HeartbeatFile"] = file });
            await worker.StartAsync();
            // Waits for the mechanism (the first claim writes the file); it times nothing.
            for (var i = 0; i < 300 && !File.Exists(file); i++)
            {
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }

            var beat = DateTimeOffset.Parse(await File.ReadAllTextAsync(file, TestContext.Current.CancellationToken), System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(beat, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData(5, 15)]
    [InlineData(150, 15)]
    [InlineData(1_100, 110)]
    [InlineData(30_000, 300)]
    [InlineData(0, 15)]
    public void The_backlog_sampler_waits_longer_after_an_expensive_sample(int sampleMs, int waitSeconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(waitSeconds), QueueDepthSampler.NextWait(TimeSpan.FromMilliseconds(sampleMs)));
    }
}
