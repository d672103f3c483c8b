using System.Globalization;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Worker.Scheduling;

/// <summary>What one pass did.</summary>
internal readonly record struct SchedulerPass(StepCounts Steps, int Schedules);

/// <summary>
/// One scheduler pass: every reminder step and schedule occurrence that has come due becomes
/// ordinary outbox rows (or is recorded as skipped, with the reason), batch by batch until none is
/// left. Missed ones — found more than <see cref="SchedulingOptions.MissedAfter"/> late because no
/// scheduler was running — follow the catch-up rules in <see cref="Decide"/> and <see cref="Plan"/>.
/// </summary>
internal sealed class WorkflowScheduler(WorkflowStore store, IOptions<SchedulingOptions> options, TimeProvider time, ILogger<WorkflowScheduler> logger)
{
    private readonly SchedulingOptions settings = options.Value;

    public async Task<SchedulerPass> RunOnceAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var steps = default(StepCounts);
        Exception? stepsFailure = null;
        try
        {
            StepCounts batch;
            do
            {
                batch = await store.MaterialiseDueStepsAsync(now, settings.BatchSize, step => Decide(step, now, settings.MissedAfter, settings.CatchUpWindow), cancellationToken);
                steps += batch;
            }
            while (batch.Claimed == settings.BatchSize);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The schedules still run; the pass then fails with this (logged and counted by the loop).
            stepsFailure = ex;
        }
        if (steps.Claimed > 0)
        {
            SchedulingLog.Steps(logger, steps.Queued, steps.Skipped, steps.Cancelled);
        }

        var schedules = 0;
        // Each schedule of a batch is a savepoint of its transaction: fewer than PostgreSQL's 64
        // cached subtransactions per backend, past which every session's visibility checks slow down.
        var scheduleBatch = Math.Min(settings.BatchSize, MaxSchedulesPerBatch);
        (int Claimed, int Failed) claimed;
        do
        {
            claimed = await store.MaterialiseDueSchedulesAsync(now, scheduleBatch, schedule => Plan(schedule, now, settings), Report, Failed, cancellationToken);
            schedules += claimed.Claimed;
        }
        // A failed schedule stays due and would lead the next batch again: the rest waits for the next pass.
        while (claimed.Claimed == scheduleBatch && claimed.Failed == 0);
        if (stepsFailure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(stepsFailure);
        }
        return new SchedulerPass(steps, schedules);
    }

    internal const int MaxSchedulesPerBatch = 50;

    private void Failed(DueSchedule schedule, Exception exception) =>
        SchedulingLog.ScheduleFailed(logger, exception, schedule.CompanyId, schedule.Key, schedule.NextOccurrenceAt);

    /// <summary>
    /// A due step is queued unless its reminder was resolved or its customer deleted. A missed
    /// step is still sent if it is the latest due step of its reminder and its news is still true:
    /// a step before the due date, or on it, until the due date ends, whatever the grace ("due
    /// tomorrow" would be wrong after that; its message expires then too), an overdue notice (after
    /// the due date) until the due date + grace ends or within the catch-up window of its time,
    /// whichever is later. Otherwise it is skipped, with the reason.
    /// </summary>
    internal static StepDecision Decide(DueStep step, DateTimeOffset now, TimeSpan missedAfter, TimeSpan catchUpWindow)
    {
        if (step.ReminderStatus == ReminderStatus.Resolved)
        {
            return new StepDecision(StepState.Cancelled, "the reminder was resolved");
        }
        if (step.CustomerDeleted)
        {
            return new StepDecision(StepState.Skipped, "the customer was deleted");
        }
        var late = now - step.FireAt;
        if (late <= missedAfter)
        {
            return new StepDecision(StepState.Queued, null);
        }
        var missed = Invariant($"missed while no scheduler was running (its time was {step.FireAt.UtcDateTime:u})");
        if (step.LaterStepDue)
        {
            return new StepDecision(StepState.Skipped, $"{missed}; a later step of this reminder is due too and only the latest is sent");
        }
        // Before the due date, a step's news ("due tomorrow") holds until the due date ends; grace
        // is for the overdue notices.
        var beforeDue = step.BeforeDeadline;
        var grace = beforeDue ? Invariant($"the due date {step.DueDate:yyyy-MM-dd}") : Invariant($"the due date {step.DueDate:yyyy-MM-dd} + {step.GraceDays} days of grace");
        if (now < (beforeDue ? step.DueAt : step.GraceEndsAt))
        {
            return new StepDecision(StepState.Queued, Invariant($"sent {Math.Round(late.TotalHours, 1)} h late: {missed}; still within {grace}"));
        }
        if (!beforeDue && late <= catchUpWindow)
        {
            return new StepDecision(StepState.Queued,
                Invariant($"sent {Math.Round(late.TotalHours, 1)} h late: {missed}; an overdue notice, still within the catch-up window ({catchUpWindow.TotalHours:0.#} h)"));
        }
        return new StepDecision(StepState.Skipped, !beforeDue
            ? Invariant($"{missed}; {grace} had passed and so had the catch-up window ({catchUpWindow.TotalHours:0.#} h)")
            : $"{missed}; {grace} had passed");
    }

    /// <summary>
    /// A due schedule materialises its latest occurrence up to now. When occurrences were missed,
    /// only the latest is caught up, and only if it lies within the catch-up window; the earlier
    /// ones are recorded as one skipped run at the first missed occurrence. The scan never looks
    /// further back than the window, so a long outage costs no more than a short one.
    /// </summary>
    internal static SchedulePlan Plan(DueSchedule schedule, DateTimeOffset now, SchedulingOptions settings)
    {
        if (!ScheduleTimes.TryParse(schedule.Cron, out var cron, out var error) || !LocalTimes.TryFindZone(schedule.TimeZone, out var zone))
        {
            // Validated on the way in; reaching here means the data was changed behind the API's back.
            var reason = error.Length > 0 ? error : $"'{schedule.TimeZone}' is not an IANA time zone";
            return new SchedulePlan(null, null, schedule.NextOccurrenceAt, $"cannot evaluate the schedule ({reason}); paused until it is saved again", null, TimeZoneInfo.Utc);
        }
        if (ScheduleTimes.TooFrequent(schedule.Cron, cron, now) is { } tooFrequent)
        {
            // Refused by the API since; a schedule saved before that check (or written by SQL) sends nothing.
            return new SchedulePlan(null, null, schedule.NextOccurrenceAt, $"the schedule {tooFrequent}; paused until it is saved again", null, TimeZoneInfo.Utc);
        }
        var next = ScheduleTimes.Next(cron, now, zone);
        var windowStart = now - settings.CatchUpWindow;
        var from = schedule.NextOccurrenceAt > windowStart ? schedule.NextOccurrenceAt : windowStart;
        var latest = ScheduleTimes.Latest(cron, from, now, zone);
        if (latest is null)
        {
            return new SchedulePlan(null, null, schedule.NextOccurrenceAt,
                Invariant($"missed while no scheduler was running: every occurrence from {schedule.NextOccurrenceAt.UtcDateTime:u} to {now.UtcDateTime:u} is older than the catch-up window ({settings.CatchUpWindow})"),
                next, zone);
        }
        var late = now - latest.Value;
        var note = late > settings.MissedAfter
            ? Invariant($"sent {Math.Round(late.TotalHours, 1)} h late: missed while no scheduler was running; within the catch-up window ({settings.CatchUpWindow})")
            : null;
        return latest > schedule.NextOccurrenceAt
            ? new SchedulePlan(latest, note, schedule.NextOccurrenceAt,
                Invariant($"missed while no scheduler was running: the occurrences from {schedule.NextOccurrenceAt.UtcDateTime:u} until {latest.Value.UtcDateTime:u} are superseded by that one, the only one sent"),
                next, zone)
            : new SchedulePlan(latest, note, null, null, next, zone);
    }

    private void Report(DueSchedule schedule, SchedulePlan plan, int messages)
    {
        if (plan.SkipAt is { } skipped)
        {
            SchedulingLog.OccurrenceSkipped(logger, schedule.CompanyId, schedule.Key, skipped, plan.SkipReason);
        }
        if (plan.Materialise is { } occurrence)
        {
            SchedulingLog.OccurrenceMaterialised(logger, schedule.CompanyId, schedule.Key, occurrence, messages);
        }
        if (plan.Next is null)
        {
            SchedulingLog.SchedulePaused(logger, schedule.CompanyId, schedule.Key);
        }
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
