using Npgsql;

namespace OutboxComms.Worker.Dispatch;

/// <summary>Another worker's measurement as read from <c>worker_clocks</c> (or one of this worker's own earlier ones).</summary>
/// <param name="Live">Measured within <see cref="WorkerClocks.LiveWindow"/>: a worker still running, whose clock votes.</param>
/// <param name="ClaimsLive">The measurement let its worker claim, and leases taken on it may not have ended yet.</param>
internal sealed record WorkerClock(string WorkerId, DateTimeOffset MeasuredAt, TimeSpan Skew, TimeSpan RoundTrip, bool Live, bool ClaimsLive);

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
}

/// <summary>What one measurement decided, with what the logs say about it.</summary>
/// <param name="Agreeing">Live workers whose clocks agree with this one's, this one included.</param>
/// <param name="Live">Live workers, this one included.</param>
/// <param name="Apart">With <see cref="ClockVerdict.ApartFromClaims"/>, the farthest clock whose leases may be live.</param>
internal sealed record ClockDecision(ClockSample Sample, ClockVerdict Verdict, int Agreeing, int Live, WorkerClock? Apart = null)
{
    public bool AllowsClaims => Verdict is ClockVerdict.AgreesWithDatabase or ClockVerdict.AgreesWithWorkers;

    /// <summary>
    /// The rule, given this worker's measurement and the rows read under the fleet's lock. Two
    /// things are asked, apart, because they do different jobs:
    /// <list type="number">
    /// <item>Standing (who should claim): this clock agrees with PostgreSQL's, as before; or, when
    /// it does not, with a strict majority of the live workers' clocks — itself included, and at
    /// least one other (a worker alone against the database cannot tell which of the two is wrong,
    /// and producers' due times come from the database's clock: it holds, as before). Each
    /// comparison gets the measurements' tolerance, half of each round trip, as the database's does.</item>
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
    /// </list>
    /// </summary>
    public static ClockDecision Judge(ClockSample sample, string self, IReadOnlyCollection<WorkerClock> rows, TimeSpan limit)
    {
        var agreesWithDatabase = sample.Skew.Duration() - (sample.RoundTrip / 2) <= limit;
        var peers = rows.Where(r => r.Live && r.WorkerId != self).GroupBy(r => r.WorkerId).Select(g => g.MaxBy(r => r.MeasuredAt)!).ToList();
        var agreeing = 1 + peers.Count(p => (p.Skew - sample.Skew).Duration() - ((p.RoundTrip + sample.RoundTrip) / 2) <= limit);
        var live = 1 + peers.Count;
        // A slow measurement (counted only when it certainly shows this clock beyond the database's
        // limit) is too rough to be compared with the others' without a tolerance, as claiming asks.
        var agreesWithWorkers = agreeing >= 2 && agreeing * 2 > live && sample.RoundTrip <= ClockSkewGuard.LongestRoundTrip;
        if (!agreesWithDatabase && !agreesWithWorkers)
        {
            return new ClockDecision(sample, ClockVerdict.Skewed, agreeing, live);
        }
        var apart = rows.Where(r => r.ClaimsLive && (r.Skew - sample.Skew).Duration() > limit * 2).MaxBy(r => (r.Skew - sample.Skew).Duration());
        if (apart is not null)
        {
            return new ClockDecision(sample, ClockVerdict.ApartFromClaims, agreeing, live, apart);
        }
        return new ClockDecision(sample, agreesWithDatabase ? ClockVerdict.AgreesWithDatabase : ClockVerdict.AgreesWithWorkers, agreeing, live);
    }
}

/// <summary>
/// The <c>worker_clocks</c> table (migration 0042): each worker's measurements of its clock against
/// PostgreSQL's, so that a worker judges its clock by the other workers' too. Read and written once
/// per measurement (every 30 s), never on a claim's path.
/// </summary>
internal static class WorkerClocks
{
    /// <summary>Measured this recently, a worker is taken to be running: two intervals and a margin, so one failed measurement does not drop it.</summary>
    public static readonly TimeSpan LiveWindow = (ClockSkewGuard.Interval * 2) + TimeSpan.FromSeconds(15);

    /// <summary>How long a decision lets the worker claim without a newer one: two intervals (a measurement may fail once). Within <see cref="LiveWindow"/>.</summary>
    public static readonly TimeSpan DecisionLifetime = ClockSkewGuard.Interval * 2;

    /// <summary>
    /// A step of the wall clock larger than this since the decision's measurement holds claims at
    /// once: the other workers judge this worker's leases by the skew its row says, and the
    /// validation's margin (<see cref="DispatchOptions.ClockMeasurementError"/>) is all there is for the difference.
    /// </summary>
    public static readonly TimeSpan StepAllowance = DispatchOptions.ClockMeasurementError;

    /// <summary>
    /// Beyond a decision's lifetime and a lease, the time its row keeps other clocks from claiming:
    /// a lane asks before it waits its turn to claim, and clocks run at slightly different rates.
    /// </summary>
    private static readonly TimeSpan ClaimsMargin = TimeSpan.FromMinutes(1);

    private static readonly TimeSpan Forgotten = TimeSpan.FromDays(1);

    // Any constant unique to us, apart from the migrator's. ("OUTBOXCK" in ASCII.)
    internal const long FleetLockKey = 0x4F5554424F58434B;

    // Under a transaction lock every worker takes for its decision, so a decision sees the rows of
    // all decisions before it: the last measurement of each live worker, and every measurement
    // whose leases may be live (this worker's own included).
    private const string ReadSql = """
        SELECT worker_id, measured_at, skew_ms, round_trip_ms,
               measured_at > clock_timestamp() - $1 AS live,
               coalesce(claims_until > clock_timestamp(), false) AS claims_live
          FROM worker_clocks
         WHERE measured_at > clock_timestamp() - $1 OR claims_until > clock_timestamp()
        """;

    private const string WriteSql = """
        INSERT INTO worker_clocks (worker_id, measured_at, skew_ms, round_trip_ms, claims_until)
        VALUES ($1, clock_timestamp(), $2, $3, CASE WHEN $4 THEN clock_timestamp() + $5 END)
        """;

    // This worker's earlier rows, once neither live nor holding other clocks back.
    private const string ForgetOwnSql = """
        DELETE FROM worker_clocks
         WHERE worker_id = $1 AND measured_at <= clock_timestamp() - $2 AND (claims_until IS NULL OR claims_until <= clock_timestamp())
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
    public static async Task<ClockDecision> DecideAsync(NpgsqlConnection connection, string self, ClockSample sample, TimeSpan limit, TimeSpan leaseDuration, bool forgetGone, CancellationToken cancellationToken)
    {
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
            read.BatchCommands.Add(new NpgsqlBatchCommand(ReadSql) { Parameters = { new NpgsqlParameter<TimeSpan> { TypedValue = LiveWindow } } });
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            await reader.NextResultAsync(cancellationToken);   // past the lock's (the SETs return no result set)
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add(new WorkerClock(
                    reader.GetString(0),
                    new DateTimeOffset(reader.GetDateTime(1), TimeSpan.Zero),
                    TimeSpan.FromMilliseconds(reader.GetDouble(2)),
                    TimeSpan.FromMilliseconds(reader.GetDouble(3)),
                    reader.GetBoolean(4),
                    reader.GetBoolean(5)));
            }
        }
        var decision = ClockDecision.Judge(sample, self, rows, limit);
        await using (var write = new NpgsqlBatch(connection, transaction))
        {
            write.BatchCommands.Add(new NpgsqlBatchCommand(WriteSql)
            {
                Parameters =
                {
                    new NpgsqlParameter<string> { TypedValue = self },
                    new NpgsqlParameter<double> { TypedValue = sample.Skew.TotalMilliseconds },
                    new NpgsqlParameter<double> { TypedValue = sample.RoundTrip.TotalMilliseconds },
                    new NpgsqlParameter<bool> { TypedValue = decision.AllowsClaims },
                    new NpgsqlParameter<TimeSpan> { TypedValue = DecisionLifetime + leaseDuration + ClaimsMargin },
                },
            });
            write.BatchCommands.Add(new NpgsqlBatchCommand(ForgetOwnSql)
            {
                Parameters = { new NpgsqlParameter<string> { TypedValue = self }, new NpgsqlParameter<TimeSpan> { TypedValue = LiveWindow } },
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
