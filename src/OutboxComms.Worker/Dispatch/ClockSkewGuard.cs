using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Observability;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Worker.Dispatch;

/// <summary>One measurement: this worker's clock minus PostgreSQL's, the round trip it took, and when (both clocks of this process) it started.</summary>
internal sealed record ClockSample(TimeSpan Skew, TimeSpan RoundTrip, DateTimeOffset TakenAt, long TakenAtTimestamp);

/// <summary>
/// Keeps a worker whose clock disagrees with the others' from claiming. A claim takes "now" and
/// its lease's end from this process's clock (TimeProvider), and other workers judge the lease by
/// theirs: a clock ahead of another's by ShutdownGrace or more reclaims rows whose sends may still
/// be running (a message sent twice); one behind sends late. Each worker measures its clock against
/// PostgreSQL's — at start, then every 30 s (every 5 s while it holds its claims), on a query of its
/// own, never on a claim's path — and records the difference in <c>worker_clocks</c>, where the
/// others read it (<see cref="ClockDecision.Judge"/> has the rule and why it is safe). A worker
/// within <see cref="DispatchOptions.MaxClockSkew"/> of PostgreSQL's clock claims, as does one
/// beyond it whose clock most of the live workers' agree with (the database host's clock is then
/// the one that is off: a Warning says so); neither claims while leases taken on a clock more than
/// twice the limit from its own may be live. Otherwise the worker claims nothing and its dispatch
/// loop does not beat (WorkerHeartbeat), so its healthcheck goes unhealthy; it claims again once a
/// measurement agrees.
/// </summary>
internal sealed class ClockSkewGuard(NpgsqlDataSource dataSource, DispatchSignal signal, OutboxMetrics metrics, IOptions<DispatchOptions> options, WorkerHost host, TimeProvider time, ILogger<ClockSkewGuard> logger)
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

    // Rows of workers gone for a day are deleted this often by each worker (the table is small).
    private static readonly TimeSpan ForgetGoneEvery = TimeSpan.FromHours(1);

    // While measurements keep failing (a database outage), a Warning at most this often.
    internal static readonly TimeSpan FailureLogEvery = TimeSpan.FromMinutes(1);

    private readonly DispatchOptions settings = options.Value;
    private readonly SemaphoreSlim measuring = new(1, 1);

    // This process's name in worker_clocks: its worker id and a mark of its own, since two replicas
    // may be given one Dispatch:WorkerId (as their leases are, BatchProcessor).
    private readonly WorkerClocks.Self self = new($"{options.Value.ResolvedWorkerId()}#{Guid.NewGuid().ToString("N")[..8]}", host.Id);

    // The last measurement that counted and what it decided. Null until one does.
    private ClockDecision? last;
    private long lastAttemptTimestamp;
    private bool attempted;
    private long lastForgetTimestamp;
    private bool forgotten;

    // Measurements failed in a row, and when that was last logged; the decision whose lapse was logged.
    private int failures;
    private long failureLoggedTimestamp;
    private ClockDecision? lapseLogged;

    // A change of the difference this worker's own clock moving may explain, until the other workers' rows tell (ClockDecision.Judge).
    private OwnClockEvent? unattributed;

    // Since when (monotonic) each measurement has been compared with the one before it (none of its
    // intervals too long to tell a step), and the steps of the database's clock it saw meanwhile:
    // with that unbroken for as long as marks count, every recent step is one it has seen or one
    // after its measurement (ClockDecision.Judge).
    private long unbrokenSince;
    private readonly List<(TimeSpan Step, long SeenAt)> stepsSeen = [];

    public bool Enabled => settings.MaxClockSkew > TimeSpan.Zero;

    /// <summary>
    /// Whether this worker may claim now: the check is off, or the last measurement let it, is no
    /// older than <see cref="WorkerClocks.DecisionLifetime"/>, and the clock has not been set
    /// forward or back since.
    /// </summary>
    public bool AllowsClaims => !Enabled || (Volatile.Read(ref last) is { AllowsClaims: true } allowed
        && time.GetElapsedTime(allowed.Sample.TakenAtTimestamp) < WorkerClocks.DecisionLifetime && !SetSince(allowed));

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
        return PeriodicTimers.EveryAsync(RecheckInterval, time, TickAsync, ex => DispatchLog.ClockSampleFailed(logger, ex), stoppingToken);
    }

    /// <summary>
    /// One tick of the guard's timer: says once when the last decision has lapsed (here, every 5 s,
    /// not on the claim path that reads <see cref="AllowsClaims"/>), and measures when claims are
    /// held or <see cref="Interval"/> has passed. A failed measurement is logged at its first
    /// failure, then at most once per <see cref="FailureLogEvery"/> with a count while they go on
    /// failing, and once more when one succeeds again: a database outage does not fill the log.
    /// </summary>
    internal async Task TickAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref last) is { AllowsClaims: true } decided && !ReferenceEquals(decided, lapseLogged)
            && time.GetElapsedTime(decided.Sample.TakenAtTimestamp) >= WorkerClocks.DecisionLifetime)
        {
            lapseLogged = decided;
            DispatchLog.ClockDecisionLapsed(logger, settings.ResolvedWorkerId(), WorkerClocks.DecisionLifetime);
        }
        if (AllowsClaims && time.GetElapsedTime(Interlocked.Read(ref lastAttemptTimestamp)) < Interval)
        {
            return;
        }
        try
        {
            await MeasureAsync(firstOnly: false, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            if (++failures == 1)
            {
                failureLoggedTimestamp = time.GetTimestamp();
                DispatchLog.ClockSampleFailed(logger, ex);
            }
            else if (time.GetElapsedTime(failureLoggedTimestamp) >= FailureLogEvery)
            {
                failureLoggedTimestamp = time.GetTimestamp();
                DispatchLog.ClockSampleStillFailing(logger, failures, ex.Message);
            }
            return;
        }
        if (failures > 0)
        {
            DispatchLog.ClockSampleSucceedsAgain(logger, failures);
            failures = 0;
        }
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
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            var measured = await SampleAsync(connection, cancellationToken);
            var sample = measured;
            var limit = settings.MaxClockSkew;
            var previous = Volatile.Read(ref last);
            // A measurement is wrong by up to half its round trip: the clocks are held to disagree only
            // by what they certainly do (a loaded database's slow answer does not stop dispatch), and a
            // slow measurement that still shows them beyond the limit counts — to hold (it is too
            // rough to claim by the other workers' clocks), unless this worker claims by theirs.
            if (sample.RoundTrip > LongestRoundTrip)
            {
                if (sample.Skew.Duration() - (sample.RoundTrip / 2) <= limit || previous is { Verdict: ClockVerdict.AgreesWithWorkers })
                {
                    // Too rough to judge by. Without any measurement yet the worker holds its claims: say why.
                    // With one, the last good measurement, carried forward by this clock's own movement
                    // since (so a small step is not forgotten), is judged and recorded again: a database
                    // answering slowly under load must not let every decision lapse and stop dispatch.
                    DispatchLog.ClockSampleTooSlow(logger, previous is null ? LogLevel.Warning : LogLevel.Debug, sample.RoundTrip, LongestRoundTrip);
                    // The slow measurement still shows a step of the database's clock beyond its own
                    // (wider) error: the last good one is on the far side of it and cannot stand in.
                    if (previous is null || Renewed(previous.Sample) is not { } renewed || StepView(previous, measured).Seen is not null)
                    {
                        return measured;
                    }
                    sample = renewed;
                }
            }
            // A slow measurement standing in for the last good one: the step it was checked for above
            // (none), and a mark seen at the last decision still counts, since the slow measurement was
            // taken after it and shows no step since (the last good one is on the clock as it is now).
            var step = ReferenceEquals(sample, measured) ? StepView(previous, measured) : new DatabaseStepView(null, previous!.StepMarksSeen);
            var workerId = settings.ResolvedWorkerId();
            // Kept only once a decision has been made on it (a failed one leaves the last decision,
            // and the next measurement sees the same movement again).
            var pending = unattributed;
            if (step.Unattributed is { } moved)
            {
                DispatchLog.OwnClockMovedWithDifference(logger, workerId, moved.Step.TotalSeconds);
                // Two in a row (the host suspended again): this worker's rows are as far from either footing as both.
                pending = pending is { } earlier ? moved with { Step = earlier.Step + moved.Step, RoundTrips = earlier.RoundTrips + moved.RoundTrips } : moved;
            }
            var claimsFor = WorkerClocks.ClaimsFor(settings.LeaseDuration);
            if (previous is null || time.GetElapsedTime(previous.Sample.TakenAtTimestamp, measured.TakenAtTimestamp) >= claimsFor)
            {
                unbrokenSince = measured.TakenAtTimestamp;
                stepsSeen.Clear();
            }
            // Kept twice as long as marks count: a mark's row is written after its step, and counts that long after.
            stepsSeen.RemoveAll(s => time.GetElapsedTime(s.SeenAt) >= claimsFor * 2);
            step = step with
            {
                Unattributed = pending,
                SeenLately = time.GetElapsedTime(unbrokenSince, measured.TakenAtTimestamp) >= claimsFor ? [.. stepsSeen.Select(s => s.Step)] : null,
            };
            var forgetGone = !forgotten || time.GetElapsedTime(lastForgetTimestamp) >= ForgetGoneEvery;
            var decision = await WorkerClocks.DecideAsync(connection, self, sample, limit, settings.LeaseDuration, step, forgetGone, cancellationToken);
            if (decision.CarryAcross is { } carried)
            {
                // Seen now, or a movement of this worker's own clock that another's mark shows was one.
                DispatchLog.DatabaseClockStepped(logger, carried.Step.TotalSeconds, workerId);
                stepsSeen.Add((carried.Step, measured.TakenAtTimestamp));
            }
            unattributed = decision.Recorded ? null : pending;
            if (decision.Recorded)
            {
                if (forgetGone)
                {
                    forgotten = true;
                    lastForgetTimestamp = time.GetTimestamp();
                }
            }
            Decided(decision, previous);
            return measured;
        }
        finally
        {
            measuring.Release();
        }
    }

    /// <summary>The quickest of <see cref="Tries"/> round trips reading PostgreSQL's clock, on a connection opened beforehand.</summary>
    private async Task<ClockSample> SampleAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
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

    private void Decided(ClockDecision decision, ClockDecision? previous)
    {
        var wasAllowed = AllowsClaims;
        Volatile.Write(ref last, decision);
        var sample = decision.Sample;
        metrics.ClockMeasured(sample.Skew);
        var workerId = settings.ResolvedWorkerId();
        var limit = settings.MaxClockSkew;
        var changed = previous?.Verdict != decision.Verdict;
        switch (decision.Verdict)
        {
            case ClockVerdict.AgreesWithDatabase when previous is null:
                DispatchLog.ClockChecked(logger, workerId, sample.Skew.TotalSeconds, limit);
                break;
            case ClockVerdict.AgreesWithDatabase when changed:
                DispatchLog.ClockAgreesAgain(logger, workerId, sample.Skew.TotalSeconds, limit);
                break;
            case ClockVerdict.AgreesWithWorkers when changed:
                // Said once, not at every measurement: the database's clock minus this worker's.
                DispatchLog.DatabaseClockOff(logger, -sample.Skew.TotalSeconds, workerId, decision.Agreeing, decision.Live, limit);
                break;
            case ClockVerdict.Skewed when changed:
                DispatchLog.ClockSkewed(logger, workerId, sample.Skew.TotalSeconds, limit, decision.Agreeing, decision.Live);
                break;
            case ClockVerdict.DatabaseStepUnsure when changed:
                DispatchLog.DatabaseStepUnsure(logger, workerId);
                break;
            case ClockVerdict.OwnClockUnsure:
                break;   // said with the movement (DispatchLog.OwnClockMovedWithDifference)
            case ClockVerdict.ApartFromClaims when changed:
                DispatchLog.ClockApartFromClaims(logger, workerId, (sample.Skew - decision.Apart!.Skew).TotalSeconds, decision.Apart.WorkerId, limit * 2);
                break;
        }
        if (decision.RepeatedSteps is { } steps && (previous?.RepeatedSteps is null || previous.AllowsClaims != decision.AllowsClaims))
        {
            DispatchLog.DatabaseClockStepsRepeatedly(logger, steps.Count, string.Join(", ", steps.Select(s => s.TotalSeconds.ToString("+0.000;-0.000", System.Globalization.CultureInfo.InvariantCulture))),
                WorkerClocks.ClaimsFor(settings.LeaseDuration), workerId, decision.AllowsClaims ? "claims: it has measured across every one of them" : "holds");
        }
        if (decision.AllowsClaims && !wasAllowed)
        {
            // Claims were held: wake a lane now rather than at its next poll.
            signal.Notify();
        }
    }

    /// <summary>
    /// What this measurement shows of a step of PostgreSQL's clock since the last one that counted
    /// <paramref name="measured"/>. Between two measurements the skew moves as this worker's wall
    /// clock moves unlike its monotonic one; a difference beyond <see cref="WorkerClocks.StepAllowance"/>
    /// and the two measurements' errors (half of each round trip) is the database's clock having
    /// stepped, by minus the difference — when this worker's wall and monotonic clocks agreed over
    /// the interval (within <see cref="WorkerClocks.StepAllowance"/>). When they did not, the monotonic
    /// clock may be the one that moved (a suspended host: it stops, the wall clock does not), which
    /// reads exactly as the database's clock stepping with this worker's: not taken for a step, it
    /// is left <see cref="DatabaseStepView.Unattributed"/> for the other workers' rows to tell, as
    /// <see cref="SetSince"/> holds claims at once for the same movement. Asked only while leases
    /// taken on the last one may be live (after that its rows no longer matter, and a clock's slow
    /// drift over a long outage is not taken for a step).
    /// </summary>
    internal DatabaseStepView StepView(ClockDecision? previous, ClockSample measured)
    {
        ArgumentNullException.ThrowIfNull(measured);
        if (previous is null)
        {
            return DatabaseStepView.None;
        }
        var earlier = previous.Sample;
        if (time.GetElapsedTime(earlier.TakenAtTimestamp, measured.TakenAtTimestamp) < WorkerClocks.ClaimsFor(settings.LeaseDuration))
        {
            var ownMovement = measured.TakenAt - earlier.TakenAt - time.GetElapsedTime(earlier.TakenAtTimestamp, measured.TakenAtTimestamp);
            var databaseStep = earlier.Skew + ownMovement - measured.Skew;
            if (databaseStep.Duration() <= WorkerClocks.StepAllowance + ((earlier.RoundTrip + measured.RoundTrip) / 2))
            {
                return new DatabaseStepView(null, previous.StepMarksSeen);
            }
            if (ownMovement.Duration() > WorkerClocks.StepAllowance)
            {
                // PostgreSQL's time by which the measurement was over: its reading, plus half the round trip.
                var after = measured.TakenAt + measured.RoundTrip - measured.Skew;
                return new DatabaseStepView(null, false) { Unattributed = new OwnClockEvent(databaseStep, after, earlier.RoundTrip + measured.RoundTrip) };
            }
            return new DatabaseStepView(databaseStep, false, earlier.RoundTrip + measured.RoundTrip);
        }
        return DatabaseStepView.None;
    }

    /// <summary>
    /// <paramref name="good"/> as it stands now: its skew moved by however far this worker's wall
    /// clock has moved unlike its monotonic one since (PostgreSQL's clock is taken not to step, as
    /// everywhere here), taken now. Null when that movement is a step beyond
    /// <see cref="WorkerClocks.StepAllowance"/>: then only a new measurement will do.
    /// </summary>
    internal ClockSample? Renewed(ClockSample good)
    {
        ArgumentNullException.ThrowIfNull(good);
        var stepped = time.GetUtcNow() - good.TakenAt - time.GetElapsedTime(good.TakenAtTimestamp);
        return stepped.Duration() > WorkerClocks.StepAllowance ? null : new ClockSample(good.Skew + stepped, good.RoundTrip, time.GetUtcNow(), time.GetTimestamp());
    }

    /// <summary>
    /// The wall clock moved unlike the monotonic one since the decision's measurement (NTP stepping
    /// it, a VM resumed, a hand-set clock) by more than <see cref="WorkerClocks.StepAllowance"/> —
    /// the other workers judge this one's leases by the skew it recorded — or, for a decision by
    /// the database's clock, by enough to be beyond the limit of it: claims stop at once, not up
    /// to <see cref="Interval"/> later, and the next tick measures again.
    /// </summary>
    private bool SetSince(ClockDecision decision)
    {
        var sample = decision.Sample;
        var stepped = time.GetUtcNow() - sample.TakenAt - time.GetElapsedTime(sample.TakenAtTimestamp);
        // With the tolerance the measurement got (half its round trip), as the decision gave it.
        return stepped.Duration() > WorkerClocks.StepAllowance
            || (decision.Verdict == ClockVerdict.AgreesWithDatabase && (sample.Skew + stepped).Duration() - (sample.RoundTrip / 2) > settings.MaxClockSkew);
    }

    public override void Dispose()
    {
        measuring.Dispose();
        base.Dispose();
    }
}
