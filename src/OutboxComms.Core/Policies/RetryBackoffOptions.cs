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

    // The defaults, one place for both readers of the section (the worker's DispatchOptions too).
    public static readonly TimeSpan DefaultRetryBaseDelay = TimeSpan.FromSeconds(30);
    public const double DefaultRetryJitter = 0.1;
    public static readonly TimeSpan DefaultMaxRetryDelay = TimeSpan.FromHours(6);
    public const int DefaultOutageRetries = 50;
    public static readonly TimeSpan DefaultOutageMaxDelay = TimeSpan.FromMinutes(30);

    public TimeSpan RetryBaseDelay { get; set; } = DefaultRetryBaseDelay;

    public double RetryJitter { get; set; } = DefaultRetryJitter;

    public TimeSpan MaxRetryDelay { get; set; } = DefaultMaxRetryDelay;

    /// <summary>Attempts a message may spend waiting out its provider's or account's condition without using up a retry (the worker's Dispatch:OutageRetries).</summary>
    public int OutageRetries { get; set; } = DefaultOutageRetries;

    /// <summary>The longest wait between those attempts (Dispatch:OutageMaxDelay).</summary>
    public TimeSpan OutageMaxDelay { get; set; } = DefaultOutageMaxDelay;

    /// <summary>How long retry <paramref name="retry"/> (the first is 1) waits.</summary>
    public TimeSpan Delay(int retry) => RetrySchedule.Delay(retry, RetryBaseDelay, RetryJitter, MaxRetryDelay);

    /// <summary>How long outage attempt <paramref name="attempt"/> (the first is 1) waits.</summary>
    public TimeSpan OutageDelay(int attempt) => RetrySchedule.Delay(attempt, RetryBaseDelay, RetryJitter, OutageMaxDelay);
}
