using System.ComponentModel.DataAnnotations;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Worker.Dispatch;

/// <summary>Worker settings, bound from the <c>Dispatch</c> section (e.g. <c>Dispatch__BatchSize</c>).</summary>
public sealed class DispatchOptions : IValidatableObject
{
    public const string Section = "Dispatch";

    /// <summary>This process's name in <c>locked_by</c>; defaults to host:pid:random.</summary>
    public string? WorkerId { get; set; }

    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 500;

    /// <summary>Sends in flight at once within one batch (a process has up to <see cref="ConcurrentBatches"/> times as many).</summary>
    [Range(1, 1_000)]
    public int MaxConcurrentSends { get; set; } = 32;

    /// <summary>
    /// Batches one worker process works on at once (each sends and records on its own; their claims take turns), so
    /// the database round trips of one overlap the work of another. With 4, one process drains a
    /// backlog about as fast as two processes of 2 did (the claims, which take turns, are then most of
    /// the time); more processes are the way to scale further.
    /// </summary>
    [Range(1, 16)]
    public int ConcurrentBatches { get; set; } = 4;

    /// <summary>
    /// The attachment bytes one process may hold at once, in MB (AttachmentMemory): a send with files
    /// reserves their stored size (read from the table), or 25 MB for a link, until its
    /// provider call ends. A provider client copies and encodes them (base64), so the process's
    /// peak is a few times this.
    /// </summary>
    [Range(1, 1_048_576)]
    public int AttachmentMemoryMegabytes { get; set; } = 256;

    /// <summary>
    /// Fallback poll for when a NOTIFY is lost (dropped connection) and for rows whose deferral
    /// ends. One second by default, so a lost notification costs at most a second.
    /// </summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a claimed row stays ours; another worker reclaims it after that.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>One provider call's timeout.</summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(30);

    private TimeSpan? shutdownGrace;

    /// <summary>
    /// On shutdown, how long in-flight sends may finish before they are cancelled. Unless set, as
    /// long as <see cref="SendTimeout"/> (so a stop never cuts a send short: one cut short may
    /// already be with the provider, and is due again at once, so a deploy would send it twice)
    /// when the lease leaves room for it — <see cref="LeaseDuration"/> at least twice
    /// <see cref="SendTimeout"/> plus 30 s of sending, as the defaults do — else 10 s, as before,
    /// so that settings valid before stay valid.
    /// </summary>
    public TimeSpan ShutdownGrace
    {
        get => shutdownGrace ?? (LeaseDuration >= SendTimeout + SendTimeout + TimeSpan.FromSeconds(30) ? SendTimeout : TimeSpan.FromSeconds(10));
        set => shutdownGrace = value;
    }

    private TimeSpan? maxClockSkew;

    /// <summary>
    /// How far this worker's clock may be from PostgreSQL's — or, when that is the one off, from most
    /// live workers' — before it stops claiming (ClockSkewGuard; no worker claims while leases taken
    /// on a clock twice this far from its own may be live);
    /// 0 turns the check off. A claim takes "now" and its lease's end from this clock, and other
    /// workers judge that lease by theirs: two workers this far off in opposite directions are twice
    /// as far apart, and the lease ends that much early for one of them, out of the
    /// <see cref="ShutdownGrace"/> a batch keeps between its last send's end and its lease's end to
    /// record the outcomes. Unless set, a sixth of ShutdownGrace and at most 5 s: with the defaults
    /// two workers at the limit still leave 20 of its 30 s, and a host kept by NTP is within
    /// milliseconds, so only a broken clock (NTP stopped, a VM resumed, a hand-set clock) trips it.
    /// A ShutdownGrace of <see cref="ShortestGraceForClockCheck"/> or less leaves a sixth of it no
    /// room for a measurement's error and an unseen step (see <see cref="Validate"/>): the check is then off unless set
    /// (<see cref="ClockCheckOffByShortGrace"/>, and the worker says so at start).
    /// </summary>
    public TimeSpan MaxClockSkew
    {
        get => maxClockSkew ?? (ShutdownGrace > ShortestGraceForClockCheck ? TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(5).Ticks, ShutdownGrace.Ticks / 6)) : TimeSpan.Zero);
        set => maxClockSkew = value;
    }

    /// <summary>What a clock measurement may be wrong by at most: half of the longest round trip that counts (ClockSkewGuard).</summary>
    public static readonly TimeSpan ClockMeasurementError = TimeSpan.FromSeconds(0.5);

    /// <summary>
    /// How far a claiming clock may be from what its row says, a side: a measurement's error, and a
    /// step of its wall clock under the 0.5 s that stops claims at once (WorkerClocks.StepAllowance),
    /// unseen until the next measurement. Not in it: a step of PostgreSQL's clock too small to be
    /// seen (up to StepAllowance plus half of two round trips, 1.5 s), several of which add up while
    /// leases may be live; adding even one would leave a 4 s ShutdownGrace no limit at all
    /// ((0 + 2.5 s) × 2 > 4 s). README, Clocks, Known limits, says so.
    /// </summary>
    public static readonly TimeSpan ClockErrorPerSide = ClockMeasurementError + ClockMeasurementError;

    /// <summary>
    /// The ShutdownGrace at or below which the derived MaxClockSkew is 0: a sixth of it plus
    /// <see cref="ClockErrorPerSide"/>, doubled, would not stay under it (a sixth of 3 s is
    /// 0.5 s, and (0.5 s + 1 s) × 2 is the whole 3 s).
    /// </summary>
    public static readonly TimeSpan ShortestGraceForClockCheck = TimeSpan.FromSeconds(3);

    /// <summary>
    /// The clock check is off and ShutdownGrace too short for the derived default to be anything
    /// else. (Told by the values: the configuration binder sets every property it read, so after
    /// binding a derived MaxClockSkew looks set.)
    /// </summary>
    public bool ClockCheckOffByShortGrace => MaxClockSkew == TimeSpan.Zero && ShutdownGrace <= ShortestGraceForClockCheck;

    /// <summary>The backoff's base: retry n (the first is 1) waits base × 1.618^n (golden-ratio backoff), ± jitter — the first about 49 s with the default 30 s.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = RetryBackoffOptions.DefaultRetryBaseDelay;

    [Range(0.0, 0.5)]
    public double RetryJitter { get; set; } = RetryBackoffOptions.DefaultRetryJitter;

    public TimeSpan MaxRetryDelay { get; set; } = RetryBackoffOptions.DefaultMaxRetryDelay;

    /// <summary>
    /// Attempts a message may spend on a provider that certainly did not take it and is down or
    /// throttling the account (SendResult.Unavailable: no connection, HTTP 408/429/503, throttling
    /// codes, an empty balance) without using up its own retries; 0 makes them count like any other
    /// transient failure. With the default, backing off to <see cref="OutageMaxDelay"/>, a message
    /// waits out about a day of outage.
    /// </summary>
    [Range(0, 1000)]
    public int OutageRetries { get; set; } = RetryBackoffOptions.DefaultOutageRetries;

    /// <summary>
    /// The cap of the backoff between two attempts during an outage (± RetryJitter; a provider's
    /// longer Retry-After still wins), so messages go soon after it ends.
    /// </summary>
    public TimeSpan OutageMaxDelay { get; set; } = RetryBackoffOptions.DefaultOutageMaxDelay;

    /// <summary>Circuit breaker per company and provider: opens when this share of calls fail…</summary>
    [Range(0.01, 1.0)]
    public double BreakerFailureRatio { get; set; } = 0.5;

    /// <summary>…among at least this many calls in the sampling window…</summary>
    [Range(2, 10_000)]
    public int BreakerMinimumThroughput { get; set; } = 10;

    public TimeSpan BreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>…and stays open this long (rows behind it are deferred, not failed).</summary>
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The API's public origin (top-level <c>PublicBaseUrl</c>), for links in messages such as the
    /// one-click unsubscribe link of general-update emails. Without it those emails carry no link.
    /// </summary>
    public Uri? PublicBaseUrl { get; set; }

    /// <summary>Render timeout for one template.</summary>
    public TimeSpan RenderTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The least time a claimed batch has to start its sends (see <see cref="Validate"/>).</summary>
    public static readonly TimeSpan MinimumSendWindow = TimeSpan.FromSeconds(15);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (PollInterval <= TimeSpan.Zero || PollInterval > TimeSpan.FromMinutes(5))
        {
            yield return new ValidationResult("PollInterval must be more than 0 and at most 5 minutes (1 second is the default and the advice).", [nameof(PollInterval)]);
        }
        // A batch's sends must start by the lease's end less SendTimeout and ShutdownGrace: with
        // less than MinimumSendWindow left, most of each batch would be released unsent and
        // claimed again at once, round after round.
        if (LeaseDuration < SendTimeout + ShutdownGrace + MinimumSendWindow)
        {
            yield return new ValidationResult($"LeaseDuration must exceed SendTimeout + ShutdownGrace by at least {MinimumSendWindow.TotalSeconds:0} s (the time a batch has to start its sends), or slow sends could be reclaimed while in flight and batches released unsent.", [nameof(LeaseDuration)]);
        }
        // Two workers this far from PostgreSQL's clock in opposite directions are twice as far
        // apart: at ShutdownGrace or more, one could reclaim a row whose send the other still runs.
        // A measurement may be off by half of its round trip (at most 0.5 s), which the guard gives
        // the clocks the benefit of, and a clock may step by up to 0.5 s unseen until its next
        // measurement: the limit leaves room for both, a side. The derived default always does (it
        // is 0 when ShutdownGrace is too short for it to).
        if (MaxClockSkew < TimeSpan.Zero || (MaxClockSkew > TimeSpan.Zero && (MaxClockSkew + ClockErrorPerSide) * 2 >= ShutdownGrace))
        {
            yield return new ValidationResult($"MaxClockSkew must be 0 (off) or less than half of ShutdownGrace ({ShutdownGrace}) minus 1 s (a measurement's tolerance and a step too small to stop claims at once): two workers that far from PostgreSQL's clock in opposite directions could both send a message.", [nameof(MaxClockSkew)]);
        }
        // More sends at once than the process's provider client lets in flight and queue would have
        // it refuse some locally, and those would count against one company's provider as an outage.
        if ((long)MaxConcurrentSends * ConcurrentBatches > ProviderHttp.MaxRequestsInFlight + ProviderHttp.MaxRequestsQueued)
        {
            yield return new ValidationResult($"MaxConcurrentSends × ConcurrentBatches must be at most {ProviderHttp.MaxRequestsInFlight + ProviderHttp.MaxRequestsQueued} (the provider requests one process sends at once and queues).", [nameof(MaxConcurrentSends)]);
        }
        if (OutageMaxDelay <= TimeSpan.Zero || OutageMaxDelay > TimeSpan.FromDays(1))
        {
            yield return new ValidationResult("OutageMaxDelay must be more than 0 and at most a day.", [nameof(OutageMaxDelay)]);
        }
        if (RetryBaseDelay <= TimeSpan.Zero || SendTimeout <= TimeSpan.Zero || RenderTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult("RetryBaseDelay, SendTimeout and RenderTimeout must be positive.", [nameof(RetryBaseDelay)]);
        }
        if (MaxRetryDelay < RetryBaseDelay || MaxRetryDelay > TimeSpan.FromDays(7))
        {
            yield return new ValidationResult("MaxRetryDelay must be at least RetryBaseDelay and at most 7 days.", [nameof(MaxRetryDelay)]);
        }
        // The circuit breaker's own limits: outside them it throws when the first send builds it.
        var halfSecond = TimeSpan.FromMilliseconds(500);
        if (BreakerBreakDuration < halfSecond || BreakerBreakDuration > TimeSpan.FromDays(1)
            || BreakerSamplingDuration < halfSecond || BreakerSamplingDuration > TimeSpan.FromDays(1))
        {
            yield return new ValidationResult("BreakerBreakDuration and BreakerSamplingDuration must be between 0.5 s and a day.", [nameof(BreakerBreakDuration)]);
        }
    }

    public string ResolvedWorkerId() => WorkerId ??= $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid().ToString("N")[..6]}";
}
