using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Observability;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Worker.Dispatch;

/// <summary>One measurement: this worker's clock minus PostgreSQL's, the round trip it took, and when (both clocks of this process) it started.</summary>
internal sealed record ClockSample(TimeSpan Skew, TimeSpan RoundTrip, DateTimeOffset TakenAt, long TakenAtTimestamp);

/// <summary>
/// Keeps a worker whose clock disagrees with PostgreSQL's from claiming. A claim takes "now" and
/// its lease's end from this process's clock (TimeProvider), and other workers judge the lease by
/// theirs: a clock ahead of another's by ShutdownGrace or more reclaims rows whose sends may still
/// be running (a message sent twice); one behind sends late. PostgreSQL's clock is the one every
/// worker can reach, so each compares its own with it — at start, then every 30 s (every 5 s while
/// they disagree or no measurement succeeded yet), on a query of its own, never on a claim's path.
/// While the difference is beyond <see cref="DispatchOptions.MaxClockSkew"/> the worker claims
/// nothing and its dispatch loop does not beat (WorkerHeartbeat), so its healthcheck goes unhealthy;
/// it claims again once a measurement agrees.
/// </summary>
internal sealed class ClockSkewGuard(NpgsqlDataSource dataSource, DispatchSignal signal, OutboxMetrics metrics, IOptions<DispatchOptions> options, TimeProvider time, ILogger<ClockSkewGuard> logger)
    : BackgroundService
{
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);

    /// <summary>How often the clocks are compared while claims are held.</summary>
    internal static readonly TimeSpan RecheckInterval = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A measurement is wrong by at most half its round trip (the database read its clock somewhere
    /// within it); one slower than this says little, and is dropped rather than trusted.
    /// </summary>
    internal static readonly TimeSpan LongestRoundTrip = TimeSpan.FromSeconds(1);

    // Round trips per measurement, of which the quickest counts (as NTP does): a pause of this
    // process or a busy server makes one round trip long and lopsided, rarely three.
    private const int Tries = 3;

    private readonly DispatchOptions settings = options.Value;
    private readonly SemaphoreSlim measuring = new(1, 1);

    // The last measurement that counted, and whether it was beyond the limit. Null until one does.
    private Decision? last;
    private long lastAttemptTimestamp;
    private bool attempted;

    private sealed record Decision(ClockSample Sample, bool Beyond);

    public bool Enabled => settings.MaxClockSkew > TimeSpan.Zero;

    /// <summary>
    /// Whether this worker may claim now: the check is off, or the last measurement agreed and the
    /// clock has not been set forward or back since.
    /// </summary>
    public bool AllowsClaims => !Enabled || (Volatile.Read(ref last) is { Beyond: false } agreed && !SetSince(agreed.Sample));

    /// <summary>As <see cref="AllowsClaims"/>; before the first claim it measures first (or waits for the measurement under way).</summary>
    public async ValueTask<bool> AllowsClaimsAsync(CancellationToken cancellationToken)
    {
        if (Enabled && Volatile.Read(ref last) is null && !Volatile.Read(ref attempted))
        {
            await MeasureAsync(firstOnly: true, cancellationToken);
        }
        return AllowsClaims;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Enabled)
        {
            // Off by configuration (the tests' fake clocks are far from the database's by design):
            // said at every start, so it is never off unnoticed.
            if (settings.ClockCheckOffByShortGrace)
            {
                DispatchLog.ClockCheckOffByShortGrace(logger, settings.ResolvedWorkerId(), settings.ShutdownGrace);
            }
            else
            {
                DispatchLog.ClockCheckOff(logger, settings.ResolvedWorkerId(), settings.ShutdownGrace);
            }
            return Task.CompletedTask;
        }
        return PeriodicTimers.EveryAsync(RecheckInterval, time, async cancellationToken =>
        {
            if (!AllowsClaims || time.GetElapsedTime(Interlocked.Read(ref lastAttemptTimestamp)) >= Interval)
            {
                await MeasureAsync(firstOnly: false, cancellationToken);
            }
        }, ex => DispatchLog.ClockSampleFailed(logger, ex), stoppingToken);
    }

    /// <summary>
    /// Compares the clocks and decides; answers the measurement, or null when <paramref name="firstOnly"/>
    /// and another was already taken.
    /// </summary>
    internal async Task<ClockSample?> MeasureAsync(bool firstOnly, CancellationToken cancellationToken)
    {
        await measuring.WaitAsync(cancellationToken);
        try
        {
            if (firstOnly && attempted)
            {
                return null;
            }
            Volatile.Write(ref attempted, true);
            Interlocked.Exchange(ref lastAttemptTimestamp, time.GetTimestamp());
            var sample = await SampleAsync(cancellationToken);
            Decide(sample);
            return sample;
        }
        finally
        {
            measuring.Release();
        }
    }

    /// <summary>The quickest of <see cref="Tries"/> round trips reading PostgreSQL's clock, on one connection opened beforehand.</summary>
    internal async Task<ClockSample> SampleAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT clock_timestamp()", connection);
        ClockSample? best = null;
        for (var i = 0; i < Tries; i++)
        {
            var sentAt = time.GetUtcNow();
            var started = time.GetTimestamp();
            var database = (DateTime)(await command.ExecuteScalarAsync(cancellationToken))!;
            var roundTrip = time.GetElapsedTime(started);
            // Read at the middle of the round trip, so wrong by at most half of it.
            var sample = new ClockSample(sentAt + (roundTrip / 2) - new DateTimeOffset(database, TimeSpan.Zero), roundTrip, sentAt, started);
            if (best is null || sample.RoundTrip < best.RoundTrip)
            {
                best = sample;
            }
        }
        return best!;
    }

    private void Decide(ClockSample sample)
    {
        var limit = settings.MaxClockSkew;
        var previous = Volatile.Read(ref last);
        // A measurement is wrong by up to half its round trip: the clocks are held to disagree only
        // by what they certainly do (a loaded database's slow answer does not stop dispatch), and a
        // slow measurement that still shows them beyond the limit counts.
        var certainly = sample.Skew.Duration() - (sample.RoundTrip / 2);
        if (sample.RoundTrip > LongestRoundTrip && certainly <= limit)
        {
            // Without any measurement yet the worker is holding its claims: say why.
            DispatchLog.ClockSampleTooSlow(logger, previous is null ? LogLevel.Warning : LogLevel.Debug, sample.RoundTrip, LongestRoundTrip);
            return;
        }
        var wasAllowed = AllowsClaims;
        var beyond = certainly > limit;
        Volatile.Write(ref last, new Decision(sample, beyond));
        metrics.ClockMeasured(sample.Skew);
        var workerId = settings.ResolvedWorkerId();
        if (beyond && previous is not { Beyond: true })
        {
            DispatchLog.ClockSkewed(logger, workerId, sample.Skew.TotalSeconds, limit);
        }
        else if (!beyond && previous is { Beyond: true })
        {
            DispatchLog.ClockAgreesAgain(logger, workerId, sample.Skew.TotalSeconds, limit);
        }
        else if (!beyond && previous is null)
        {
            DispatchLog.ClockChecked(logger, workerId, sample.Skew.TotalSeconds, limit);
        }
        if (!beyond && !wasAllowed)
        {
            // Claims were held: wake a lane now rather than at its next poll.
            signal.Notify();
        }
    }

    /// <summary>
    /// The wall clock moved unlike the monotonic one since <paramref name="sample"/> by enough to be
    /// beyond the limit (NTP stepping it, a VM resumed, a hand-set clock): claims stop at once, not
    /// up to <see cref="Interval"/> later, and the next tick measures again.
    /// </summary>
    private bool SetSince(ClockSample sample)
    {
        var stepped = time.GetUtcNow() - sample.TakenAt - time.GetElapsedTime(sample.TakenAtTimestamp);
        // With the tolerance the measurement got (half its round trip), as Decide gives it.
        return (sample.Skew + stepped).Duration() - (sample.RoundTrip / 2) > settings.MaxClockSkew;
    }

    public override void Dispose()
    {
        measuring.Dispose();
        base.Dispose();
    }
}
