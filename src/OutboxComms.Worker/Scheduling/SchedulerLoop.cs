using Microsoft.Extensions.Options;
using OutboxComms.Core.Observability;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Worker.Scheduling;

/// <summary>
/// Runs a scheduler pass every <see cref="SchedulingOptions.PollInterval"/>, each in a new DI
/// scope. A failed pass is logged and the next one runs on time; nothing is lost, because due steps
/// and occurrences stay due until a pass records them.
/// </summary>
internal sealed class SchedulerLoop(IServiceScopeFactory scopes, IOptions<SchedulingOptions> options, OutboxMetrics metrics, TimeProvider time, ILogger<SchedulerLoop> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!settings.Enabled)
        {
            SchedulingLog.Disabled(logger);
            return;
        }
        SchedulingLog.Started(logger, settings.PollInterval, settings.MissedAfter, settings.CatchUpWindow);
        using var timer = new PeriodicTimer(settings.PollInterval, time);
        do
        {
            try
            {
                await using var scope = scopes.CreateAsyncScope();
                var pass = await scope.ServiceProvider.GetRequiredService<WorkflowScheduler>().RunOnceAsync(stoppingToken);
                metrics.SchedulerPass(pass.Steps.Queued, pass.Steps.Skipped, pass.Steps.Cancelled, pass.Schedules);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                metrics.SchedulerPassFailed();
                SchedulingLog.PassFailed(logger, ex, settings.PollInterval);
            }
        }
        while (await timer.TickAsync(stoppingToken));
    }
}
