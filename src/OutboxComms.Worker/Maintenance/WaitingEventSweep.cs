using Npgsql;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// A delivery event that arrived before its message's provider id was recorded is stored as for an
/// unknown message, and the batch that records the id applies it. Should that batch not get there
/// (its recording gave up on an unacknowledged commit, the process was killed just after), the
/// event would wait for ever and the message stay SENT though the provider said FAILED. Every
/// minute this applies such events whose message is now known, from the last hour — a batch records
/// its provider ids within its lease, minutes at most — (safe in every worker at once: each event is
/// applied under its own row lock, once; an event that matches a message it cannot move is looked
/// at again only within that hour).
/// </summary>
internal sealed partial class WaitingEventSweep(NpgsqlDataSource dataSource, DeliveryEventRecorder recorder, TimeProvider time, ILogger<WaitingEventSweep> logger) : BackgroundService
{
    /// <summary>Events younger than this are left to the batch that records their message.</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan Window = TimeSpan.FromHours(1);

    // The partial index of waiting events by arrival (0027), then one hash-index probe per event.
    private const string FindSql = """
        SELECT DISTINCT e.provider_message_id FROM webhook_events e
         WHERE e.outcome = 'UNKNOWN_MESSAGE' AND e.provider_message_id IS NOT NULL
           AND e.received_at >= $1 AND e.received_at < $2
           AND EXISTS (SELECT 1 FROM communication_logs m
                        WHERE m.provider_message_id = ANY (ARRAY[e.provider_message_id, '<' || e.provider_message_id || '>'])
                          AND m.company_id = e.company_id)
         ORDER BY e.provider_message_id
         LIMIT 1000
        """;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(1), time);
        while (await timer.TickAsync(stoppingToken))
        {
            try
            {
                if (await SweepOnceAsync(stoppingToken) is > 0 and var applied)
                {
                    LogApplied(logger, applied);
                }
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
    }

    /// <summary>Applies the waiting events whose message is now known; how many were applied.</summary>
    public async Task<int> SweepOnceAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var ids = new List<string>();
        await using (var find = dataSource.CreateCommand(FindSql))
        {
            find.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = (now - Window).ToUniversalTime() });
            find.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = (now - Settle).ToUniversalTime() });
            await using var reader = await find.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                ids.Add(reader.GetString(0));
            }
        }
        return await recorder.ApplyWaitingAsync(ids, cancellationToken);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied {Count} delivery events that had arrived before their message's provider id was recorded")]
    private static partial void LogApplied(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Applying waiting delivery events failed; will try again in a minute")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
