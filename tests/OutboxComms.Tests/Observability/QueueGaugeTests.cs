using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using OutboxComms.Core.Observability;

namespace OutboxComms.Tests.Observability;

public sealed class QueueGaugeTests
{
    [Fact]
    public void The_queue_gauges_report_nothing_before_the_first_sample_and_say_when_they_were_sampled()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        using var metrics = new OutboxMetrics(factory);
        using var due = new MetricCollector<long>(factory, OutboxMetrics.MeterName, "outbox.queue.due");
        using var sampledAt = new MetricCollector<double>(factory, OutboxMetrics.MeterName, "outbox.queue.sampled_at");

        // The database unreachable since start: no sample, so no "0 waiting" for an alert to trust.
        due.RecordObservableInstruments();
        sampledAt.RecordObservableInstruments();
        Assert.Empty(due.GetMeasurementSnapshot());
        Assert.Empty(sampledAt.GetMeasurementSnapshot());

        var at = new DateTimeOffset(2026, 12, 7, 4, 30, 0, TimeSpan.Zero);
        metrics.Queue(new QueueSnapshot(1_250, 40, 500, 12.5), at);
        due.RecordObservableInstruments();
        sampledAt.RecordObservableInstruments();

        Assert.Equal(1_250, due.LastMeasurement!.Value);
        Assert.Equal(at.ToUnixTimeSeconds(), sampledAt.LastMeasurement!.Value);
    }
}
