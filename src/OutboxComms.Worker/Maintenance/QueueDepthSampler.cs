using Npgsql;
using OutboxComms.Core.Observability;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Samples the backlog for the queue gauges (one query over the PENDING rows), so scraping metrics
/// never costs a database round trip. Every 15 s while that is cheap; under a large backlog the
/// exact counts cost a scan of every PENDING row (about 1 s at 400,000 rows), so the sampler keeps
/// its share of the machine bounded: the sample runs on one core (no parallel workers, which would
/// take both cores of a small host from the dispatchers), and the next one waits 100 times as long
/// as the last took — about 1 % of one core per worker process — but never more than 5 minutes,
/// so the gauges stay fresh enough to alert on.
/// </summary>
internal sealed partial class QueueDepthSampler(NpgsqlDataSource dataSource, OutboxMetrics metrics, TimeProvider time, ILogger<QueueDepthSampler> logger) : BackgroundService
{
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(15);

    internal static readonly TimeSpan LongestWait = TimeSpan.FromMinutes(5);

    private const int CostFactor = 100;

    private const string Sql = """
        SELECT count(*) FILTER (WHERE next_attempt_at <= $1),
               count(*) FILTER (WHERE next_attempt_at > $1 AND (locked_until IS NULL OR locked_until <= $1)),
               count(*) FILTER (WHERE locked_until > $1),
               coalesce(extract(epoch FROM $1 - min(next_attempt_at) FILTER (WHERE next_attempt_at <= $1)), 0)::float8
          FROM communication_logs WHERE status = 'PENDING'
        """;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var started = time.GetTimestamp();
            // A failed sample (the database unreachable: its time is the connection timeout, not
            // the cost of counting) is retried after the plain interval.
            var cost = TimeSpan.Zero;
            try
            {
                metrics.Queue(await SampleAsync(stoppingToken), time.GetUtcNow());
                cost = time.GetElapsedTime(started);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                LogFailed(logger, ex);
            }
            try
            {
                await Task.Delay(NextWait(cost), time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>How long to wait after a sample that took <paramref name="elapsed"/>: 100 times the sample's cost, between the interval and <see cref="LongestWait"/>.</summary>
    internal static TimeSpan NextWait(TimeSpan elapsed)
    {
        var proportional = elapsed * CostFactor;
        return proportional < Interval ? Interval : proportional > LongestWait ? LongestWait : proportional;
    }

    public async Task<QueueSnapshot> SampleAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var serial = new NpgsqlCommand("SET LOCAL max_parallel_workers_per_gather = 0", connection, transaction))
        {
            await serial.ExecuteNonQueryAsync(cancellationToken);
        }
        QueueSnapshot snapshot;
        await using (var command = new NpgsqlCommand(Sql, connection, transaction))
        {
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow() });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            snapshot = new QueueSnapshot(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetDouble(3));
        }
        await transaction.CommitAsync(cancellationToken);
        return snapshot;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sampling the outbox backlog failed")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
