using Npgsql;
using NpgsqlTypes;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Minimises the provider reports stored before reports were minimised on arrival (5f1bd20), as
/// <see cref="WebhookPayloads.Minimise"/> does new ones: the payload loses the people in it, the
/// stored error its addresses and numbers, and an event key naming a number whole gets the keyed
/// hash (<see cref="WebhookEventKeys.Rehashed"/>). Otherwise they would keep them until
/// <c>Webhooks:RetentionDays</c> (90 by default) passed.
/// <para>
/// It walks <c>webhook_events</c> by id up to the last row stored when migration 0041 ran (for a
/// day after it, up to the last row stored now: an API of an older build may still be storing
/// reports whole during an upgrade), from a cursor row (<c>webhook_event_backfill</c>) locked for
/// each batch, so one worker walks and the others skip; at start and hourly until the walk is done.
/// A batch waits at most 2 s for a row lock and is tried again on a lock, deadlock or key conflict. Minimising a minimised report changes
/// nothing, so a row stored minimised and walked again is left as it was, not rewritten.
/// </para>
/// </summary>
internal sealed partial class WebhookEventBackfill(NpgsqlDataSource dataSource, WebhookEventKeys eventKeys, TimeProvider time, ILogger<WebhookEventBackfill> logger) : BackgroundService
{
    // Up to the last row stored when 0041 ran, or, until walk_until, the last row stored now.
    private const string LockSql = """
        SELECT CASE WHEN walk_until > $1 THEN greatest(upto_id, (SELECT coalesce(max(id), 0) FROM webhook_events)) ELSE upto_id END,
               done_id, walk_until > $1
          FROM webhook_event_backfill WHERE finished_at IS NULL FOR UPDATE SKIP LOCKED
        """;

    // Locked in id order (a provider report being applied, an erasure deleting the customer's, are
    // waited for, briefly: see lock_timeout).
    private const string ReadSql = "SELECT id, provider, event_key, payload, error FROM webhook_events WHERE id > $1 AND id <= $2 ORDER BY id LIMIT 500 FOR UPDATE";

    // A key now hashed as a redelivery of the same report was already stored under (it came after
    // keys were hashed): one of the two copies goes. The first stays, unless only the later one
    // matched a message (the first waited as unknown).
    private const string DropLaterCopiesSql = """
        DELETE FROM webhook_events o
         USING unnest($1::bigint[], $2::text[]) AS i(id, event_key), webhook_events w
         WHERE w.id = i.id AND w.event_key <> i.event_key
           AND o.company_id = w.company_id AND o.provider = w.provider AND o.event_key = i.event_key AND o.id <> w.id
           AND (o.outcome = 'UNKNOWN_MESSAGE' OR w.outcome <> 'UNKNOWN_MESSAGE')
        """;

    private const string DropFirstCopiesSql = """
        DELETE FROM webhook_events w
         USING unnest($1::bigint[], $2::text[]) AS i(id, event_key)
         WHERE w.id = i.id AND w.event_key <> i.event_key
           AND EXISTS (SELECT 1 FROM webhook_events o WHERE o.company_id = w.company_id AND o.provider = w.provider AND o.event_key = i.event_key AND o.id <> w.id)
        """;

    private const string UpdateSql = """
        UPDATE webhook_events w SET event_key = i.event_key, payload = i.payload, error = i.error
          FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS i(id, event_key, payload, error)
         WHERE w.id = i.id
        """;

    private const string AdvanceSql = "UPDATE webhook_event_backfill SET upto_id = $1, done_id = $2, finished_at = $3";

    // A lock held by a report being applied or an erasure, a deadlock with one, a key another
    // transaction is storing right now: the batch is tried again shortly.
    private static readonly HashSet<string> Transient = [PostgresErrorCodes.LockNotAvailable, PostgresErrorCodes.DeadlockDetected, PostgresErrorCodes.UniqueViolation, PostgresErrorCodes.SerializationFailure];

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        PeriodicTimers.EveryAsync(TimeSpan.FromHours(1), time, async cancellationToken =>
        {
            if (await RunAsync(cancellationToken) is > 0 and var changed)
            {
                LogMinimised(logger, changed);
            }
        }, ex => LogFailed(logger, ex), stoppingToken);

    /// <summary>Walks until the backfill is done (or another worker holds it); answers how many rows it rewrote.</summary>
    public async Task<long> RunAsync(CancellationToken cancellationToken)
    {
        long changed = 0;
        var failures = 0;
        while (true)
        {
            int? rewritten;
            try
            {
                rewritten = await BatchAsync(cancellationToken);
                failures = 0;
            }
            catch (PostgresException ex) when (Transient.Contains(ex.SqlState) && ++failures < 5)
            {
                await Task.Delay(TimeSpan.FromSeconds(failures), cancellationToken);
                continue;
            }
            if (rewritten is not { } count)
            {
                return changed;
            }
            changed += count;
            // A pause between batches: the worker's dispatch shares the host and the database.
            await Task.Delay(TimeSpan.FromMilliseconds(20), cancellationToken);
        }
    }

    /// <summary>One batch in one transaction; null once there is nothing left to walk, or another worker walks.</summary>
    private async Task<int?> BatchAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var timeout = new NpgsqlCommand("SET LOCAL lock_timeout = '2s'", connection, transaction))
        {
            await timeout.ExecuteNonQueryAsync(cancellationToken);
        }
        long upto, done;
        bool extending;
        var now = time.GetUtcNow();
        await using (var cursor = new NpgsqlCommand(LockSql, connection, transaction))
        {
            cursor.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
            await using var reader = await cursor.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken))
            {
                return null;
            }
            (upto, done, extending) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetBoolean(2));
        }

        var ids = new List<long>();
        var keys = new List<string>();
        var payloads = new List<string>();
        var errors = new List<string?>();
        long last = done;
        await using (var read = new NpgsqlCommand(ReadSql, connection, transaction))
        {
            read.Parameters.Add(new NpgsqlParameter<long> { TypedValue = done });
            read.Parameters.Add(new NpgsqlParameter<long> { TypedValue = upto });
            await using var reader = await read.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                last = reader.GetInt64(0);
                var (provider, key, payload) = (reader.GetString(1), reader.GetString(2), reader.GetString(3));
                var error = reader.IsDBNull(4) ? null : reader.GetString(4);
                var (newKey, newPayload, newError) = (eventKeys.Rehashed(provider, key), WebhookPayloads.Minimise(payload), LogRedaction.Contacts(error));
                if (newKey != key || newPayload != payload || newError != error)
                {
                    ids.Add(last);
                    keys.Add(newKey);
                    payloads.Add(newPayload);
                    errors.Add(newError);
                }
            }
        }

        if (ids.Count > 0)
        {
            await using var batch = new NpgsqlBatch(connection, transaction)
            {
                BatchCommands =
                {
                    new NpgsqlBatchCommand(DropLaterCopiesSql) { Parameters = { Array(ids), Array(keys) } },
                    new NpgsqlBatchCommand(DropFirstCopiesSql) { Parameters = { Array(ids), Array(keys) } },
                    new NpgsqlBatchCommand(UpdateSql) { Parameters = { Array(ids), Array(keys), Array(payloads), Array(errors) } },
                },
            };
            await batch.ExecuteNonQueryAsync(cancellationToken);
        }
        // Nothing left up to the end: done, unless rows stored meanwhile are still walked (walk_until).
        var caughtUp = last == done;
        var finished = caughtUp && !extending;
        await using (var advance = new NpgsqlCommand(AdvanceSql, connection, transaction))
        {
            advance.Parameters.Add(new NpgsqlParameter<long> { TypedValue = upto });
            advance.Parameters.Add(new NpgsqlParameter<long> { TypedValue = finished ? upto : last });
            advance.Parameters.Add(new NpgsqlParameter { Value = finished ? now.ToUniversalTime() : DBNull.Value, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            await advance.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        if (finished)
        {
            LogFinished(logger, upto);
        }
        return caughtUp ? null : ids.Count;
    }

    private static NpgsqlParameter Array<T>(List<T> values) => new NpgsqlParameter<T[]> { TypedValue = [.. values] };

    [LoggerMessage(Level = LogLevel.Information, Message = "Minimised {Count} provider reports stored before reports were minimised on arrival")]
    private static partial void LogMinimised(ILogger logger, long count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Every provider report stored before reports were minimised on arrival (up to id {UptoId}) is minimised")]
    private static partial void LogFinished(ILogger logger, long uptoId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Minimising provider reports stored before reports were minimised failed; will go on in an hour from where it stopped")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
