namespace OutboxComms.Core.Policies;

/// <summary>
/// The dispatcher's retry backoff (the worker's <c>Dispatch</c> section: <c>RetryBaseDelay</c>,
/// <c>RetryJitter</c>, <c>MaxRetryDelay</c>, with its defaults), read where a retry is scheduled
/// outside the dispatcher too: a delivery webhook that reports a temporary failure after the send
/// (DeliveryEventRecorder), so both wait the same <see cref="RetrySchedule"/>.
/// </summary>
public sealed class RetryBackoffOptions
{
    public const string Section = "Dispatch";

    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(30);

    public double RetryJitter { get; set; } = 0.1;

    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromHours(6);

    /// <summary>Attempts a message may spend waiting out its provider's or account's condition without using up a retry (the worker's Dispatch:OutageRetries).</summary>
    public int OutageRetries { get; set; } = 50;

    /// <summary>The longest wait between those attempts (Dispatch:OutageMaxDelay).</summary>
    public TimeSpan OutageMaxDelay { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>How long retry <paramref name="retry"/> (the first is 1) waits.</summary>
    public TimeSpan Delay(int retry) => RetrySchedule.Delay(retry, RetryBaseDelay, RetryJitter, MaxRetryDelay);

    /// <summary>How long outage attempt <paramref name="attempt"/> (the first is 1) waits.</summary>
    public TimeSpan OutageDelay(int attempt) => RetrySchedule.Delay(attempt, RetryBaseDelay, RetryJitter, OutageMaxDelay);
}
