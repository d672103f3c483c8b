namespace OutboxComms.Worker.Scheduling;

internal static partial class SchedulingLog
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Scheduler running: every {PollInterval}, missed after {MissedAfter}, catch-up window {CatchUpWindow}")]
    public static partial void Started(ILogger logger, TimeSpan pollInterval, TimeSpan missedAfter, TimeSpan catchUpWindow);

    [LoggerMessage(Level = LogLevel.Information, Message = "Scheduler disabled in this worker (Scheduling:Enabled = false)")]
    public static partial void Disabled(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Reminder steps due: {Queued} queued, {Skipped} skipped, {Cancelled} cancelled")]
    public static partial void Steps(ILogger logger, int queued, int skipped, int cancelled);

    [LoggerMessage(Level = LogLevel.Information, Message = "Schedule {ScheduleKey} of company {CompanyId}: occurrence {Occurrence} produced {Messages} messages")]
    public static partial void OccurrenceMaterialised(ILogger logger, Guid companyId, string scheduleKey, DateTimeOffset occurrence, int messages);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Schedule {ScheduleKey} of company {CompanyId}: occurrence {Occurrence} skipped: {Reason}")]
    public static partial void OccurrenceSkipped(ILogger logger, Guid companyId, string scheduleKey, DateTimeOffset occurrence, string? reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Schedule {ScheduleKey} of company {CompanyId} has no next occurrence and is paused until it is saved again")]
    public static partial void SchedulePaused(ILogger logger, Guid companyId, string scheduleKey);

    [LoggerMessage(Level = LogLevel.Error, Message = "Schedule {ScheduleKey} of company {CompanyId}: occurrence {Occurrence} failed and was rolled back; tried again next pass (the other schedules went on)")]
    public static partial void ScheduleFailed(ILogger logger, Exception exception, Guid companyId, string scheduleKey, DateTimeOffset occurrence);

    [LoggerMessage(Level = LogLevel.Error, Message = "Scheduler pass failed; the next runs in {PollInterval}")]
    public static partial void PassFailed(ILogger logger, Exception exception, TimeSpan pollInterval);
}
