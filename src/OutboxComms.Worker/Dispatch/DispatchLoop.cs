using Microsoft.Extensions.Options;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// The worker's main loop: process batches back to back while there is work; when a batch comes
/// back short, sleep until NOTIFY or the poll interval (≤ 1 s). Any failure is logged and the loop
/// carries on after a pause; it only ends when the host stops.
/// </summary>
internal sealed class DispatchLoop(BatchProcessor processor, DispatchSignal signal, IOptions<DispatchOptions> options, ILogger<DispatchLoop> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        DispatchLog.Started(logger, processor.WorkerId, settings.BatchSize, settings.MaxConcurrentSends, settings.PollInterval);

        // In-flight sends get ShutdownGrace after the stop signal before they are cancelled.
        using var sends = new CancellationTokenSource();
        await using var graceOnStop = stoppingToken.Register(() => sends.CancelAfter(settings.ShutdownGrace));

        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var claimed = await processor.RunOnceAsync(stoppingToken, sends.Token);
                failures = 0;
                if (claimed < settings.BatchSize)
                {
                    await signal.WaitAsync(settings.PollInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                var delay = TimeSpan.FromSeconds(Math.Min(30, Math.Pow(2, Math.Min(failures++, 5))));
                DispatchLog.IterationFailed(logger, ex, delay);
                try
                {
                    await Task.Delay(delay, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }
    }
}
