using Microsoft.Extensions.Options;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// The worker's main loop: process batches back to back while there is work; when a batch comes
/// back short, sleep until NOTIFY or the poll interval (≤ 1 s). <see cref="DispatchOptions.ConcurrentBatches"/>
/// lanes run this loop side by side, so one lane's round trips to PostgreSQL (claim, record) overlap
/// another's policy checks, rendering and sends. Any failure is logged and the lane carries on after
/// a pause; the loop only ends when the host stops. While <see cref="ClockSkewGuard"/> holds claims
/// the lanes only wait, without beating.
/// </summary>
internal sealed class DispatchLoop(BatchProcessor processor, DispatchSignal signal, WorkerHeartbeat heartbeat, ClockSkewGuard clock, IOptions<DispatchOptions> options, ILogger<DispatchLoop> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        DispatchLog.Started(logger, processor.WorkerId, settings.ConcurrentBatches, settings.BatchSize, settings.MaxConcurrentSends, settings.PollInterval);

        // In-flight sends get ShutdownGrace after the stop signal before they are cancelled.
        using var sends = new CancellationTokenSource();
        await using var graceOnStop = stoppingToken.Register(() => sends.CancelAfter(settings.ShutdownGrace));
        await Task.WhenAll(Enumerable.Range(0, settings.ConcurrentBatches).Select(_ => Task.Run(() => RunLaneAsync(settings, sends.Token, stoppingToken), CancellationToken.None)));
    }

    private async Task RunLaneAsync(DispatchOptions settings, CancellationToken sendToken, CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                // A clock that disagrees with the others' (ClockSkewGuard) claims nothing (the processor refuses too),
                // and asked here so that a refusal is not taken for a claim: the heartbeat goes
                // stale, and the worker's healthcheck with it, until the clocks agree again.
                if (!await clock.AllowsClaimsAsync(stoppingToken))
                {
                    await signal.WaitAsync(settings.PollInterval, stoppingToken);
                    continue;
                }
                var claimed = await processor.RunOnceAsync(stoppingToken, sendToken);
                heartbeat.Beat();
                failures = 0;
                if (claimed < settings.BatchSize)
                {
                    await signal.WaitAsync(settings.PollInterval, stoppingToken);
                }
                else if (settings.ConcurrentBatches > 1)
                {
                    // A full batch: more is probably waiting, so wake a lane that went to sleep.
                    signal.Notify();
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
