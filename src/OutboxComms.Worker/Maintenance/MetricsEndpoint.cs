using OutboxComms.Core.Observability;
using Prometheus;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Serves this worker's metrics (the OutboxComms meter and .NET runtime metrics) in Prometheus
/// format on <c>http://+:{Metrics:Port}/metrics</c> when a port is configured; off otherwise, so
/// several workers on one machine need distinct ports or none.
/// </summary>
internal sealed class MetricsEndpoint(IConfiguration configuration) : IHostedService, IDisposable
{
    private KestrelMetricServer? server;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (configuration.GetValue<int?>("Metrics:Port") is { } port and > 0)
        {
            KeepSeries();
            server = new KestrelMetricServer(hostname: configuration["Metrics:Host"] ?? "127.0.0.1", port: port);
            server.Start();
            // prometheus-net subscribes to .NET meters only on its first collection, and a counter's
            // earlier increments are never seen: collect once now, before any batch is dispatched
            // (this service is registered ahead of the dispatch loop), not at the first scrape.
            await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null, cancellationToken);
        }
    }

    /// <summary>
    /// prometheus-net drops a series of a .NET meter after 5 minutes without an update, and the next
    /// increment starts it again at 0: a counter of rare events (a bounce a day) would never show an
    /// increase. A day is the longest it allows; our labels are bounded (status, channel, provider),
    /// and meters whose labels are not are left out (<see cref="OutboxMetrics.IsExported"/>).
    /// </summary>
    internal static void KeepSeries() => Metrics.ConfigureMeterAdapter(options =>
    {
        options.MetricsExpireAfter = TimeSpan.FromDays(1);
        options.InstrumentFilterPredicate = instrument => OutboxMetrics.IsExported(instrument.Meter.Name);
    });

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (server is not null)
        {
            await server.StopAsync();
        }
    }

    public void Dispose() => server?.Dispose();
}
