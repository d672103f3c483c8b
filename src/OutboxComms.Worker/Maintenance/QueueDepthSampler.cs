using Npgsql;
using OutboxComms.Core.Observability;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Samples the backlog every 15 s for the queue gauges (one query on the partial index of PENDING
/// rows), so scraping metrics never costs a database round trip.
/// </summary>
internal sealed partial class QueueDepthSampler(NpgsqlDataSource dataSource, OutboxMetrics metrics, TimeProvider time, ILogger<QueueDepthSampler> logger) : BackgroundService
{
    private const string Sql = """
        SELECT count(*) FILTER (WHERE next_attempt_at <= $1),
               count(*) FILTER (WHERE next_attempt_at > $1 AND (locked_until IS NULL OR locked_until <= $1)),
               count(*) FILTER (WHERE locked_until > $1),
               coalesce(extract(epoch FROM $1 - min(next_attempt_at) FILTER (WHERE next_attempt_at <= $1)), 0)::float8
          FROM communication_logs WHERE status = 'PENDING'
        """;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(15), time);
        do
        {
            try
            {
                metrics.Queue(await SampleAsync(stoppingToken));
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                LogFailed(logger, ex);
            }
        }
        while (await TickAsync(timer, stoppingToken));
    }

    public async Task<QueueSnapshot> SampleAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(Sql);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow() });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new QueueSnapshot(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetDouble(3));
    }

    private static async Task<bool> TickAsync(PeriodicTimer timer, CancellationToken cancellationToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sampling the outbox backlog failed")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
