namespace OutboxComms.Core.Policies;

/// <summary>
/// Golden-ratio backoff: retry n waits base × 1.618^n, capped at a maximum, then spread by ±
/// jitter so that a burst of failures does not come back as a burst (so the cap is the middle of
/// the longest waits, not a hard limit), and never sooner than a provider's Retry-After. Grows more gently than doubling, so a short outage costs less delay.
/// </summary>
public static class RetrySchedule
{
    public const double GoldenRatio = 1.618;

    /// <summary>The longest a provider's Retry-After is followed when the cap is shorter.</summary>
    public static readonly TimeSpan MaxRetryAfter = TimeSpan.FromDays(1);

    public static TimeSpan Delay(int retry, TimeSpan baseDelay, double jitter, TimeSpan max, TimeSpan? retryAfter = null, Random? random = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(retry, 1);
        // Jitter after the cap, so messages that reached it do not all come back at the same moment.
        var spread = 1 + (((random ?? Random.Shared).NextDouble() * 2) - 1) * jitter;
        var delay = TimeSpan.FromTicks((long)(Math.Min(baseDelay.Ticks * Math.Pow(GoldenRatio, retry), max.Ticks) * spread));
        // A provider's Retry-After is honoured up to a day (or the cap, when that is longer): a bogus
        // one (years ahead, a date that overflows the clock) must not park a message for ever.
        return retryAfter is { } after && after > delay ? TimeSpan.FromTicks(Math.Min(after.Ticks, Math.Max(max.Ticks, MaxRetryAfter.Ticks))) : delay;
    }
}
