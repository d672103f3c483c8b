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
            server = new KestrelMetricServer(hostname: configuration["Metrics:Host"] ?? "127.0.0.1", port: port);
            server.Start();
            // prometheus-net subscribes to .NET meters only on its first collection, and a counter's
            // earlier increments are never seen: collect once now, before any batch is dispatched
            // (this service is registered ahead of the dispatch loop), not at the first scrape.
            await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null, cancellationToken);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (server is not null)
        {
            await server.StopAsync();
        }
    }

    public void Dispose() => server?.Dispose();
}
