using Cronos;
using OutboxComms.Core.Preferences;

namespace OutboxComms.Core.Policies;

/// <summary>
/// At most one reminder of a type per customer per period. Every frequency is a cron schedule in the
/// customer's time zone whose occurrences start the periods: DAILY at local midnight, WEEKLY on
/// Monday 00:00, MONTHLY on the 1st, CUSTOM at the customer's own cron expression. A reminder is
/// allowed when no reminder of its type went out since the period began (the first occurrence after
/// the last one sent has passed); otherwise it waits for the next occurrence.
/// </summary>
public static class ReminderFrequencyPolicy
{
    private static readonly CronExpression Daily = CronExpression.Parse("0 0 * * *");
    private static readonly CronExpression Weekly = CronExpression.Parse("0 0 * * MON");
    private static readonly CronExpression Monthly = CronExpression.Parse("0 0 1 * *");

    /// <summary>Null when a reminder may go now; otherwise the earliest instant it may.</summary>
    public static DateTimeOffset? NextAllowed(DateTimeOffset? lastSent, ReminderFrequency frequency, string? customCron, TimeZoneInfo zone, DateTimeOffset now)
    {
        if (lastSent is null)
        {
            return null;
        }
        var schedule = Schedule(frequency, customCron);
        var periodAfterLast = schedule.GetNextOccurrence(lastSent.Value, zone);
        return periodAfterLast is null || periodAfterLast <= now ? null : periodAfterLast;
    }

    public static CronExpression Schedule(ReminderFrequency frequency, string? customCron) => frequency switch
    {
        ReminderFrequency.Daily => Daily,
        ReminderFrequency.Weekly => Weekly,
        ReminderFrequency.Monthly => Monthly,
        ReminderFrequency.Custom => ParseCron(customCron ?? throw new FormatException("CUSTOM reminder frequency needs a cron expression.")),
        _ => throw new ArgumentOutOfRangeException(nameof(frequency), frequency, null),
    };

    /// <summary>Five fields (minute precision), or six with seconds.</summary>
    public static CronExpression ParseCron(string expression)
    {
        ArgumentNullException.ThrowIfNull(expression);
        var fields = expression.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        return CronExpression.Parse(expression, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
    }
}
