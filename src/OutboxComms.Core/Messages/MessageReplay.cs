using Npgsql;
using NpgsqlTypes;
using OutboxComms.Core.Data;

namespace OutboxComms.Core.Messages;

/// <summary>
/// Which finished-but-unsuccessful messages to send again. Every condition is optional except that
/// only FAILED, BOUNCED and SUPPRESSED rows are ever replayed (a delivered message is never resent),
/// and a replay by filter skips the messages of a resolved reminder.
/// </summary>
public sealed record ReplayFilter
{
    /// <summary>The company whose messages are replayed. The API always sets it; null (every company) is for ops tools only.</summary>
    public Guid? CompanyId { get; init; }

    public long? MessageId { get; init; }

    /// <summary>One of <see cref="MessageReplay.Replayable"/>; null means any of them.</summary>
    public DeliveryStatus? Status { get; init; }

    public Channel? Channel { get; init; }

    public MessageType? Type { get; init; }

    /// <summary>Inclusive.</summary>
    public DateTimeOffset? CreatedFrom { get; init; }

    /// <summary>Exclusive.</summary>
    public DateTimeOffset? CreatedTo { get; init; }

    /// <summary>Case-insensitive substring of the error message, e.g. a provider's error code ("Twilio 30003").</summary>
    public string? ErrorContains { get; init; }
}

/// <summary>
/// Puts failed messages back in the outbox: PENDING, due now, with a fresh retry budget
/// (retry_count 0) and the error cleared. Attempts are kept and attempt_count keeps counting, so
/// the history of what happened before stays readable. The one place this SQL lives: the API's
/// replay endpoints and the worker's <c>replay</c> verb both call it.
/// </summary>
public sealed class MessageReplay(NpgsqlDataSource dataSource, TimeProvider time)
{
    public static IReadOnlySet<DeliveryStatus> Replayable { get; } = new HashSet<DeliveryStatus> { DeliveryStatus.Failed, DeliveryStatus.Bounced, DeliveryStatus.Suppressed };

    // A replay by filter leaves out the messages of a reminder resolved since (the filing was made,
    // the invoice paid: "MGT-7 is overdue" must not go out again); naming one message replays it.
    // Parameters that are null drop their condition; the statement is planned with the actual
    // values, so `$1 IS NULL OR ...` costs nothing and the primary key (company_id, id) is used; an id
    // without a company reads the block ranges the BRIN index on id names (migration 0011).
    private const string Where = """
        status IN ('FAILED', 'BOUNCED', 'SUPPRESSED')
           AND ($1::uuid IS NULL OR company_id = $1)
           AND ($2::bigint IS NULL OR id = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::text IS NULL OR channel = $4)
           AND ($5::text IS NULL OR type = $5)
           AND ($6::timestamptz IS NULL OR created_at >= $6)
           AND ($7::timestamptz IS NULL OR created_at < $7)
           AND ($8::text IS NULL OR strpos(lower(error_message), lower($8)) > 0)
           AND ($2::bigint IS NOT NULL OR NOT EXISTS (
                SELECT 1 FROM reminders r
                 WHERE metadata->>'reminderId' ~ '^[0-9]{1,18}$' AND r.id = (metadata->>'reminderId')::bigint
                   AND r.company_id = communication_logs.company_id AND r.status = 'RESOLVED'))
        """;

    private const string CountSql = "SELECT count(*) FROM communication_logs WHERE " + Where;

    // failed_at is cleared with the error (the message is no longer failed); sent_at and the
    // provider's ids stay until the new attempt overwrites them. The lease columns are cleared in
    // case a crashed worker left them behind.
    private const string ReplaySql = """
        UPDATE communication_logs
           SET status = 'PENDING', retry_count = 0, outage_attempts = 0, next_attempt_at = $9, updated_at = $9,
               error_message = NULL, failed_at = NULL, locked_by = NULL, locked_until = NULL,
               status_reason = $10
        """ + "\n WHERE " + Where;

    /// <summary>How many messages a replay with this filter would put back (a dry run).</summary>
    public async Task<int> CountAsync(ReplayFilter filter, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(CountSql);
        AddFilter(command.Parameters, filter);
        return (int)(long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Replays the matching messages in one UPDATE and wakes the workers (NOTIFY outbox_pending) in
    /// the same transaction, so they see the rows the moment they are committed. Returns how many.
    /// </summary>
    public async Task<int> ReplayAsync(ReplayFilter filter, string actor, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(actor);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        int replayed;
        await using (var update = new NpgsqlCommand(ReplaySql, connection, transaction))
        {
            AddFilter(update.Parameters, filter);
            update.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow().ToUniversalTime() });
            update.Parameters.Add(new NpgsqlParameter<string> { TypedValue = $"replayed by {actor}" });
            replayed = await update.ExecuteNonQueryAsync(cancellationToken);
        }
        if (replayed > 0)
        {
            await using var notify = new NpgsqlCommand("SELECT pg_notify('outbox_pending', '')", connection, transaction);
            await notify.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return replayed;
    }

    private static void AddFilter(NpgsqlParameterCollection parameters, ReplayFilter filter)
    {
        ArgumentNullException.ThrowIfNull(filter);
        if (filter.Status is { } status && !Replayable.Contains(status))
        {
            throw new ArgumentException($"Only FAILED, BOUNCED and SUPPRESSED messages can be replayed, not {WireName<DeliveryStatus>.Of(status)}.", nameof(filter));
        }
        parameters.Add(Nullable(filter.CompanyId, NpgsqlDbType.Uuid));
        parameters.Add(Nullable(filter.MessageId, NpgsqlDbType.Bigint));
        parameters.Add(Nullable(filter.Status is { } s ? WireName<DeliveryStatus>.Of(s) : null, NpgsqlDbType.Text));
        parameters.Add(Nullable(filter.Channel is { } c ? WireName<Channel>.Of(c) : null, NpgsqlDbType.Text));
        parameters.Add(Nullable(filter.Type is { } t ? WireName<MessageType>.Of(t) : null, NpgsqlDbType.Text));
        parameters.Add(Nullable(filter.CreatedFrom?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        parameters.Add(Nullable(filter.CreatedTo?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        parameters.Add(Nullable(string.IsNullOrEmpty(filter.ErrorContains) ? null : filter.ErrorContains, NpgsqlDbType.Text));
    }

    private static NpgsqlParameter Nullable(object? value, NpgsqlDbType type) => new() { NpgsqlDbType = type, Value = value ?? DBNull.Value };
}
