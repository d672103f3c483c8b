using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Providers;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

/// <summary>What the per-company provider pipelines tell operators about an outage, on a fake clock.</summary>
public sealed class ProviderCircuitBreakersTests : IDisposable
{
    private readonly FakeTimeProvider time = new(new DateTimeOffset(2026, 1, 5, 6, 0, 0, TimeSpan.Zero));
    private readonly FakeLogCollector logs = new();
    private readonly Guid company = Guid.NewGuid();
    private readonly ServiceProvider services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly OutboxMetrics metrics;
    private readonly ProviderCircuitBreakers breakers;

    public ProviderCircuitBreakersTests()
    {
        metrics = new OutboxMetrics(services.GetRequiredService<IMeterFactory>(), time);
        // A circuit that never opens here: only the outage's own lines are logged.
        breakers = new ProviderCircuitBreakers(Options.Create(new DispatchOptions { BreakerMinimumThroughput = 1000 }), time, metrics, new FakeLogger<ProviderCircuitBreakers>(logs));
    }

    public void Dispose()
    {
        metrics.Dispose();
        services.Dispose();
    }

    [Fact]
    public async Task The_open_circuits_gauge_counts_each_companys_circuit_until_it_closes_or_no_send_has_probed_it_for_long()
    {
        using var open = new MetricCollector<int>(services.GetRequiredService<IMeterFactory>(), OutboxMetrics.MeterName, "outbox.provider.open_circuits");
        var fragile = new ProviderCircuitBreakers(Options.Create(new DispatchOptions
        {
            BreakerMinimumThroughput = 2, BreakerFailureRatio = 0.5, BreakerSamplingDuration = TimeSpan.FromSeconds(30), BreakerBreakDuration = TimeSpan.FromSeconds(30),
        }), time, metrics, new FakeLogger<ProviderCircuitBreakers>(logs));
        var other = Guid.NewGuid();
        async Task SendAsync(Guid to, SendResult result)
        {
            try
            {
                await fragile.ExecuteAsync(to, "SMTP", _ => Task.FromResult(result), TestContext.Current.CancellationToken);
            }
            catch (Polly.CircuitBreaker.BrokenCircuitException)
            {
                // open: the send was not made
            }
        }
        int Open()
        {
            open.RecordObservableInstruments();
            return open.LastMeasurement!.Value;
        }
        var timeout = SendResult.Transient("SMTP timed out");

        await SendAsync(company, timeout);
        await SendAsync(company, timeout);
        await SendAsync(other, timeout);
        await SendAsync(other, timeout);
        Assert.Equal(2, Open());
        Assert.All(open.GetMeasurementSnapshot(), m => Assert.Equal("SMTP", m.Tags["provider"]));

        time.Advance(TimeSpan.FromSeconds(31));
        await SendAsync(company, timeout);   // the half-open probe fails: open again, still one circuit
        Assert.Equal(2, Open());             // the other's break is over, its deferred rows not yet due: still open
        await SendAsync(other, SendResult.Sent("id-1"));   // the probe goes through: closed
        Assert.Equal(1, Open());
        // The company stops sending (its messages went elsewhere, or expired): no probe comes. Its
        // circuit is not reported open for ever, only through the break and twice OutageMaxDelay.
        time.Advance(TimeSpan.FromMinutes(30));
        Assert.Equal(1, Open());
        time.Advance(TimeSpan.FromMinutes(31));
        Assert.Equal(0, Open());
        Assert.Equal(0, open.LastMeasurement!.Value);   // reported as 0, not dropped (an exporter would keep its last 1)
    }

    [Fact]
    public async Task Failures_about_the_message_itself_never_open_the_circuit_and_failures_of_the_provider_do()
    {
        var fragile = new ProviderCircuitBreakers(Options.Create(new DispatchOptions
        {
            BreakerMinimumThroughput = 2, BreakerFailureRatio = 0.5, BreakerSamplingDuration = TimeSpan.FromSeconds(30), BreakerBreakDuration = TimeSpan.FromSeconds(30),
        }), time, metrics, new FakeLogger<ProviderCircuitBreakers>(logs));
        var calls = 0;
        Task<SendResult> Send(SendResult result)
        {
            calls++;
            return Task.FromResult(result);
        }

        // The practice's file server is down: every email with a linked invoice fails for now…
        for (var i = 0; i < 10; i++)
        {
            await fragile.ExecuteAsync(company, "SMTP", _ => Send(SendResult.TransientForThisMessage("SMTP: attachment INV-1042.pdf could not be fetched: HTTP 503")), TestContext.Current.CancellationToken);
        }
        // …and an email without one still goes to the SMTP server.
        await fragile.ExecuteAsync(company, "SMTP", _ => Send(SendResult.Sent("id-1")), TestContext.Current.CancellationToken);
        Assert.Equal(11, calls);

        // The server itself failing opens the circuit: the next send is not made.
        time.Advance(TimeSpan.FromSeconds(31));   // a fresh sampling window
        await fragile.ExecuteAsync(company, "SMTP", _ => Send(SendResult.Transient("SMTP: connection lost")), TestContext.Current.CancellationToken);
        await fragile.ExecuteAsync(company, "SMTP", _ => Send(SendResult.Transient("SMTP: connection lost")), TestContext.Current.CancellationToken);
        await Assert.ThrowsAsync<Polly.CircuitBreaker.BrokenCircuitException>(async () =>
            await fragile.ExecuteAsync(company, "SMTP", _ => Send(SendResult.Sent("id-2")), TestContext.Current.CancellationToken));
        Assert.Equal(13, calls);
    }

    private async Task<IReadOnlyList<string>> SendAsync(SendResult result)
    {
        var before = logs.Count;
        await breakers.ExecuteAsync(company, "SMTP", _ => Task.FromResult(result), TestContext.Current.CancellationToken);
        return [.. logs.GetSnapshot().Skip(before).Select(r => $"{r.Level}: {r.Message}")];
    }

    [Fact]
    public async Task A_refusal_decided_without_the_provider_does_not_end_an_outage_and_only_a_sent_message_does()
    {
        var refused = SendResult.Unavailable("SMTP connection refused");

        Assert.Equal([$"Warning: Provider SMTP of company {company} is unavailable: SMTP connection refused. Its messages wait for it without using up their retries"],
            await SendAsync(refused));
        Assert.Empty(await SendAsync(SendResult.Permanent("caption longer than 1,024 characters")));
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Empty(await SendAsync(refused));   // the same outage, logged again only after 5 minutes
        time.Advance(TimeSpan.FromMinutes(1));

        Assert.Equal([$"Information: Provider SMTP of company {company} is available again after 00:02:00, in which 2 sends found it unavailable"],
            await SendAsync(SendResult.Sent("id-1")));
        Assert.Empty(await SendAsync(SendResult.Sent("id-2")));
    }

    [Fact]
    public async Task An_outage_no_send_has_met_for_twice_the_outage_delay_is_over_and_the_next_one_is_new()
    {
        var refused = SendResult.Unavailable("SMTP connection refused");
        await SendAsync(refused);
        // Sends 50 minutes apart, within twice OutageMaxDelay (30 minutes) of the one before: the same outage.
        time.Advance(TimeSpan.FromMinutes(50));
        await SendAsync(refused);
        time.Advance(TimeSpan.FromMinutes(50));
        Assert.Equal([$"Warning: Provider SMTP of company {company} is still unavailable: since 2026-01-05 06:00:00Z, 3 sends found it so; last error: SMTP connection refused"],
            await SendAsync(refused));

        // Nothing met it for over an hour (the company's messages went elsewhere or expired).
        time.Advance(TimeSpan.FromMinutes(61));

        Assert.Equal([$"Warning: Provider SMTP of company {company} is unavailable: SMTP connection refused. Its messages wait for it without using up their retries"],
            await SendAsync(refused));

        // Over by the same rule when a send goes through after a long quiet: nothing to report.
        time.Advance(TimeSpan.FromHours(14));
        Assert.Empty(await SendAsync(SendResult.Sent("id-1")));
    }
}
