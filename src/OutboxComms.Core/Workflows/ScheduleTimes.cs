using System.Globalization;
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
    /// Why <paramref name="cron"/> (parsed from <paramref name="expression"/>) would run more often
    /// than <see cref="MinimumInterval"/>, or null: "* 9 * * MON" (every minute of 9 o'clock, a typo
    /// for "0 9 * * MON") would send sixty digests to every customer. Two checks: the occurrences of
    /// the week after <paramref name="from"/> (UTC), which gives an example and catches macros such
    /// as "@every_minute"; and, for any date, the minute and second fields — two runs at least an
    /// hour apart need both to match a single value, and a burst such as "* 10 31 3 *" (every
    /// minute of one morning a year) lies outside any week scanned most of the year.
    /// </summary>
    public static string? TooFrequent(string expression, CronExpression cron, DateTimeOffset from)
    {
        ArgumentNullException.ThrowIfNull(expression);
        ArgumentNullException.ThrowIfNull(cron);
        DateTimeOffset? previous = null;
        foreach (var occurrence in cron.GetOccurrences(from.UtcDateTime, from.UtcDateTime.AddDays(8)).Take(500))
        {
            if (previous is { } earlier && occurrence - earlier.UtcDateTime < MinimumInterval)
            {
                return string.Create(CultureInfo.InvariantCulture, $"runs more often than once an hour (e.g. {earlier.UtcDateTime:u} and {occurrence:u})");
            }
            previous = new DateTimeOffset(occurrence, TimeSpan.Zero);
        }
        var fields = expression.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length is 5 or 6)
        {
            var minute = fields[^5];
            if (Matches(CronExpression.Parse($"{minute} * * * *"), TimeSpan.FromHours(1)) > 1)
            {
                return $"runs more often than once an hour (its minute field '{minute}' matches more than one minute of every hour it runs in)";
            }
            if (fields.Length == 6 && Matches(CronExpression.Parse($"{fields[0]} * * * * *", CronFormat.IncludeSeconds), TimeSpan.FromMinutes(1)) > 1)
            {
                return $"runs more often than once an hour (its second field '{fields[0]}' matches more than one second of every minute it runs in)";
            }
        }
        return null;

        // How many times a field alone matches within one period (an hour of minutes, a minute of seconds).
        static int Matches(CronExpression field, TimeSpan period)
        {
            var start = new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc);
            return field.GetOccurrences(start, start + period, fromInclusive: true, toInclusive: false).Take(2).Count();
        }
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
