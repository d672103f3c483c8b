using Cronos;
using OutboxComms.Core.Policies;

namespace OutboxComms.Core.Workflows;

/// <summary>Cron expressions of company schedules: parsing (5 or 6 fields, Cronos) and occurrences in a time zone.</summary>
public static class ScheduleTimes
{
    public static bool TryParse(string? expression, out CronExpression cron, out string error)
    {
        cron = null!;
        error = "";
        if (string.IsNullOrWhiteSpace(expression))
        {
            error = "cron is required, e.g. \"0 9 * * MON\" (minute hour day-of-month month day-of-week).";
            return false;
        }
        try
        {
            cron = ReminderFrequencyPolicy.ParseCron(expression);
            return true;
        }
        catch (CronFormatException ex)
        {
            error = $"'{expression}' is not a valid cron expression: {ex.Message}";
            return false;
        }
    }

    /// <summary>The shortest time a company schedule may leave between two runs: each run writes to every customer of its audience.</summary>
    public static readonly TimeSpan MinimumInterval = TimeSpan.FromHours(1);

    /// <summary>
    /// Two consecutive occurrences closer than <see cref="MinimumInterval"/> within the week after
    /// <paramref name="from"/> (UTC), or null: "* 9 * * MON" (every minute of 9 o'clock, a typo for
    /// "0 9 * * MON") would send sixty digests to every customer.
    /// </summary>
    public static (DateTimeOffset First, DateTimeOffset Second)? TooFrequent(CronExpression cron, DateTimeOffset from)
    {
        ArgumentNullException.ThrowIfNull(cron);
        DateTimeOffset? previous = null;
        foreach (var occurrence in cron.GetOccurrences(from.UtcDateTime, from.UtcDateTime.AddDays(8)).Take(500))
        {
            if (previous is { } earlier && occurrence - earlier.UtcDateTime < MinimumInterval)
            {
                return (earlier, new DateTimeOffset(occurrence, TimeSpan.Zero));
            }
            previous = new DateTimeOffset(occurrence, TimeSpan.Zero);
        }
        return null;
    }

    /// <summary>
    /// The first occurrence strictly after <paramref name="after"/> (as UTC), evaluated on the clock of
    /// <paramref name="zone"/>. Cronos is DST-aware: a time skipped by spring-forward fires at the
    /// end of the gap, a time repeated by fall-back fires once.
    /// </summary>
    public static DateTimeOffset? Next(CronExpression cron, DateTimeOffset after, TimeZoneInfo zone)
    {
        ArgumentNullException.ThrowIfNull(cron);
        return cron.GetNextOccurrence(after, zone)?.ToUniversalTime();
    }

    /// <summary>The latest occurrence (as UTC) in [<paramref name="from"/>, <paramref name="to"/>], or null; the range is the caller's bound.</summary>
    public static DateTimeOffset? Latest(CronExpression cron, DateTimeOffset from, DateTimeOffset to, TimeZoneInfo zone)
    {
        ArgumentNullException.ThrowIfNull(cron);
        return from > to ? null : cron.GetOccurrences(from, to, zone, fromInclusive: true, toInclusive: true).Select(o => (DateTimeOffset?)o.ToUniversalTime()).LastOrDefault();
    }
}
