using Npgsql;

namespace OutboxComms.Worker.Dispatch;

/// <summary>Another worker's measurement as read from <c>worker_clocks</c> (or one of this worker's own earlier ones).</summary>
/// <param name="Host">The host whose clock the worker runs on; null for a worker of a build before 0044.</param>
/// <param name="Live">Measured within <see cref="WorkerClocks.LiveWindow"/>: a worker still running, whose clock votes.</param>
/// <param name="ClaimsLeft">Set when the measurement let its worker claim: how long, by PostgreSQL's clock, leases taken on it may still be live (negative: they have ended).</param>
/// <param name="DatabaseStep">Set on a recent measurement at which its worker saw PostgreSQL's clock step by this much (forward positive): its rows are all on the database's clock as it is since.</param>
internal sealed record WorkerClock(string WorkerId, string? Host, DateTimeOffset MeasuredAt, TimeSpan Skew, TimeSpan RoundTrip, bool Live, TimeSpan? ClaimsLeft = null, TimeSpan? DatabaseStep = null)
{
    /// <summary>The leases taken on this measurement may not have ended yet.</summary>
    public bool ClaimsLive => ClaimsLeft > TimeSpan.Zero;

    /// <summary>The worker's Dispatch:WorkerId: its name in <c>worker_clocks</c> less the mark of its process.</summary>
    public string DispatchId => WorkerClocks.DispatchId(WorkerId);
}

internal enum ClockVerdict
{
    /// <summary>Within the limit of PostgreSQL's clock, and of every clock whose leases may be live: claims.</summary>
    AgreesWithDatabase,

    /// <summary>Beyond the limit of PostgreSQL's clock, but most of the live workers' clocks agree with this one (the database's is the odd one out), as do those whose leases may be live: claims.</summary>
    AgreesWithWorkers,

    /// <summary>Beyond the limit of PostgreSQL's clock, and not enough live workers agree: holds.</summary>
    Skewed,

    /// <summary>More than twice the limit from a clock on which leases may still be live: holds, whatever else agrees.</summary>
    ApartFromClaims,

    /// <summary>PostgreSQL's clock stepped lately and this worker cannot yet tell which side of the step its own measurements are on (or two steps are recent): holds.</summary>
    DatabaseStepUnsure,

    /// <summary>
    /// This worker's wall clock moved unlike its monotonic one between its last two measurements
    /// while its difference from PostgreSQL's did not move with it: its host was suspended (the
    /// monotonic clock stopped), or its clock stepped together with the database's (the same host).
    /// It holds, and records nothing, until the other workers' measurements tell which (see <see cref="OwnClockEvent"/>).
    /// </summary>
    OwnClockUnsure,
}

/// <summary>
/// A change of this worker's difference from PostgreSQL's clock, by minus <paramref name="Step"/>,
/// in a measurement interval in which its own wall clock moved unlike its monotonic one beyond
/// <see cref="WorkerClocks.StepAllowance"/>. From this worker's measurements alone it is either the
/// database's clock stepping by <paramref name="Step"/> together with this worker's (a worker on the
/// database's host) or this worker's monotonic clock pausing for as long (a suspended host or VM,
/// the database's clock unmoved). It is not taken for a step of the database's clock: the other
/// workers' rows tell (<see cref="ClockDecision.Judge"/>).
/// </summary>
/// <param name="After">PostgreSQL's time (on its clock as it is since) by which the measurement was over: a row measured later is on that clock.</param>
/// <param name="RoundTrips">The round trips of the two measurements either side of it: <paramref name="Step"/> is off by up to half of them.</param>
internal sealed record OwnClockEvent(TimeSpan Step, DateTimeOffset After, TimeSpan RoundTrips);

/// <summary>What this worker knows, at one decision, of a step of PostgreSQL's clock (see <see cref="ClockDecision.Judge"/>).</summary>
/// <param name="Seen">A step this worker's own measurements show since its last one (forward positive): its earlier rows are carried across it.</param>
/// <param name="MarkedBefore">A step was marked in <c>worker_clocks</c> when this worker last decided, and its measurements show none since: they are all on the database's clock as it is now.</param>
/// <param name="SeenRoundTrips">The round trips of the two measurements either side of <see cref="Seen"/>: it is off by up to half of them.</param>
internal sealed record DatabaseStepView(TimeSpan? Seen, bool MarkedBefore, TimeSpan SeenRoundTrips = default)
{
    public static readonly DatabaseStepView None = new(null, false);

    /// <summary>A change of the difference that this worker's own clock moving may explain, not yet told apart from a step of the database's clock.</summary>
    public OwnClockEvent? Unattributed { get; init; }

    /// <summary>
    /// The steps of the database's clock this worker has seen (and carried its rows across) while it
    /// measured without a break for at least <see cref="WorkerClocks.ClaimsFor"/>, so every recent step
    /// it has not seen came after its measurement; null when it has not measured that long.
    /// </summary>
    public IReadOnlyList<TimeSpan>? SeenLately { get; init; }
}

/// <summary>What one measurement decided, with what the logs say about it.</summary>
/// <param name="Agreeing">Live hosts whose clocks agree with this one's, this one's included.</param>
/// <param name="Live">Live hosts, this one's included.</param>
/// <param name="Apart">With <see cref="ClockVerdict.ApartFromClaims"/>, the farthest clock whose leases may be live.</param>
/// <param name="MarkStep">The step of PostgreSQL's clock this decision marks in its row (seen now, or confirmed): its worker's rows are all on the database's clock as it is after it.</param>
internal sealed record ClockDecision(ClockSample Sample, ClockVerdict Verdict, int Agreeing, int Live, WorkerClock? Apart = null, TimeSpan? MarkStep = null)
{
    public bool AllowsClaims => Verdict is ClockVerdict.AgreesWithDatabase or ClockVerdict.AgreesWithWorkers;

    /// <summary>The step of PostgreSQL's clock this worker's earlier rows are carried across at this decision (<c>WorkerClocks.CarryAcrossSql</c>), with the round trips either side of it.</summary>
    public (TimeSpan Step, TimeSpan RoundTrips)? CarryAcross { get; init; }

    /// <summary>Set when the recent marks name different steps of the database's clock: those steps.</summary>
    public IReadOnlyList<TimeSpan>? RepeatedSteps { get; init; }

    /// <summary>Nothing of this decision is written (<see cref="ClockVerdict.OwnClockUnsure"/>): it holds, and its measurement may be on either side of a step of the database's clock.</summary>
    public bool Recorded => Verdict != ClockVerdict.OwnClockUnsure;

    /// <summary>Marks of a recent step of PostgreSQL's clock were read (or made) at this decision: a measurement after it that sees no step is on the database's clock as it is since.</summary>
    public bool StepMarksSeen { get; init; }

    /// <summary>
    /// The rule, given this worker's measurement and the rows read under the fleet's lock. Two
    /// things are asked, apart, because they do different jobs:
    /// <list type="number">
    /// <item>Standing (who should claim): this clock agrees with PostgreSQL's, as before; or, when
    /// it does not, with a strict majority of the live hosts' clocks — its own host's included, and at
    /// least one other (a worker alone against the database cannot tell which of the two is wrong,
    /// and producers' due times come from the database's clock: it holds, as before). A host casts
    /// one vote, whatever the number of its workers (they share its clock), and this worker's own
    /// host votes only through it: its earlier process's row, or a replica's beside it, is not a
    /// second clock agreeing. Each comparison gets the measurements' tolerance, half of each round
    /// trip, as the database's does.</item>
    /// <item>Safety (that no two clocks far apart both judge the same leases): this clock is within
    /// twice the limit, as measured and with no tolerance given, of every clock on which leases may
    /// still be live — the other workers' and this worker's own earlier ones. A worker that claims
    /// writes its row, under the fleet's lock, before it acts on the decision; any later decision
    /// reads that row under the same lock and keeps to it until those leases have ended
    /// (<c>claims_until</c>). So of any two clocks that claim while the other's leases may be live,
    /// the later to decide was checked against the earlier: they are at most twice the limit
    /// apart (plus each measurement's error, at most 0.5 s, and a step smaller than
    /// <see cref="WorkerClocks.StepAllowance"/> before the next measurement), as when both were held
    /// to PostgreSQL's clock. Majorities alone could not promise that: the live workers a decision
    /// counts change between two workers' decisions (a worker starting, one whose clock was just
    /// fixed, one that died), and a minority agreeing with the database beside a majority that
    /// does not would both claim.</item>
    /// <item>A step of PostgreSQL's clock by D puts every skew measured after it D off those measured
    /// before (and the database's times in the rows, <c>claims_until</c> among them, on another
    /// footing). A worker that sees it (its measurement moved unlike its own clock) carries its own
    /// earlier rows across it and marks its row; so does one whose measurements all came after the
    /// mark. While a mark is recent (as long as leases taken before the step may be live), a
    /// worker's rows count as they are only when that worker has marked; another worker's rows
    /// may be on either side of the step, so they do not vote, and their claims hold this one if
    /// they are apart from it either way, for D longer when the clock stepped forward (their
    /// <c>claims_until</c> came D early). A worker that has not marked cannot tell which side its
    /// own measurement is on, and holds; so does every worker while two different steps are
    /// recent — except a worker that has measured without a break for as long as marks count and
    /// seen every recent step itself: it is on the database's clock as it is now, and judges the
    /// others' rows as above, a worker's counting as they are only when it has marked every one of
    /// those steps, and those of any other worker held to twice the limit on every footing they may
    /// be on (any of the steps it has not marked, or several). A database whose clock keeps stepping
    /// so holds only the workers that have not measured across every step, not the fleet.</item>
    /// <item>A change of the difference in an interval in which this worker's own wall clock moved
    /// unlike its monotonic one (<see cref="OwnClockEvent"/>) is not taken for a step of the
    /// database's clock: a suspended host reads as one, and marking it would shift this worker's rows
    /// wrongly and hold every other worker. Nor is it ignored: a worker on the database's host whose
    /// clock stepped with the database's reads the same, and its clock is then that far from the
    /// clocks the others' leases were taken on. It holds, writing nothing (so none of its rows is on
    /// the far side of the step), until the rows tell: another worker has marked a step of that size
    /// (the database's clock did step: it carries its rows across it and marks, as a worker that saw
    /// the step would); or each live worker of another host has measured twice since (the second
    /// measurement was taken after the first was written, so after this one: a step before it would
    /// have been seen and marked) and none marked it (its monotonic clock paused: it decides as
    /// usual). With no live worker of another host to tell, it holds while any row whose claims may
    /// be live is more than twice the limit from it on either footing, as for a row not carried
    /// across a step, and then decides as usual.</item>
    /// </list>
    /// </summary>
    public static ClockDecision Judge(ClockSample sample, WorkerClocks.Self self, IReadOnlyCollection<WorkerClock> rows, TimeSpan limit, DatabaseStepView step)
    {
        ArgumentNullException.ThrowIfNull(self);
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(step);
        if (step.Unattributed is { } moved)
        {
            if (Attributed(sample, self, rows, limit, step, moved) is not { } told)
            {
                return new ClockDecision(sample, ClockVerdict.OwnClockUnsure, 1, 1) { StepMarksSeen = rows.Any(r => r.DatabaseStep is not null) };
            }
            step = told;
        }
        return JudgeAcrossSteps(sample, self, rows, limit, step) with
        {
            StepMarksSeen = step.Seen is not null || rows.Any(r => r.DatabaseStep is not null),
            CarryAcross = step.Seen is { } seen ? (seen, step.SeenRoundTrips) : null,
        };
    }

    /// <summary>
    /// What the rows tell of <paramref name="moved"/> (see <see cref="Judge"/>): a step of the database's
    /// clock, carried with any seen since; none; or null, not yet.
    /// </summary>
    private static DatabaseStepView? Attributed(ClockSample sample, WorkerClocks.Self self, IReadOnlyCollection<WorkerClock> rows, TimeSpan limit, DatabaseStepView step, OwnClockEvent moved)
    {
        bool OfIt(TimeSpan? mark) => mark is { } m && (m - moved.Step).Duration() <= WorkerClocks.StepsApart;
        if (rows.Any(r => r.WorkerId != self.Name && OfIt(r.DatabaseStep)) && !rows.Any(r => r.WorkerId == self.Name && OfIt(r.DatabaseStep)))
        {
            return step with { Seen = moved.Step + (step.Seen ?? TimeSpan.Zero), SeenRoundTrips = moved.RoundTrips + step.SeenRoundTrips, Unattributed = null };
        }
        var others = rows.Where(r => r.Live && r.WorkerId != self.Name && !OnOwnHost(r, self)).GroupBy(r => r.WorkerId).ToList();
        if (others.Count > 0)
        {
            return others.All(w => w.Count(r => r.MeasuredAt > moved.After) >= 2) ? step with { Unattributed = null } : null;
        }
        // No other host's worker to tell: either footing, as for a row not carried across a step.
        return rows.Any(r => Far(r, sample, limit, [moved.Step])) ? null : step with { Unattributed = null };
    }

    /// <summary>Steps of the database's clock judged at once (a footing per combination of those a row may not be carried across); with more recent than this, a worker holds.</summary>
    private const int MostStepsJudged = 8;

    private static bool Near(TimeSpan a, TimeSpan b) => (a - b).Duration() <= WorkerClocks.StepsApart;

    /// <summary>
    /// A row whose claims may be live more than twice the limit from this clock, given the steps of
    /// the database's clock it may not be carried across (<paramref name="unmarked"/>): as it is, or
    /// carried across any of them (in whatever order they came, its claims lasting as much longer as
    /// the forward ones), each step's measurement adding its error.
    /// </summary>
    private static bool Far(WorkerClock r, ClockSample sample, TimeSpan limit, IReadOnlyList<TimeSpan> unmarked)
    {
        if (unmarked.Count == 0)
        {
            return r.ClaimsLive && (r.Skew - sample.Skew).Duration() > (limit * 2) - ExtraError(r);
        }
        if (!(r.ClaimsLeft + unmarked.Aggregate(TimeSpan.Zero, (sum, s) => sum + Forward(s)) > TimeSpan.Zero))
        {
            return false;
        }
        for (var subset = 0; subset < 1 << unmarked.Count; subset++)
        {
            var carried = TimeSpan.Zero;
            var count = 0;
            for (var i = 0; i < unmarked.Count; i++)
            {
                if ((subset & (1 << i)) != 0)
                {
                    carried += unmarked[i];
                    count++;
                }
            }
            if ((r.Skew - carried - sample.Skew).Duration() > (limit * 2) - ExtraError(r) - (count * WorkerClocks.StepsApart / 2))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>A row of this worker's own host, whose clock is this one's: a replica beside it, or its own earlier process (a row that names no host, of a build before 0044, when it has this worker's Dispatch:WorkerId).</summary>
    private static bool OnOwnHost(WorkerClock r, WorkerClocks.Self self) => r.Host is null ? r.DispatchId == self.DispatchId : r.Host == self.Host;

    private static ClockDecision JudgeAcrossSteps(ClockSample sample, WorkerClocks.Self self, IReadOnlyCollection<WorkerClock> rows, TimeSpan limit, DatabaseStepView step)
    {
        ArgumentNullException.ThrowIfNull(sample);
        ArgumentNullException.ThrowIfNull(self);
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(step);
        var marks = rows.Where(r => r.DatabaseStep is not null).Select(r => r.DatabaseStep!.Value).ToList();
        if (step.Seen is { } seen)
        {
            marks.Add(seen);
            // Carried across the step as the write will carry them (WorkerClocks.CarryAcrossSql).
            rows = [.. rows.Select(r => r.WorkerId == self.Name ? r with { Skew = r.Skew - seen, RoundTrip = r.RoundTrip + step.SeenRoundTrips, ClaimsLeft = r.ClaimsLeft + Forward(seen) } : r)];
        }
        TimeSpan? markStep = step.Seen;
        // The steps each other worker may not have carried its rows across (none: its rows count as they are).
        Func<WorkerClock, IReadOnlyList<TimeSpan>> unmarked = _ => [];
        IReadOnlyList<TimeSpan>? repeated = null;
        if (marks.Count > 0 && marks.Max() - marks.Min() > WorkerClocks.StepsApart)
        {
            repeated = marks.Order().Aggregate(new List<TimeSpan>(), (distinct, m) => { if (distinct.Count == 0 || !Near(distinct[^1], m)) { distinct.Add(m); } return distinct; });
            List<TimeSpan>? seenLately = step.SeenLately is { } lately ? [.. lately, .. step.Seen is { } now ? [now] : Array.Empty<TimeSpan>()] : null;
            if (seenLately is null || seenLately.Count > MostStepsJudged || !marks.All(m => seenLately.Any(s => Near(s, m))))
            {
                // A step it has not seen itself: one after its measurement, or one before it started measuring.
                return new ClockDecision(sample, ClockVerdict.DatabaseStepUnsure, 1, 1, MarkStep: markStep) { RepeatedSteps = repeated };
            }
            var marksOf = rows.Where(r => r.DatabaseStep is not null).ToLookup(r => r.WorkerId, r => r.DatabaseStep!.Value);
            unmarked = r => r.WorkerId == self.Name ? [] : [.. seenLately.Where(s => !marksOf[r.WorkerId].Any(m => Near(m, s)))];
        }
        else if (marks.Count > 0)
        {
            var stepped = marks[0];
            var selfMarked = step.Seen is not null || rows.Any(r => r.WorkerId == self.Name && r.DatabaseStep is not null);
            if (!selfMarked && step.MarkedBefore)
            {
                markStep = stepped;   // all its measurements came after the step: it marks, carrying nothing
                selfMarked = true;
            }
            if (!selfMarked)
            {
                return new ClockDecision(sample, ClockVerdict.DatabaseStepUnsure, 1, 1);
            }
            var marked = rows.Where(r => r.DatabaseStep is not null).Select(r => r.WorkerId).Append(self.Name).ToHashSet();
            unmarked = r => marked.Contains(r.WorkerId) ? [] : [stepped];
        }
        bool Sure(WorkerClock r) => unmarked(r).Count == 0;

        var agreesWithDatabase = sample.Skew.Duration() - (sample.RoundTrip / 2) <= limit;
        // One vote per host: the latest live row of each, rows of this worker's own host left out
        // (its clock is this one's: it votes through this worker), and a row that names no host (a
        // build before 0044) of this worker's own Dispatch:WorkerId too, as its earlier process's may.
        var peers = rows
            .Where(r => r.Live && r.WorkerId != self.Name && Sure(r) && !OnOwnHost(r, self))
            .GroupBy(r => r.Host ?? "\0" + r.WorkerId)
            .Select(g => g.MaxBy(r => r.MeasuredAt)!)
            .ToList();
        var agreeing = 1 + peers.Count(p => (p.Skew - sample.Skew).Duration() - ((p.RoundTrip + sample.RoundTrip) / 2) <= limit);
        var live = 1 + peers.Count;
        // A slow measurement (counted only when it certainly shows this clock beyond the database's
        // limit) is too rough to be compared with the others' without a tolerance, as claiming asks.
        var agreesWithWorkers = agreeing >= 2 && agreeing * 2 > live && sample.RoundTrip <= ClockSkewGuard.LongestRoundTrip;
        if (!agreesWithDatabase && !agreesWithWorkers)
        {
            return new ClockDecision(sample, ClockVerdict.Skewed, agreeing, live, MarkStep: markStep) { RepeatedSteps = repeated };
        }
        // A row carried across a step of the database's clock is off by more than a measurement is
        // (its round trip records how much), and a row that may be on the far side of a step, by
        // as much as the step's measurement: the margin for two claiming clocks stays what the
        // limit's validation allows for (DispatchOptions.ClockErrorPerSide).
        var apart = rows
            .Where(r => Far(r, sample, limit, unmarked(r)))
            .MaxBy(r => (r.Skew - sample.Skew).Duration());
        if (apart is not null)
        {
            return new ClockDecision(sample, ClockVerdict.ApartFromClaims, agreeing, live, apart, markStep) { RepeatedSteps = repeated };
        }
        return new ClockDecision(sample, agreesWithDatabase ? ClockVerdict.AgreesWithDatabase : ClockVerdict.AgreesWithWorkers, agreeing, live, MarkStep: markStep) { RepeatedSteps = repeated };
    }

    /// <summary>How far a row may be off beyond the <see cref="DispatchOptions.ClockMeasurementError"/> every measurement is allowed (a row carried across a step of the database's clock).</summary>
    private static TimeSpan ExtraError(WorkerClock row) =>
        row.RoundTrip > ClockSkewGuard.LongestRoundTrip ? (row.RoundTrip - ClockSkewGuard.LongestRoundTrip) / 2 : TimeSpan.Zero;

    /// <summary>How much longer <c>claims_until</c> written before a step of <paramref name="step"/> holds: a forward step made it come that much early; one back, late (it is then kept as it is).</summary>
    private static TimeSpan Forward(TimeSpan step) => step > TimeSpan.Zero ? step : TimeSpan.Zero;
}

/// <summary>
/// The <c>worker_clocks</c> table (migration 0042): each worker's measurements of its clock against
/// PostgreSQL's, so that a worker judges its clock by the other workers' too. Read and written once
/// per measurement (every 30 s), never on a claim's path.
/// </summary>
internal static class WorkerClocks
{
    /// <summary>This worker as <c>worker_clocks</c> names it: its process's name (<see cref="Name"/>, its Dispatch:WorkerId and a mark of its own), and its host.</summary>
    internal sealed record Self(string Name, string Host)
    {
        public string DispatchId => WorkerClocks.DispatchId(Name);
    }

    /// <summary>How long, by the database's clock, leases taken on a decision may be live: also how long a mark of a step of that clock counts (leases taken before the step may be live as long).</summary>
    public static TimeSpan ClaimsFor(TimeSpan leaseDuration) => DecisionLifetime + leaseDuration + ClaimsMargin;

    /// <summary>The Dispatch:WorkerId in a name of <c>worker_clocks</c> (<c>{WorkerId}#{mark}</c>, as every build since 0042 writes it).</summary>
    public static string DispatchId(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var mark = name.LastIndexOf('#');
        return mark < 0 ? name : name[..mark];
    }

    /// <summary>Measured this recently, a worker is taken to be running: two intervals and a margin, so one failed measurement does not drop it.</summary>
    public static readonly TimeSpan LiveWindow = (ClockSkewGuard.Interval * 2) + TimeSpan.FromSeconds(15);

    /// <summary>How long a decision lets the worker claim without a newer one: two intervals (a measurement may fail once). Within <see cref="LiveWindow"/>.</summary>
    public static readonly TimeSpan DecisionLifetime = ClockSkewGuard.Interval * 2;

    /// <summary>
    /// A step of the wall clock larger than this since the decision's measurement holds claims at
    /// once: the other workers judge this worker's leases by the skew its row says, and the
    /// validation's margin (<see cref="DispatchOptions.ClockErrorPerSide"/>) is all there is for the difference.
    /// </summary>
    public static readonly TimeSpan StepAllowance = DispatchOptions.ClockMeasurementError;

    /// <summary>
    /// Two workers' measurements of one step of PostgreSQL's clock differ by at most this (each is
    /// off by up to half of the round trips either side of it); marks further apart are two steps.
    /// </summary>
    public static readonly TimeSpan StepsApart = ClockSkewGuard.LongestRoundTrip * 2;

    /// <summary>
    /// Beyond a decision's lifetime and a lease, the time its row keeps other clocks from claiming:
    /// a lane asks before it waits its turn to claim, and clocks run at slightly different rates.
    /// </summary>
    private static readonly TimeSpan ClaimsMargin = TimeSpan.FromMinutes(1);

    private static readonly TimeSpan Forgotten = TimeSpan.FromDays(1);

    // Any constant unique to us, apart from the migrator's. ("OUTBOXCK" in ASCII.)
    internal const long FleetLockKey = 0x4F5554424F58434B;

    // Under a transaction lock every worker takes for its decision, so a decision sees the rows of
    // all decisions before it: the last measurement of each live worker, every measurement that let
    // its worker claim (how long its leases may be live is judged by the caller: a step of the
    // database's clock moves claims_until), and the marks of a step of the database's clock that
    // leases taken before it may outlive ($2).
    private const string ReadSql = """
        SELECT worker_id, host, measured_at, skew_ms, round_trip_ms,
               measured_at > clock_timestamp() - $1 AS live,
               extract(epoch FROM claims_until - clock_timestamp()) * 1000 AS claims_left_ms,
               CASE WHEN measured_at > clock_timestamp() - $2 THEN database_step_ms END AS database_step_ms
          FROM worker_clocks
         WHERE measured_at > clock_timestamp() - $1 OR claims_until IS NOT NULL
            OR (database_step_ms IS NOT NULL AND measured_at > clock_timestamp() - $2)
        """;

    private const string WriteSql = """
        INSERT INTO worker_clocks (worker_id, host, measured_at, skew_ms, round_trip_ms, claims_until, database_step_ms)
        VALUES ($1, $2, clock_timestamp(), $3, $4, CASE WHEN $5 THEN clock_timestamp() + $6 END, $7)
        """;

    // This worker's earlier rows, carried across a step of the database's clock ($2, forward positive)
    // its measurements show: each skew, as the database's clock now runs, is less the step, and off
    // by as much more as the step's measurement is (half the two round trips either side of it, $4,
    // added to its round trip). Its times are moved with it, claims_until only ever later: a row
    // written after the step (a slow measurement standing in for the last good one) may already be
    // on the new footing, and its leases must not seem to end early. Under the fleet's lock, before
    // this measurement's row.
    private const string CarryAcrossSql = """
        UPDATE worker_clocks
           SET skew_ms = skew_ms - $2, round_trip_ms = round_trip_ms + $4,
               measured_at = measured_at + $3, claims_until = claims_until + greatest($3, interval '0')
         WHERE worker_id = $1
        """;

    // This worker's earlier rows, once neither live, nor holding other clocks back, nor its mark of
    // a step that leases taken before it may outlive ($3). None while any worker's mark of a step is
    // that recent: a row this worker has not carried across a forward step (it has not seen it yet)
    // has its times that much early on the database's clock as it is now, so it would look ended
    // while the leases taken on it may be live.
    private const string ForgetOwnSql = """
        DELETE FROM worker_clocks
         WHERE worker_id = $1 AND measured_at <= clock_timestamp() - $2 AND (claims_until IS NULL OR claims_until <= clock_timestamp())
           AND NOT EXISTS (SELECT 1 FROM worker_clocks m WHERE m.database_step_ms IS NOT NULL AND m.measured_at > clock_timestamp() - $3)
        """;

    // Workers gone for a day (their processes ended: a worker's name is new at every start).
    private const string ForgetGoneSql = """
        DELETE FROM worker_clocks
         WHERE measured_at <= clock_timestamp() - $1 AND (claims_until IS NULL OR claims_until <= clock_timestamp())
        """;

    /// <summary>
    /// Reads the other workers' clocks, decides, and records this measurement with its decision, in
    /// one transaction under the fleet's lock. The decision is this worker's to act on only once
    /// this returns: committed, its row is what any later decision keeps to.
    /// </summary>
    public static async Task<ClockDecision> DecideAsync(NpgsqlConnection connection, Self self, ClockSample sample, TimeSpan limit, TimeSpan leaseDuration, DatabaseStepView step, bool forgetGone, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(self);
        ArgumentNullException.ThrowIfNull(sample);
        var claimsFor = ClaimsFor(leaseDuration);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var rows = new List<WorkerClock>();
        await using (var read = new NpgsqlBatch(connection, transaction))
        {
            // Bounded both ways: a decision waits at most 5 s for the fleet's lock, and a holder that
            // stops between its statements (its host frozen, its network gone) has its session ended
            // by the server after 5 s, so the lock is never held for the hours a dead connection can
            // take to be noticed (every worker's decision would wait, and lapse, meanwhile).
            read.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL lock_timeout = '5s'"));
            read.BatchCommands.Add(new NpgsqlBatchCommand("SET LOCAL idle_in_transaction_session_timeout = '5s'"));
            read.BatchCommands.Add(new NpgsqlBatchCommand($"SELECT pg_advisory_xact_lock({FleetLockKey})"));
            read.BatchCommands.Add(new NpgsqlBatchCommand(ReadSql)
            {
                Parameters = { new NpgsqlParameter<TimeSpan> { TypedValue = LiveWindow }, new NpgsqlParameter<TimeSpan> { TypedValue = claimsFor } },
            });
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            await reader.NextResultAsync(cancellationToken);   // past the lock's (the SETs return no result set)
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add(new WorkerClock(
                    reader.GetString(0),
                    reader.IsDBNull(1) ? null : reader.GetString(1),
                    new DateTimeOffset(reader.GetDateTime(2), TimeSpan.Zero),
                    TimeSpan.FromMilliseconds(reader.GetDouble(3)),
                    TimeSpan.FromMilliseconds(reader.GetDouble(4)),
                    reader.GetBoolean(5),
                    reader.IsDBNull(6) ? null : TimeSpan.FromMilliseconds(reader.GetDouble(6)),
                    reader.IsDBNull(7) ? null : TimeSpan.FromMilliseconds(reader.GetDouble(7))));
            }
        }
        var decision = ClockDecision.Judge(sample, self, rows, limit, step);
        if (!decision.Recorded)
        {
            await transaction.CommitAsync(cancellationToken);
            return decision;
        }
        await using (var write = new NpgsqlBatch(connection, transaction))
        {
            if (decision.CarryAcross is { } carry)
            {
                write.BatchCommands.Add(new NpgsqlBatchCommand(CarryAcrossSql)
                {
                    Parameters =
                    {
                        new NpgsqlParameter<string> { TypedValue = self.Name },
                        new NpgsqlParameter<double> { TypedValue = carry.Step.TotalMilliseconds },
                        new NpgsqlParameter<TimeSpan> { TypedValue = carry.Step },
                        new NpgsqlParameter<double> { TypedValue = carry.RoundTrips.TotalMilliseconds },
                    },
                });
            }
            write.BatchCommands.Add(new NpgsqlBatchCommand(WriteSql)
            {
                Parameters =
                {
                    new NpgsqlParameter<string> { TypedValue = self.Name },
                    new NpgsqlParameter<string> { TypedValue = self.Host },
                    new NpgsqlParameter<double> { TypedValue = sample.Skew.TotalMilliseconds },
                    new NpgsqlParameter<double> { TypedValue = sample.RoundTrip.TotalMilliseconds },
                    new NpgsqlParameter<bool> { TypedValue = decision.AllowsClaims },
                    new NpgsqlParameter<TimeSpan> { TypedValue = claimsFor },
                    new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Double, Value = decision.MarkStep is { } mark ? mark.TotalMilliseconds : DBNull.Value },
                },
            });
            write.BatchCommands.Add(new NpgsqlBatchCommand(ForgetOwnSql)
            {
                Parameters =
                {
                    new NpgsqlParameter<string> { TypedValue = self.Name },
                    new NpgsqlParameter<TimeSpan> { TypedValue = LiveWindow },
                    new NpgsqlParameter<TimeSpan> { TypedValue = claimsFor },
                },
            });
            if (forgetGone)
            {
                write.BatchCommands.Add(new NpgsqlBatchCommand(ForgetGoneSql) { Parameters = { new NpgsqlParameter<TimeSpan> { TypedValue = Forgotten } } });
            }
            await write.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return decision;
    }
}
