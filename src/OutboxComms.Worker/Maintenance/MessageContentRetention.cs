using Npgsql;
using OutboxComms.Core.Messages;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// Hourly, for each company that set a content retention (<c>PUT /v1/settings/retention</c>):
/// clears the personal content of its messages that settled more than that many days ago, as an
/// erasure does (<see cref="MessageRedaction"/>), and the bytes and links of their files. Each row
/// stays, with its status, times, provider, cost and idempotency key.
/// <para>
/// There is no index on <c>updated_at</c> (one would slow every status change), so the job walks
/// each company's messages by id from a cursor (<c>content_retention_cursors</c>), up to the first
/// one written within the retention. A message it passes that cannot be cleared yet (still pending,
/// or changed lately: a late read receipt, a replay) is noted in <c>content_retention_deferred</c>
/// and looked at again each hour until it can. A company's cursor row is locked while a batch runs,
/// so every worker may run this at once: one walks a company, the others skip it.
/// </para>
/// </summary>
internal sealed partial class MessageContentRetention(NpgsqlDataSource dataSource, TimeProvider time, ILogger<MessageContentRetention> logger) : BackgroundService
{
    private const int Batch = 1000;

    /// <summary>How often each company's walk starts again from its first message.</summary>
    internal static readonly TimeSpan RewalkEvery = TimeSpan.FromDays(7);

    // The company's cursor, locked (or null when another worker holds it); restarted at 0 when its walk began more than RewalkEvery ($2) ago.
    private const string LockCursorSql = """
        UPDATE content_retention_cursors c
           SET last_id = CASE WHEN c.walk_started_at < $2 THEN 0 ELSE c.last_id END,
               walk_started_at = CASE WHEN c.walk_started_at < $2 THEN $3 ELSE c.walk_started_at END
          FROM (SELECT company_id FROM content_retention_cursors WHERE company_id = $1 FOR UPDATE SKIP LOCKED) mine
         WHERE c.company_id = mine.company_id
        RETURNING c.last_id
        """;

    private const string CompaniesSql = "SELECT company_id, content_retention_days FROM company_settings WHERE content_retention_days IS NOT NULL ORDER BY company_id";

    // $1 company, $2 cursor, $3 cutoff (now less the retention), $4 now.
    private static readonly string WalkSql = $$"""
        WITH batch AS MATERIALIZED (
            SELECT id, created_at FROM communication_logs WHERE company_id = $1 AND id > $2 ORDER BY id LIMIT 1000),
        walked AS MATERIALIZED (
            SELECT id FROM batch
             -- A row dated in the future (a producer's typo) does not stop the walk for good.
             WHERE id < coalesce((SELECT min(id) FROM batch WHERE created_at >= $3 AND created_at <= $4), 9223372036854775807)),
        redacted AS (
        {{RedactSql("walked")}}
        ),
        deferred AS (
            INSERT INTO content_retention_deferred (company_id, message_id)
            SELECT $1, w.id FROM walked w JOIN communication_logs m ON m.company_id = $1 AND m.id = w.id
             WHERE m.content_redacted_at IS NULL AND w.id NOT IN (SELECT id FROM redacted)
            ON CONFLICT DO NOTHING),
        {{Related()}}
        SELECT (SELECT count(*) FROM batch)::int, (SELECT count(*) FROM walked)::int, (SELECT max(id) FROM walked), (SELECT count(*) FROM redacted)::int
        """;

    // $1 company, $2 the last deferred id looked at, $3 cutoff, $4 now. An entry goes once its
    // message is cleared, or gone.
    private static readonly string DeferredSql = $$"""
        WITH walked AS MATERIALIZED (
            SELECT message_id AS id FROM content_retention_deferred WHERE company_id = $1 AND message_id > $2 ORDER BY message_id LIMIT 1000),
        redacted AS (
        {{RedactSql("walked")}}
        ),
        done AS (
            DELETE FROM content_retention_deferred d
             WHERE d.company_id = $1 AND d.message_id IN (SELECT id FROM walked)
               AND (d.message_id IN (SELECT id FROM redacted)
                    OR NOT EXISTS (SELECT 1 FROM communication_logs m WHERE m.company_id = $1 AND m.id = d.message_id AND m.content_redacted_at IS NULL))),
        {{Related()}}
        SELECT (SELECT count(*) FROM walked)::int, (SELECT count(*) FROM walked)::int, (SELECT max(id) FROM walked), (SELECT count(*) FROM redacted)::int
        """;

    // Settled (a PENDING row is being sent, or waits for its time) and unchanged since the cutoff.
    // A row another transaction holds (a claim, a replay, a provider's report being applied) is
    // skipped rather than waited for, and so noted as deferred: this job never blocks the outbox,
    // and cannot deadlock with a replay that locks many rows. The lock re-reads the row, so one
    // made PENDING since the batch was read is left too.
    private static string RedactSql(string ids) => $"""
            UPDATE communication_logs m SET {MessageRedaction.ContentSet},
                   -- A reason may quote the client's address or number (a PREFERRED message's fallback).
                   status_reason = 'content cleared by the company''s retention'
             WHERE m.company_id = $1 AND m.id IN (
                   SELECT id FROM communication_logs
                    WHERE company_id = $1 AND id IN (SELECT id FROM {ids})
                      AND status <> 'PENDING' AND updated_at < $3 AND content_redacted_at IS NULL
                      FOR UPDATE SKIP LOCKED)
            RETURNING m.id
        """;

    // The files of the cleared messages lose their bytes and link, as attachment retention leaves them.
    // A method, not a field: the statements above are built from it when the class initialises.
    private static string Related() => MessageRedaction.RelatedRows("redacted") + """
        ,
        files AS (
            UPDATE communication_attachments f SET content = NULL, url = NULL, purged_at = $4
             WHERE f.message_id IN (SELECT id FROM redacted) AND f.purged_at IS NULL
               AND (f.company_id = $1 OR (f.company_id IS NULL
                    -- A file stored without its company matches by message id, unless another company has a message with that id.
                    AND NOT EXISTS (SELECT 1 FROM communication_logs o WHERE o.id = f.message_id AND o.company_id <> $1)))
            RETURNING 1)
        """;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        PeriodicTimers.EveryAsync(TimeSpan.FromHours(1), time, async cancellationToken =>
        {
            if (await RunAsync(cancellationToken) is > 0 and var redacted)
            {
                LogRedacted(logger, redacted);
            }
        }, ex => LogFailed(logger, ex), stoppingToken);

    /// <summary>One pass over every company with a retention; answers how many messages it cleared.</summary>
    public async Task<long> RunAsync(CancellationToken cancellationToken)
    {
        var companies = new List<(Guid Company, int Days)>();
        await using (var read = dataSource.CreateCommand(CompaniesSql))
        await using (var reader = await read.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                companies.Add((reader.GetGuid(0), reader.GetInt32(1)));
            }
        }
        long redacted = 0;
        foreach (var (company, days) in companies)
        {
            try
            {
                redacted += await RedactAsync(company, time.GetUtcNow().AddDays(-days), cancellationToken);
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                // One company's failure (a lock timeout, a company purged meanwhile) does not hold back the others.
                LogCompanyFailed(logger, ex, company);
            }
        }
        return redacted;
    }

    private async Task<long> RedactAsync(Guid company, DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        long redacted = 0;
        // The walk first, then the deferred messages (the walk may have added some), each in
        // batches of one transaction holding the company's cursor row.
        foreach (var deferred in new[] { false, true })
        {
            long position = 0;
            while (true)
            {
                await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
                await using (var cursor = new NpgsqlCommand("INSERT INTO content_retention_cursors (company_id) VALUES ($1) ON CONFLICT DO NOTHING", connection, transaction))
                {
                    cursor.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = company });
                    await cursor.ExecuteNonQueryAsync(cancellationToken);
                }
                long? lastId;
                // A week after a walk started from the first message, the next one does again: a row
                // committed after the walk passed its id (a long transaction's) is found that way.
                await using (var lockCursor = new NpgsqlCommand(LockCursorSql, connection, transaction))
                {
                    lockCursor.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = company });
                    lockCursor.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow().ToUniversalTime() - RewalkEvery });
                    lockCursor.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow().ToUniversalTime() });
                    lastId = (long?)await lockCursor.ExecuteScalarAsync(cancellationToken);
                }
                if (lastId is null)
                {
                    return redacted;   // another worker is on this company
                }
                var step = await StepAsync(connection, transaction, deferred ? DeferredSql : WalkSql, company, deferred ? position : lastId.Value, cutoff, cancellationToken);
                redacted += step.Redacted;
                if (!deferred && step.Walked > 0)
                {
                    await using var advance = new NpgsqlCommand("UPDATE content_retention_cursors SET last_id = $2, updated_at = $3 WHERE company_id = $1", connection, transaction);
                    advance.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = company });
                    advance.Parameters.Add(new NpgsqlParameter<long> { TypedValue = step.LastWalked!.Value });
                    advance.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow().ToUniversalTime() });
                    await advance.ExecuteNonQueryAsync(cancellationToken);
                }
                await transaction.CommitAsync(cancellationToken);
                // The walk ends at the first message written within the retention, or the last one.
                var more = deferred ? step.Read == Batch : step.Read == Batch && step.Walked == step.Read;
                if (!more)
                {
                    break;
                }
                position = step.LastWalked ?? position;
            }
        }
        return redacted;
    }

    private async Task<(int Read, int Walked, long? LastWalked, int Redacted)> StepAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, Guid company, long from, DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction)
        {
            Parameters =
            {
                new NpgsqlParameter<Guid> { TypedValue = company },
                new NpgsqlParameter<long> { TypedValue = from },
                new NpgsqlParameter<DateTimeOffset> { TypedValue = cutoff.ToUniversalTime() },
                new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow().ToUniversalTime() },
            },
        };
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt32(0), reader.GetInt32(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.GetInt32(3));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Cleared the content of {Count} messages past their company's content retention")]
    private static partial void LogRedacted(ILogger logger, long count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Clearing the content of company {CompanyId}'s messages past their retention failed; the other companies go on, and it is tried again in an hour")]
    private static partial void LogCompanyFailed(ILogger logger, Exception exception, Guid companyId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Clearing message content past its retention failed; will try again in an hour")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
