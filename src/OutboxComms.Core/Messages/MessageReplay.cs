using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using OutboxComms.Core.Data;

namespace OutboxComms.Core.Messages;

/// <summary>
/// Which finished-but-unsuccessful messages to send again. Every condition is optional except that
/// only FAILED, BOUNCED and SUPPRESSED rows are ever replayed (a delivered message is never resent),
/// and a replay by filter skips the messages of a resolved reminder.
/// </summary>
public sealed partial record ReplayFilter
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

    /// <summary>
    /// Case-insensitive substring of the error message, e.g. a provider's error code ("Twilio
    /// 30003"), or of a suppressed message's reason ("not opted in").
    /// </summary>
    public string? ErrorContains { get; init; }

    /// <summary>
    /// The start of a created-at range as an operator writes it: an ISO 8601 instant, or a plain
    /// date (2026-11-24), its midnight; without an offset, UTC. Nothing else: 11/12/2026 means
    /// different days to different readers.
    /// </summary>
    public static bool TryParseFrom(string? text, out DateTimeOffset from) => TryParseFrom(text, TimeZoneInfo.Utc, out from);

    /// <summary>As <see cref="TryParseFrom(string?, out DateTimeOffset)"/>, a plain date being that day's midnight in <paramref name="zone"/> (a practice's day).</summary>
    public static bool TryParseFrom(string? text, TimeZoneInfo zone, out DateTimeOffset from)
    {
        ArgumentNullException.ThrowIfNull(zone);
        if (IsPlainDate(text, out var day))
        {
            return TryInstant(day, zone, out from);
        }
        from = default;
        // An unencoded "+05:30" in a query string arrives as " 05:30" (the form encoding's space).
        text = text is null ? null : PlusAsSpace().Replace(text, "$1+$2");
        return text is not null && IsoDate().IsMatch(text)
            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out from);
    }

    /// <summary>A date without a time (2026-11-24): a whole day, whose bounds depend on the zone it is read in.</summary>
    public static bool IsPlainDate(string? text, out DateOnly day) =>
        DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out day);

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:?\d{2})?)?$", RegexOptions.CultureInvariant)]
    private static partial Regex IsoDate();

    [GeneratedRegex(@"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?) (\d{2}:?\d{2})$", RegexOptions.CultureInvariant)]
    private static partial Regex PlusAsSpace();

    /// <summary>
    /// The exclusive end of a created-at range as an operator means it: a plain date (2026-11-24)
    /// includes that whole day, ending at the next midnight, UTC; an instant is taken as given.
    /// </summary>
    public static bool TryParseTo(string? text, out DateTimeOffset to) => TryParseTo(text, TimeZoneInfo.Utc, out to);

    /// <summary>As <see cref="TryParseTo(string?, out DateTimeOffset)"/>, a plain date ending at the next midnight in <paramref name="zone"/>.</summary>
    public static bool TryParseTo(string? text, TimeZoneInfo zone, out DateTimeOffset to)
    {
        ArgumentNullException.ThrowIfNull(zone);
        if (IsPlainDate(text, out var day))
        {
            to = default;
            return day < DateOnly.MaxValue && TryInstant(day.AddDays(1), zone, out to);
        }
        return TryParseFrom(text, zone, out to);
    }

    /// <summary>The midnight starting <paramref name="day"/> in <paramref name="zone"/>; false at the calendar's ends (0001-01-01 in India is before the first instant .NET holds).</summary>
    private static bool TryInstant(DateOnly day, TimeZoneInfo zone, out DateTimeOffset instant)
    {
        try
        {
            instant = Policies.LocalTimes.ToInstant(day.ToDateTime(TimeOnly.MinValue), zone);
            return true;
        }
        catch (ArgumentOutOfRangeException)
        {
            instant = default;
            return false;
        }
    }
}

/// <summary>
/// Puts failed messages back in the outbox: PENDING, due now, with a fresh retry budget
/// (retry_count 0) and the error cleared. Attempts are kept and attempt_count keeps counting, and
/// each replay is recorded in <c>message_replays</c> (who, when, the status and error it had), so
/// the history of what happened before stays readable. Expired messages are never replayed: the
/// worker would only cancel them; nor are messages whose content was cleared (retention, erasure). The one place this SQL lives: the API's replay endpoints and the
/// worker's <c>replay</c> verb both call it.
/// </summary>
public sealed partial class MessageReplay(NpgsqlDataSource dataSource, TimeProvider time, ILogger<MessageReplay> logger)
{
    public static IReadOnlySet<DeliveryStatus> Replayable { get; } = new HashSet<DeliveryStatus> { DeliveryStatus.Failed, DeliveryStatus.Bounced, DeliveryStatus.Suppressed };

    // A replay by filter leaves out the messages of a reminder resolved since (the filing was made,
    // the invoice paid: "MGT-7 is overdue" must not go out again); naming one message replays it.
    // Parameters that are null drop their condition; the statement is planned with the actual
    // values, so `$1 IS NULL OR ...` costs nothing and the primary key (company_id, id) is used; an id
    // without a company is looked for under each company in turn, a probe of that key each (the
    // table has no index on id alone since migration 0048).
    private const string Where = """
        status IN ('FAILED', 'BOUNCED', 'SUPPRESSED')
           AND ($1::uuid IS NULL OR company_id = $1)
           AND ($2::bigint IS NULL OR id = $2)
           AND ($2::bigint IS NULL OR $1::uuid IS NOT NULL OR company_id = ANY (ARRAY(SELECT c.id FROM companies c)))
           AND ($3::text IS NULL OR status = $3)
           AND ($4::text IS NULL OR channel = $4)
           AND ($5::text IS NULL OR type = $5)
           AND ($6::timestamptz IS NULL OR created_at >= $6)
           AND ($7::timestamptz IS NULL OR created_at < $7)
           AND ($8::text IS NULL OR strpos(lower(coalesce(error_message, status_reason)), lower($8)) > 0)
           AND (expires_at IS NULL OR expires_at > $9)
           AND content_redacted_at IS NULL
           AND ($2::bigint IS NOT NULL OR NOT EXISTS (
                SELECT 1 FROM reminders r
                 WHERE metadata ? 'reminderStepId' AND metadata->>'reminderId' ~ '^[0-9]{1,18}$' AND r.id = (metadata->>'reminderId')::bigint
                   AND r.company_id = communication_logs.company_id AND r.status = 'RESOLVED'))
        """;

    private const string CountSql = "SELECT count(*) FROM communication_logs WHERE " + Where;

    // failed_at is cleared with the error (the message is no longer failed); sent_at and the
    // provider's ids stay until the new attempt overwrites them. The lease columns are cleared in
    // case a crashed worker left them behind. The rows are read (and locked) first, so that what
    // they were goes into message_replays: an UPDATE's RETURNING sees only the new values.
    private const string ReplaySql = """
        WITH was AS (
            SELECT company_id, id, status, coalesce(error_message, status_reason) AS error FROM communication_logs
             WHERE
        """ + "\n" + Where + "\n" + """
               FOR NO KEY UPDATE),
        replayed AS (
            UPDATE communication_logs m
               SET status = 'PENDING', retry_count = 0, outage_attempts = 0, replay_count = m.replay_count + 1, next_attempt_at = $9, updated_at = $9,
                   error_message = NULL, failed_at = NULL, locked_by = NULL, locked_until = NULL,
                   status_reason = 'replayed by ' || $10,
                   -- The earlier send's reports no longer move the row (a late "delivered" would
                   -- otherwise undo a resend's failure, which keeps the id it had): the resend
                   -- records its own id. The attempts keep each send's history.
                   provider_message_id = NULL,
                   -- A PREFERRED message never split goes to the customer's channel as it is now;
                   -- the rows of one that was split keep theirs. Only rows created since
                   -- migration 0022, which marks split rows: older ones keep theirs too.
                   channel = CASE WHEN m.requested_channel = 'PREFERRED' AND m.split_from IS NULL
                                       AND m.created_at >= (SELECT applied_at FROM schema_migrations WHERE version = 22)
                                  THEN 'PREFERRED' ELSE m.channel END
              FROM was WHERE m.company_id = was.company_id AND m.id = was.id
            RETURNING was.company_id, was.id, was.status, was.error)
        INSERT INTO message_replays (company_id, message_id, replayed_at, replayed_by, previous_status, previous_error)
        SELECT company_id, id, $9, $10, status, error FROM replayed
        """;

    /// <summary>How many messages a replay with this filter would put back (a dry run).</summary>
    public async Task<int> CountAsync(ReplayFilter filter, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(CountSql);
        AddFilter(command.Parameters, filter);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = time.GetUtcNow().ToUniversalTime() });
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
            update.Parameters.Add(new NpgsqlParameter<string> { TypedValue = actor });
            replayed = await update.ExecuteNonQueryAsync(cancellationToken);
        }
        if (replayed > 0)
        {
            await using var notify = new NpgsqlCommand("SELECT pg_notify('outbox_pending', '')", connection, transaction);
            await notify.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        // The filter's error text is an operator's, and may name a customer's address or number.
        Replayed(logger, replayed, actor, Observability.LogRedaction.Contacts(filter.ToString()) ?? "");
        return replayed;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Replayed {Count} messages for {Actor}: {Filter}")]
    private static partial void Replayed(ILogger logger, int count, string actor, string filter);

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
