using Npgsql;
using NpgsqlTypes;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Providers;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// A due row as the claim returns it; then (<see cref="OutboxStore.WithRecipientsAsync"/>) with
/// what its policies need of its customer (null when no such customer exists in the row's company).
/// </summary>
internal sealed record ClaimedMessage(
    long Id,
    Guid CompanyId,
    Guid? CustomerId,
    string? CustomerExternalId,
    MessageType Type,
    Channel Channel,
    Channel? RequestedChannel,
    string? Subject,
    string? Content,
    string? TemplateKey,
    string TemplateData,
    int RetryCount,
    int MaxRetries,
    int AttemptCount,
    DateTimeOffset? ExpiresAt,
    DateTimeOffset CreatedAt,
    int OutageAttempts = 0)
{
    public Customer? Customer { get; init; }

    /// <summary>The row has attachments (loaded separately, for these rows only).</summary>
    public bool HasAttachments { get; init; }

    /// <summary>A row of a BOTH split: the original's id (migration 0022), on the original too.</summary>
    public long? SplitFrom { get; init; }

    /// <summary>How many times an operator replayed the message (migration 0024).</summary>
    public int ReplayCount { get; init; }

    /// <summary>A reminder sequence's step produced it (<c>metadata.reminderStepId</c>): its expiry is the step's deadline.</summary>
    public bool IsReminderStep { get; init; }

    /// <summary>For reminders: when the customer last received one of this type.</summary>
    public DateTimeOffset? LastReminderSentAt { get; init; }

    /// <summary>For reminders: when the message behind <see cref="LastReminderSentAt"/> was created (its BOTH twins share it).</summary>
    public DateTimeOffset? LastReminderCreatedAt { get; init; }

    /// <summary>For reminders: the pair id (<see cref="ReminderPairId"/>) of the message behind <see cref="LastReminderSentAt"/>; null when recorded before migration 0025.</summary>
    public long? LastReminderPairId { get; init; }

    /// <summary>
    /// What the frequency policy remembers of this row's send: the pair it belongs to (split_from,
    /// which the worker's split and the API's BOTH pairs set), or its own id. An original being split
    /// now gets its own id as split_from in the same transaction.
    /// </summary>
    public long ReminderPairId => SplitFrom ?? Id;

    /// <summary>
    /// The twin of the reminder created at <paramref name="createdAt"/> with pair id
    /// <paramref name="pairId"/>: both rows of one BOTH request. Rows of one transaction share
    /// created_at, so the pair ids must match too; a row or record from before migration 0025
    /// (no pair id) is matched by created_at alone.
    /// </summary>
    public bool IsTwinOf(DateTimeOffset? createdAt, long? pairId) =>
        IsBothRowCreatedAt(createdAt) && (SplitFrom is null || pairId is null || SplitFrom == pairId);

    /// <summary>
    /// The reminder recorded is this very message: an earlier send of it that a provider's report
    /// then failed for a passing reason (sent again by the report's recorder), or that an operator
    /// replayed. It was not a reminder that reached the customer, so it must not hold this send to
    /// the next period (a reminder ahead of it in the batch, or held by another process, still does).
    /// </summary>
    public bool IsItself(DateTimeOffset? createdAt, long? pairId) => pairId == ReminderPairId && createdAt == CreatedAt;

    /// <summary>
    /// A row of a request on BOTH channels created at <paramref name="createdAt"/>: its twins (the
    /// API's pair, or the worker's split, which keeps the original's created_at) share it, and the
    /// frequency policy counts the pair as one reminder. A split row counts whatever its requested
    /// channel: the original of a PREFERRED request the customer's preference made BOTH keeps
    /// PREFERRED, and its email may be retried after its WhatsApp sibling went out.
    /// </summary>
    public bool IsBothRowCreatedAt(DateTimeOffset? createdAt) => (RequestedChannel == Channel.Both || SplitFrom is not null) && createdAt == CreatedAt;
}

/// <summary>A message's stored attachment bytes are larger together than a message may carry: it fails unsent, nothing loaded.</summary>
internal sealed class StoredAttachmentsTooLargeException(string message) : Exception(message);

/// <summary>What one message's processing decided, written back with the rest of its batch in one transaction.</summary>
internal sealed record Completion(long Id, Guid CompanyId, DeliveryStatus Status, Channel Channel)
{
    public DateTimeOffset NextAttemptAt { get; init; }
    public int RetryCount { get; init; }
    public int AttemptCount { get; init; }
    public Channel? RequestedChannel { get; init; }
    public string? StatusReason { get; init; }
    public string? ErrorMessage { get; init; }
    public string? Subject { get; init; }
    public string? Content { get; init; }
    public string? TemplateUsed { get; init; }
    public string? ProviderName { get; init; }
    public string? ProviderMessageId { get; init; }
    public DateTimeOffset? SentAt { get; init; }
    public DateTimeOffset? FailedAt { get; init; }
    public decimal? Cost { get; init; }
    public string? CostCurrency { get; init; }
    /// <summary>
    /// The customer a row naming its customer by external id only resolved to: written into the
    /// row's customer_id, so its retries, its history and an erasure follow that customer even when
    /// the business app's code later moves to another.
    /// </summary>
    public Guid? CustomerId { get; init; }
    /// <summary>A provider call happened; recorded in the attempt history.</summary>
    public AttemptRecord? Attempt { get; init; }
    /// <summary>BOTH was resolved: this row took the first channel, these need rows of their own.</summary>
    public IReadOnlyList<Channel> SplitInto { get; init; } = [];
    /// <summary>A reminder went out: remember when, for the frequency policy.</summary>
    public (Guid CustomerId, MessageType Type)? ReminderSent { get; init; }
    /// <summary>With <see cref="ReminderSent"/>: when the message was created (its BOTH twins share it).</summary>
    public DateTimeOffset? ReminderCreatedAt { get; init; }
    /// <summary>With <see cref="ReminderSent"/>: the message's <see cref="ClaimedMessage.ReminderPairId"/>.</summary>
    public long? ReminderPairId { get; init; }
    /// <summary>The provider said the recipient opted out of the channel: withdraw their opt-in.</summary>
    public bool RecipientOptedOut { get; init; }
    /// <summary>The provider said the recipient stopped marketing messages on the channel: stop general updates there.</summary>
    public bool MarketingStopped { get; init; }
    /// <summary>Set when this attempt was one of an outage's (it then uses up no retry); null keeps the row's count.</summary>
    public int? OutageAttempts { get; init; }
}

internal sealed record AttemptRecord(Guid CompanyId, int AttemptNo, DateTimeOffset AttemptedAt, Channel Channel, string? ProviderName, AttemptOutcome Outcome, string? Error, int LatencyMs)
{
    /// <summary>What this send cost, when it was sent (the message's cost is the sum over its sends).</summary>
    public decimal? Cost { get; init; }
    public string? CostCurrency { get; init; }
}

/// <summary>
/// The dispatcher's SQL, kept in one place and written against Npgsql directly: these statements
/// run once per batch on the hot path, where EF's change tracking would cost a round trip per row.
/// </summary>
internal sealed class OutboxStore(NpgsqlDataSource dataSource)
{
    // Claim: one round trip per batch. SKIP LOCKED lets any number of workers claim disjoint rows.
    // A text larger than MaxTextBytes (a SQL producer's; the API allows a tenth of it) is not
    // returned: 500 rows of hundreds of megabytes would exhaust the worker's memory before any of
    // them could be failed, and the batch would come back after every lease. Such a row fails with
    // its size. octet_length of a text reads its header, not its bytes; template data is measured
    // as text only when it takes more than 4 kB stored (compressed no more than 256 to 1, smaller
    // is under the limit), so a usual row pays one header read per column.
    // Moving next_attempt_at to the lease end takes claimed rows out of the due range (the partial
    // index), so other workers never rescan them; if this worker dies they become due again.
    // Rows come back in claim order (longest due first), which the one-reminder-per-batch rule uses.
    // The locked rows are updated by their tuple ids (`ctid = ANY(ARRAY(…))`, a TID scan: no other
    // plan can serve it), not through a join or by id: statistics that call the table empty (an
    // autoanalyze that ran while a big import was still uncommitted) made the planner scan the whole
    // table by an index and re-run the locking subquery for every row it found — over 30 s for one
    // claim from 20,000 rows, and minute-long slow phases in the benchmark until the next
    // autoanalyze — and `id = ANY(…)` then became a full scan of the (company_id, id) index, whose second
    // column is id. The ctids are those of the row versions this statement locked (FOR UPDATE
    // returns the latest version), which no one else can change before the update.
    // Internal so the benchmark can print this exact statement's plan.
    internal const string ClaimSql = """
        WITH due AS MATERIALIZED (
            SELECT ctid, id, next_attempt_at FROM communication_logs
             WHERE status = 'PENDING' AND next_attempt_at <= $3
             ORDER BY next_attempt_at, id
             LIMIT $4
             FOR UPDATE SKIP LOCKED),
        claimed AS (
            UPDATE communication_logs m
               SET locked_by = $1, locked_until = $2, next_attempt_at = $2
             WHERE m.ctid = ANY (ARRAY(SELECT ctid FROM due))
            RETURNING m.id, m.company_id, m.customer_id, m.customer_external_id, m.type, m.channel, m.requested_channel,
                      CASE WHEN octet_length(m.subject) <= 1048576 THEN m.subject END,
                      CASE WHEN octet_length(m.content) <= 1048576 THEN m.content END,
                      m.template_key,
                      CASE WHEN pg_column_size(m.template_data) <= 4096 OR octet_length(m.template_data::text) <= 1048576 THEN m.template_data::text ELSE '{}' END,
                      m.retry_count, m.max_retries,
                      m.attempt_count, m.expires_at, m.created_at, m.outage_attempts, m.split_from, m.replay_count,
                      coalesce(m.metadata ? 'reminderStepId', false),
                      CASE WHEN octet_length(m.content) > 1048576 THEN 'content is ' || octet_length(m.content)
                           WHEN octet_length(m.subject) > 1048576 THEN 'subject is ' || octet_length(m.subject)
                           WHEN pg_column_size(m.template_data) > 4096 AND octet_length(m.template_data::text) > 1048576
                           THEN 'template_data is ' || octet_length(m.template_data::text) END)
        SELECT claimed.* FROM claimed JOIN due USING (id) ORDER BY due.next_attempt_at, claimed.id
        """;

    // Runs before the claim, in the same implicit transaction (one batch, one round trip): the claim
    // is planned as the ordered range scan of the due index it was designed for, whatever the
    // statistics say. Planned freely with few rows due (a
    // steady trickle rather than a backlog), it becomes a bitmap scan of the due index plus a sort,
    // and a bitmap scan never marks the index entries it finds dead: the entries that claimed and
    // completed rows leave in the due range pile up until vacuum, and every claim re-reads all of
    // them and their heap pages (measured: 101,601 entries and 5,597 heap pages read for 65 due
    // rows, 30 ms per claim, after 40 s at 3,000 msg/s). On a table of some tens of thousands of
    // rows it becomes sequential scans of the whole table instead, for every claim. The ordered
    // index scan stops at the LIMIT and marks the entries of rows no snapshot can see any more, so
    // the next claims skip them without visiting the heap.
    // Internal so the benchmark prints the plan the claim really gets.
    internal const string OrderedScanSql = "SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)";

    // What the policies need of each claimed row's recipient, in one round trip: the customer and
    // their preferences (null when no such customer exists in the row's company), whether the row
    // has attachments and, for reminders, when the last one of its type went out. LATERAL … LIMIT 1
    // keeps each a primary-key or unique-index probe per row: the planner cannot flatten them into
    // hash joins over whole tables, whatever plan the generic prepared statement gets.
    private const string RecipientsSql = """
        SELECT c.id, a.message_id IS NOT NULL,
               k.id, k.external_id, k.name, k.email, k.phone, k.whatsapp_number, k.preferred_language, k.time_zone,
               k.deleted_at, k.created_at, k.updated_at,
               k.preference_id, k.email_opt_in, k.whatsapp_opt_in, k.sms_opt_in, k.invoice_delivery_channel,
               k.compliance_reminder_channel, k.payment_reminder_channel, k.general_updates_channel,
               k.reminder_frequency, k.reminder_cron, k.general_updates_opt_out, k.quiet_hours_start,
               k.quiet_hours_end, k.preference_updated_at,
               r.last_sent_at, r.last_created_at, r.last_pair_id,
               nullif(k.general_updates_opt_out_channels, '{}')
          FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::text[], $5::text[]) AS c(id, company_id, customer_id, customer_external_id, type)
          LEFT JOIN LATERAL (
                SELECT cu.id, cu.external_id, cu.name, cu.email, cu.phone, cu.whatsapp_number, cu.preferred_language,
                       cu.time_zone, cu.deleted_at, cu.created_at, cu.updated_at,
                       p.id AS preference_id, p.email_opt_in, p.whatsapp_opt_in, p.sms_opt_in, p.invoice_delivery_channel,
                       p.compliance_reminder_channel, p.payment_reminder_channel, p.general_updates_channel,
                       p.reminder_frequency, p.reminder_cron, p.general_updates_opt_out, p.quiet_hours_start,
                       p.quiet_hours_end, p.updated_at AS preference_updated_at, p.general_updates_opt_out_channels
                  FROM customers cu
                  LEFT JOIN communication_preferences p ON p.customer_id = cu.id
                 WHERE cu.company_id = c.company_id
                   AND cu.id = coalesce(c.customer_id,
                                        (SELECT x.id FROM customers x
                                          WHERE x.company_id = c.company_id AND x.external_id = c.customer_external_id))
                 LIMIT 1) k ON true
          LEFT JOIN LATERAL (
                SELECT s.last_sent_at, s.last_created_at, s.last_pair_id FROM reminder_frequency_state s
                 WHERE c.type IN ('COMPLIANCE_REMINDER', 'PAYMENT_REMINDER') AND s.customer_id = k.id AND s.type = c.type
                 LIMIT 1) r ON true
          LEFT JOIN LATERAL (SELECT a.message_id FROM communication_attachments a
                              WHERE a.message_id = c.id AND (a.company_id IS NULL OR a.company_id = c.company_id) LIMIT 1) a ON true
        """;

    // The batch's own rows (`b`, the caller's unnest of the batch), locked, with their current tuple
    // ids: one probe per row by company and id, the primary key (migration 0011), guarded by
    // the lease so that a worker whose lease expired (and whose rows another worker took) cannot
    // overwrite the newer outcome; the API's cancel (allowed once a lease ran out) clears the lease
    // too. No status condition here: with statistics taken when every row was SENT (a drained
    // outbox), `status = 'PENDING' AND id = …` was served by the partial due index, whose second
    // column is id — a scan of the whole index per row (431 µs of PostgreSQL per message in the
    // benchmark's warm drain, against 60), and as a condition on the updated row it made the release
    // a scan of the due index instead of its tuple-id scan. As a LATERAL subquery each stays a probe whatever the statistics
    // say. Joined to the table by id, statistics that call the table empty (an autoanalyze while a
    // big import was uncommitted) planned a full scan of the then key on id per batch (200 ms per
    // batch of 500 at 1M rows, against 9 ms now), and a probe by id alone a full scan of the
    // (company_id, id) index (id is its second column) per row. The statement then reaches the versions it locked by tuple
    // id (see RepeatForSkippedRowsAsync for a version newer than its snapshot). With good
    // statistics it costs what the join by id did (8.9–12.3 against 10.3–10.8 ms per batch of 500).
    private const string LeasedRowSql = """
        SELECT ctid AS tid FROM communication_logs
         WHERE company_id = b.company_id AND id = b.id AND locked_by = $2
           FOR NO KEY UPDATE
        """;

    // Complete: one statement for the whole batch, applied to the rows LeasedRowSql finds.
    private const string CompleteSql = $"""
        UPDATE communication_logs m SET
               status = b.status, channel = b.channel,
               requested_channel = coalesce(b.requested_channel, m.requested_channel),
               next_attempt_at = b.next_attempt_at, retry_count = b.retry_count, attempt_count = b.attempt_count,
               outage_attempts = coalesce(b.outage_attempts, m.outage_attempts),
               status_reason = b.status_reason, error_message = b.error_message,
               subject = coalesce(b.subject, m.subject), content = coalesce(b.content, m.content),
               template_used = coalesce(b.template_used, m.template_used),
               provider_name = coalesce(b.provider_name, m.provider_name),
               provider_message_id = coalesce(b.provider_message_id, m.provider_message_id),
               sent_at = coalesce(b.sent_at, m.sent_at), failed_at = coalesce(b.failed_at, m.failed_at),
               -- What the message cost in all: a replay's send adds to the first send's (in the same
               -- currency; a price in another currency replaces it, since the two cannot be summed).
               cost = CASE WHEN b.cost IS NULL THEN m.cost
                           WHEN m.cost IS NULL OR m.cost_currency IS DISTINCT FROM b.cost_currency THEN b.cost
                           ELSE m.cost + b.cost END,
               cost_currency = coalesce(b.cost_currency, m.cost_currency),
               customer_id = coalesce(m.customer_id, b.customer_id),
               locked_by = NULL, locked_until = NULL, updated_at = $1
          FROM unnest($3::bigint[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::int[], $10::int[],
                      $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                      $18::timestamptz[], $19::timestamptz[], $20::numeric[], $21::text[], $22::int[], $23::uuid[])
               AS b(id, company_id, status, channel, requested_channel, next_attempt_at, retry_count, attempt_count,
                    status_reason, error_message, subject, content, template_used, provider_name, provider_message_id,
                    sent_at, failed_at, cost, cost_currency, outage_attempts, customer_id)
         CROSS JOIN LATERAL ({LeasedRowSql}) l
         WHERE m.ctid = l.tid
        """;

    private const string AttemptsSql = """
        INSERT INTO communication_attempts (message_id, company_id, attempt_no, attempted_at, channel, provider_name, outcome, error_message,
                                            provider_latency_ms, cost, cost_currency)
        SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[],
                             $9::int[], $10::numeric[], $11::text[])
                   AS b(message_id, company_id, attempt_no, attempted_at, channel, provider_name, outcome, error_message,
                        provider_latency_ms, cost, cost_currency)
        """;

    // When a batch's commit may have landed unacknowledged (a failover), the worker writes the same
    // outcomes again: the outcome then changes nothing (the lease is gone), and the attempts already
    // recorded, the same number at the same instant, are not inserted twice. One probe of the
    // primary key (message_id, attempt_no, id) per attempt, so only on such a write: on every write
    // it made the statement four times slower (3.6 → 16.9 ms per batch of 500). A row whose lease
    // this batch lost is still recorded: the provider call happened.
    private const string AttemptsOnceSql = $"""
        {AttemptsSql}
         WHERE NOT EXISTS (SELECT 1 FROM communication_attempts a
                            WHERE a.message_id = b.message_id AND a.attempt_no = b.attempt_no AND a.attempted_at = b.attempted_at)
        """;

    // The reminder times (last_sent_at is null while a customer's first reminder is only held; a
    // row given without a time, a hold not sent, keeps its times), and the batch's hold on the row
    // given back in the same write when the batch held it ($6, its lease token; null for an
    // outcome recorded alone, whose hold runs out with the lease).
    private const string RemindersSql = """
        INSERT INTO reminder_frequency_state AS s (customer_id, type, last_sent_at, last_created_at, last_pair_id)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[])
        ON CONFLICT (customer_id, type) DO UPDATE
           SET last_sent_at = greatest(s.last_sent_at, excluded.last_sent_at),
               last_created_at = CASE WHEN excluded.last_sent_at >= coalesce(s.last_sent_at, '-infinity') THEN excluded.last_created_at ELSE s.last_created_at END,
               last_pair_id = CASE WHEN excluded.last_sent_at >= coalesce(s.last_sent_at, '-infinity') THEN excluded.last_pair_id ELSE s.last_pair_id END,
               held_until = CASE WHEN s.held_by = $6 THEN '-infinity' ELSE s.held_until END
        """;

    // BOTH: a sibling row per extra channel, with copies of the attachments (a file retention
    // cleared stays cleared, and fails the sibling with that reason); due at once, created
    // when its original was (one request: the frequency policy counts the pair once). Only while
    // the row is still this batch's (locked, so no one can take it before the outcome below is
    // written): a batch whose lease ran out and whose row another worker took must not split it
    // a second time. Runs before the outcome, which clears the lease. Both rows are marked with the
    // original's id (split_from, migration 0022), which a replay reads.
    private const string SplitSql = """
        WITH mine AS (
            UPDATE communication_logs SET split_from = id
             WHERE company_id = $5 AND id = $1 AND locked_by = $4
            RETURNING *),
        sibling AS (
            INSERT INTO communication_logs (company_id, customer_id, customer_external_id, type, channel, requested_channel,
                                            subject, content, template_key, template_data, max_retries, metadata, expires_at, next_attempt_at, created_at, split_from)
            SELECT company_id, customer_id, customer_external_id, type, $2, coalesce(requested_channel, 'BOTH'),
                   subject, content, template_key, template_data, max_retries, metadata, expires_at, $3, created_at, split_from
              FROM mine
            RETURNING id)
        INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content, url, size_bytes, purged_at)
        SELECT $5, sibling.id, a.file_name, a.content_type, a.content, a.url, a.size_bytes, a.purged_at
          FROM sibling JOIN communication_attachments a ON a.message_id = $1 AND (a.company_id IS NULL OR a.company_id = $5)
        """;

    private const string ReleaseSql = $"""
        UPDATE communication_logs SET locked_by = NULL, locked_until = NULL, next_attempt_at = $1, updated_at = $1
         WHERE ctid = ANY (ARRAY(SELECT l.tid FROM unnest($3::bigint[], $4::uuid[]) AS b(id, company_id)
                                  CROSS JOIN LATERAL ({LeasedRowSql}) l))
        """;

    public async Task<List<ClaimedMessage>> ClaimAsync(string leaseToken, int limit, DateTimeOffset now, TimeSpan lease, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(new NpgsqlBatchCommand(OrderedScanSql));
        var claim = new NpgsqlBatchCommand(ClaimSql);
        claim.Parameters.Add(new NpgsqlParameter<string> { TypedValue = leaseToken });
        claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = (now + lease).ToUniversalTime() });
        claim.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
        claim.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        batch.BatchCommands.Add(claim);
        var claimed = new List<ClaimedMessage>(limit);
        var unreadable = new List<Unreadable>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            if (!reader.IsDBNull(20))
            {
                unreadable.Add(new Unreadable(reader.GetInt64(0), reader.GetGuid(1),
                    $"{reader.GetString(20)} bytes, more than the {MaxTextBytes / 1024 / 1024} MB a message may hold (send large documents as attachments)"));
                continue;
            }
            try
            {
                claimed.Add(ReadClaimed(reader));
            }
            catch (Exception ex) when (IsUnreadable(ex))
            {
                unreadable.Add(new Unreadable(reader.GetInt64(0), reader.GetGuid(1), $"the row cannot be read: {Describe(reader, ex)}"));
            }
        }
        await reader.CloseAsync();
        await FailUnreadableAsync(connection, leaseToken, unreadable, now, cancellationToken);
        return claimed;
    }

    private static ClaimedMessage ReadClaimed(NpgsqlDataReader reader) =>
        new(
            reader.GetInt64(0),
            reader.GetGuid(1),
            NullableGuid(reader, 2),
            NullableString(reader, 3),
            WireName<MessageType>.Parse(reader.GetString(4)),
            WireName<Channel>.Parse(reader.GetString(5)),
            reader.IsDBNull(6) ? null : WireName<Channel>.Parse(reader.GetString(6)),
            NullableString(reader, 7),
            NullableString(reader, 8),
            NullableString(reader, 9),
            reader.GetString(10),
            Count(reader, 11),
            Math.Clamp(reader.GetInt32(12), 0, CommunicationLog.MaxRetriesLimit),
            Count(reader, 13),
            NullableTime(reader, 14),
            reader.GetFieldValue<DateTimeOffset>(15),
            Count(reader, 16))
        {
            SplitFrom = reader.IsDBNull(17) ? null : reader.GetInt64(17),
            ReplayCount = reader.GetInt32(18),
            IsReminderStep = reader.GetBoolean(19),
        };

    /// <summary>The largest subject, content or template data (stored) the claim returns: the 1048576 in <see cref="ClaimSql"/>.</summary>
    internal const int MaxTextBytes = 1024 * 1024;

    /// <summary>A claimed row, or its customer, holding a value this worker cannot read: failed with the reason, so it neither blocks its batch nor comes back.</summary>
    private sealed record Unreadable(long Id, Guid CompanyId, string Reason);

    // Values PostgreSQL holds and .NET does not: a timestamp after the year 9999 (a producer's typo,
    // '20260-01-01'), an unknown enum text where no CHECK guards it.
    private static bool IsUnreadable(Exception ex) => ex is InvalidCastException or ArgumentException or FormatException or OverflowException or KeyNotFoundException;

    /// <summary>The first column of the current row that cannot be read, with why; else the exception's own words.</summary>
    private static string Describe(NpgsqlDataReader reader, Exception ex)
    {
        for (var i = 0; i < reader.FieldCount; i++)
        {
            try
            {
                reader.GetValue(i);
            }
            catch (Exception column) when (IsUnreadable(column))
            {
                return $"{reader.GetName(i)} holds a value this worker cannot read ({column.Message})";
            }
        }
        return ex.Message;
    }

    private const string FailUnreadableSql = $"""
        UPDATE communication_logs m SET
               status = 'FAILED', error_message = b.reason, status_reason = NULL, failed_at = $1, next_attempt_at = $1,
               locked_by = NULL, locked_until = NULL, updated_at = $1
          FROM unnest($3::bigint[], $4::uuid[], $5::text[]) AS b(id, company_id, reason)
         CROSS JOIN LATERAL ({LeasedRowSql}) l
         WHERE m.ctid = l.tid
        """;

    private static async Task FailUnreadableAsync(NpgsqlConnection connection, string leaseToken, List<Unreadable> rows, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }
        await using var command = new NpgsqlCommand(FailUnreadableSql, connection);
        command.Parameters.Add(Value(now.ToUniversalTime()));
        command.Parameters.Add(Value(leaseToken));
        command.Parameters.Add(Array(rows, r => r.Id, NpgsqlDbType.Bigint));
        command.Parameters.Add(Array(rows, r => r.CompanyId, NpgsqlDbType.Uuid));
        command.Parameters.Add(Texts(rows, r => r.Reason));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The claimed rows, in the same order, each with its recipient, attachment flag and last reminder time.</summary>
    public async Task<List<ClaimedMessage>> WithRecipientsAsync(string leaseToken, List<ClaimedMessage> claimed, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (claimed.Count == 0)
        {
            return claimed;
        }
        var unreadable = new List<Unreadable>();
        var byId = new Dictionary<long, ClaimedMessage>(claimed.Count);
        HashSet<long>? shared = null;
        foreach (var message in claimed)
        {
            if (!byId.TryAdd(message.Id, message))
            {
                (shared ??= []).Add(message.Id);
            }
        }
        // Ids come from the identity sequence alone (migration 0011), but a COPY writes the ids it
        // is given: two companies' rows may then share one. Neither is sent (attachments are matched
        // by id, so one company's files could go out with the other's message), and the batch goes on.
        if (shared is not null)
        {
            unreadable.AddRange(claimed.Where(m => shared.Contains(m.Id)).Select(m => new Unreadable(m.Id, m.CompanyId,
                $"another company's message has the same id {m.Id} (a COPY or an INSERT … OVERRIDING SYSTEM VALUE gave it; ids must come from the sequence): not sent, as attachments are matched by id")));
            claimed = [.. claimed.Where(m => !shared.Contains(m.Id))];
            foreach (var id in shared)
            {
                byId.Remove(id);
            }
        }
        await using var command = RecipientsCommand(claimed);
        await using (var reader = claimed.Count == 0 ? null : await command.ExecuteReaderAsync(cancellationToken))
        {
            while (reader is not null && await reader.ReadAsync(cancellationToken))
            {
                var message = byId[reader.GetInt64(0)];
                try
                {
                    byId[message.Id] = message with
                    {
                        HasAttachments = reader.GetBoolean(1),
                        Customer = reader.IsDBNull(2) ? null : ReadCustomer(reader, message.CompanyId),
                        LastReminderSentAt = NullableTime(reader, 27),
                        LastReminderCreatedAt = NullableTime(reader, 28),
                        LastReminderPairId = reader.IsDBNull(29) ? null : reader.GetInt64(29),
                    };
                }
                catch (Exception ex) when (IsUnreadable(ex))
                {
                    unreadable.Add(new Unreadable(message.Id, message.CompanyId, $"the customer's record cannot be read: {Describe(reader, ex)}"));
                    byId.Remove(message.Id);
                }
            }
        }
        if (unreadable.Count > 0)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await FailUnreadableAsync(connection, leaseToken, unreadable, now, cancellationToken);
        }
        return [.. claimed.Where(m => byId.ContainsKey(m.Id)).Select(m => byId[m.Id])];
    }

    /// <summary>
    /// The message's recipient as the database has it now: the batch read every recipient at its
    /// claim, and its last sends may start most of a lease later (see BatchContext.CurrentRecipientAsync).
    /// The same lookup as the batch's, for one row.
    /// </summary>
    public async Task<Customer?> CurrentRecipientAsync(ClaimedMessage message, CancellationToken cancellationToken)
    {
        await using var command = RecipientsCommand([message]);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) && !reader.IsDBNull(2) ? ReadCustomer(reader, message.CompanyId) : null;
    }

    private NpgsqlCommand RecipientsCommand(IReadOnlyList<ClaimedMessage> rows)
    {
        var command = dataSource.CreateCommand(RecipientsSql);
        command.Parameters.Add(Array(rows, m => m.Id, NpgsqlDbType.Bigint));
        command.Parameters.Add(Array(rows, m => m.CompanyId, NpgsqlDbType.Uuid));
        command.Parameters.Add(Array(rows, m => m.CustomerId, NpgsqlDbType.Uuid));
        command.Parameters.Add(Array(rows, m => m.CustomerExternalId, NpgsqlDbType.Text));
        command.Parameters.Add(Array(rows, m => WireName<MessageType>.Of(m.Type), NpgsqlDbType.Text));
        return command;
    }

    // A counter (retries, attempts, outage attempts) as the worker counts on from it. The columns
    // have no CHECK: a producer may write -1 or int.MaxValue, and one more would then be out of range
    // (negative, or an overflow) for the retry schedule.
    private static int Count(NpgsqlDataReader reader, int ordinal) => Math.Clamp(reader.GetInt32(ordinal), 0, int.MaxValue - 1);

    /// <summary>Columns 2–26 and 30 of the recipient lookup: the customer and, when they have a row, their preferences.</summary>
    private static Customer ReadCustomer(NpgsqlDataReader reader, Guid companyId)
    {
        var customer = new Customer
        {
            Id = reader.GetGuid(2),
            CompanyId = companyId,
            ExternalId = NullableString(reader, 3),
            Name = reader.GetString(4),
            Email = NullableString(reader, 5),
            Phone = NullableString(reader, 6),
            WhatsAppNumber = NullableString(reader, 7),
            PreferredLanguage = reader.GetString(8),
            TimeZone = reader.GetString(9),
            DeletedAt = NullableTime(reader, 10),
            CreatedAt = reader.GetFieldValue<DateTimeOffset>(11),
            UpdatedAt = reader.GetFieldValue<DateTimeOffset>(12),
        };
        if (!reader.IsDBNull(13))
        {
            customer.Preference = new CommunicationPreference
            {
                Id = reader.GetGuid(13),
                CustomerId = customer.Id,
                EmailOptIn = reader.GetBoolean(14),
                WhatsAppOptIn = reader.GetBoolean(15),
                SmsOptIn = reader.GetBoolean(16),
                InvoiceDeliveryChannel = WireName<Channel>.Parse(reader.GetString(17)),
                ComplianceReminderChannel = WireName<Channel>.Parse(reader.GetString(18)),
                PaymentReminderChannel = WireName<Channel>.Parse(reader.GetString(19)),
                GeneralUpdatesChannel = WireName<Channel>.Parse(reader.GetString(20)),
                ReminderFrequency = WireName<ReminderFrequency>.Parse(reader.GetString(21)),
                ReminderCron = NullableString(reader, 22),
                GeneralUpdatesOptOut = reader.GetBoolean(23),
                QuietHoursStart = reader.IsDBNull(24) ? null : reader.GetFieldValue<TimeOnly>(24),
                QuietHoursEnd = reader.IsDBNull(25) ? null : reader.GetFieldValue<TimeOnly>(25),
                UpdatedAt = reader.GetFieldValue<DateTimeOffset>(26),
                // Column 29 (after the reminder columns), null while empty, as it nearly always is.
                GeneralUpdatesOptOutChannels = reader.IsDBNull(30) ? [] : [.. reader.GetFieldValue<string[]>(30).Select(WireName<Channel>.Parse)],
            };
        }
        return customer;
    }

    private static string? NullableString(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    private static Guid? NullableGuid(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetGuid(ordinal);

    private static DateTimeOffset? NullableTime(NpgsqlDataReader reader, int ordinal) =>
        reader.IsDBNull(ordinal) ? null : reader.GetFieldValue<DateTimeOffset>(ordinal);


    /// <summary>
    /// The stored bytes of a message's attachments, by attachment id, read when it is sent (the
    /// batch loads none: see BatchContext.Attachments); the ids are those the batch listed for the
    /// message, its company's own.
    /// </summary>
    // Sized before they are read (octet_length reads a stored value's header, not its bytes): a
    // producer's SQL may store any size, and a message's files together may not pass the limit
    // every email send holds them to (AttachmentLoader.MaxBytes). Past it, none is read into memory.
    private const string AttachmentContentSql = """
        SELECT id, CASE WHEN total <= $2 THEN content END, total
          FROM (SELECT id, content, sum(octet_length(content)) OVER () AS total
                  FROM communication_attachments WHERE id = ANY ($1) AND content IS NOT NULL) a
        """;

    public async Task<Dictionary<long, byte[]>> AttachmentContentAsync(long[] attachmentIds, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(AttachmentContentSql);
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = attachmentIds });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = AttachmentLoader.MaxBytes });
        var content = new Dictionary<long, byte[]>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            if (reader.IsDBNull(1))
            {
                throw new StoredAttachmentsTooLargeException(
                    $"the message's stored attachments are {reader.GetInt64(2) / 1024 / 1024} MB together, more than the {AttachmentLoader.MaxBytes / 1024 / 1024} MB a message may carry");
            }
            content[reader.GetInt64(0)] = reader.GetFieldValue<byte[]>(1);
        }
        return content;
    }

    /// <summary>Writes a batch's outcomes, attempts, reminder times and BOTH-splits in one transaction: one round trip and the commit.</summary>
    /// <param name="mayHaveLanded">An earlier write of these outcomes failed in a way that may have committed it (a lost connection): attempts already recorded are not recorded again.</param>
    /// <param name="freeReminders">The batch's reminder reservations, given back in the same commit (a reminder recorded and its entry freed at once).</param>
    public async Task CompleteAsync(string leaseToken, IReadOnlyList<Completion> completions, DateTimeOffset now, CancellationToken cancellationToken, bool mayHaveLanded = false,
        IReadOnlyCollection<(Guid CustomerId, MessageType Type)>? freeReminders = null)
    {
        if (completions.Count == 0)
        {
            await FreeRemindersAsync(leaseToken, freeReminders ?? [], cancellationToken);
            return;
        }
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection, transaction);

        foreach (var completion in completions)
        {
            foreach (var channel in completion.SplitInto)
            {
                var split = new NpgsqlBatchCommand(SplitSql);
                split.Parameters.Add(Value(completion.Id));
                split.Parameters.Add(Value(WireName<Channel>.Of(channel)));
                split.Parameters.Add(Value(now.ToUniversalTime()));
                split.Parameters.Add(Value(leaseToken));
                split.Parameters.Add(Value(completion.CompanyId));
                batch.BatchCommands.Add(split);
            }
        }

        var outcome = OutcomeCommand(leaseToken, completions, now);
        batch.BatchCommands.Add(outcome);

        var attempts = completions.Where(c => c.Attempt is not null).ToList();
        if (attempts.Count > 0)
        {
            var insert = new NpgsqlBatchCommand(mayHaveLanded ? AttemptsOnceSql : AttemptsSql);
            insert.Parameters.Add(Array(attempts, c => c.Id, NpgsqlDbType.Bigint));
            insert.Parameters.Add(Array(attempts, c => c.Attempt!.CompanyId, NpgsqlDbType.Uuid));
            insert.Parameters.Add(Array(attempts, c => c.Attempt!.AttemptNo, NpgsqlDbType.Integer));
            insert.Parameters.Add(Array(attempts, c => c.Attempt!.AttemptedAt.ToUniversalTime(), NpgsqlDbType.TimestampTz));
            insert.Parameters.Add(Array(attempts, c => WireName<Channel>.Of(c.Attempt!.Channel), NpgsqlDbType.Text));
            insert.Parameters.Add(Texts(attempts, c => c.Attempt!.ProviderName));
            insert.Parameters.Add(Array(attempts, c => WireName<AttemptOutcome>.Of(c.Attempt!.Outcome), NpgsqlDbType.Text));
            insert.Parameters.Add(Texts(attempts, c => c.Attempt!.Error));
            insert.Parameters.Add(Array(attempts, c => c.Attempt!.LatencyMs, NpgsqlDbType.Integer));
            insert.Parameters.Add(Array(attempts, c => c.Attempt!.Cost, NpgsqlDbType.Numeric));
            insert.Parameters.Add(Texts(attempts, c => c.Attempt!.CostCurrency));
            batch.BatchCommands.Add(insert);
        }

        // The reminders sent, with their times, and the batch's other holds (reminders suppressed,
        // deferred or failed), without: one statement gives every hold back, in the order the
        // holds were taken in (sorted), so it never waits on a batch taking holds in a cycle.
        var sent = completions.Where(c => c.ReminderSent is not null)
            .GroupBy(c => c.ReminderSent!.Value)
            .Select(g => g.MaxBy(c => c.SentAt!.Value)!)
            .ToDictionary(c => c.ReminderSent!.Value, c => (SentAt: (DateTimeOffset?)c.SentAt!.Value, c.ReminderCreatedAt, c.ReminderPairId));
        var reminders = Sorted(sent.Keys.Concat(freeReminders ?? []))
            .Select(key => (Key: key, Time: sent.GetValueOrDefault(key)))
            .ToList();
        if (reminders.Count > 0)
        {
            var upsert = new NpgsqlBatchCommand(RemindersSql);
            upsert.Parameters.Add(Array(reminders, r => r.Key.CustomerId, NpgsqlDbType.Uuid));
            upsert.Parameters.Add(Array(reminders, r => WireName<MessageType>.Of(r.Key.Type), NpgsqlDbType.Text));
            upsert.Parameters.Add(Array(reminders, r => r.Time.SentAt?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
            upsert.Parameters.Add(Array(reminders, r => r.Time.ReminderCreatedAt?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
            upsert.Parameters.Add(Array(reminders, r => r.Time.ReminderPairId, NpgsqlDbType.Bigint));
            upsert.Parameters.Add(new NpgsqlParameter { Value = freeReminders is null ? DBNull.Value : leaseToken, NpgsqlDbType = NpgsqlDbType.Text });
            batch.BatchCommands.Add(upsert);
        }

        await batch.ExecuteNonQueryAsync(cancellationToken);
        await RepeatForSkippedRowsAsync(transaction, outcome.RecordsAffected, completions.Count, () => OutcomeCommand(leaseToken, completions, now), cancellationToken);

        // Rare, so its own round trip, after every row's channel is recorded (a PREFERRED row's channel is resolved by the outcome).
        await ProviderOptOuts.ApplySendSignalsAsync(transaction, Signals(c => c.RecipientOptedOut), Signals(c => c.MarketingStopped), now, cancellationToken);
        await transaction.CommitAsync(cancellationToken);

        // Signalled when the provider answered, not at this commit (a batch may send for minutes):
        // an opt-in the practice recorded in between (the customer replied START) stands.
        List<ProviderOptOuts.Signal> Signals(Func<Completion, bool> said) =>
            [.. completions.Where(said).Select(c => new ProviderOptOuts.Signal(c.CompanyId, c.Id, c.ProviderName ?? "provider", c.Attempt?.AttemptedAt ?? now))];
    }

    /// <summary>
    /// Runs a LeasedRowSql statement once more, in the same transaction, when it changed fewer rows
    /// than it was given. A row someone else updated while the statement waited for its lock is
    /// locked in its newer version, which the statement's snapshot cannot see, so the update by tuple
    /// id skips it. The next statement's snapshot sees that version, and as this transaction holds
    /// its lock nobody can change it again first: one repeat records every such row. Rows whose lease
    /// this batch lost (or that were deleted) also make the count short; they match nothing again.
    /// </summary>
    private static async Task RepeatForSkippedRowsAsync(NpgsqlTransaction transaction, int changed, int given, Func<NpgsqlBatchCommand> statement, CancellationToken cancellationToken)
    {
        if (changed < given)
        {
            await using var again = new NpgsqlBatch(transaction.Connection, transaction) { BatchCommands = { statement() } };
            await again.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>The batch's outcome statement (internal so a test can print its plan).</summary>
    internal static NpgsqlBatchCommand OutcomeCommand(string leaseToken, IReadOnlyList<Completion> completions, DateTimeOffset now)
    {
        var complete = LeasedRowsCommand(CompleteSql, leaseToken, completions, c => c.Id, c => c.CompanyId, now);
        complete.Parameters.Add(Array(completions, c => WireName<DeliveryStatus>.Of(c.Status), NpgsqlDbType.Text));
        complete.Parameters.Add(Array(completions, c => WireName<Channel>.Of(c.Channel), NpgsqlDbType.Text));
        complete.Parameters.Add(Array(completions, c => c.RequestedChannel is { } r ? WireName<Channel>.Of(r) : null, NpgsqlDbType.Text));
        complete.Parameters.Add(Array(completions, c => c.NextAttemptAt.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        complete.Parameters.Add(Array(completions, c => c.RetryCount, NpgsqlDbType.Integer));
        complete.Parameters.Add(Array(completions, c => c.AttemptCount, NpgsqlDbType.Integer));
        complete.Parameters.Add(Texts(completions, c => c.StatusReason));
        complete.Parameters.Add(Texts(completions, c => c.ErrorMessage));
        complete.Parameters.Add(Texts(completions, c => c.Subject));
        complete.Parameters.Add(Texts(completions, c => c.Content));
        complete.Parameters.Add(Texts(completions, c => c.TemplateUsed));
        complete.Parameters.Add(Texts(completions, c => c.ProviderName));
        complete.Parameters.Add(Texts(completions, c => c.ProviderMessageId));
        complete.Parameters.Add(Array(completions, c => c.SentAt?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        complete.Parameters.Add(Array(completions, c => c.FailedAt?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        complete.Parameters.Add(Array(completions, c => c.Cost, NpgsqlDbType.Numeric));
        complete.Parameters.Add(Texts(completions, c => c.CostCurrency));
        complete.Parameters.Add(Array(completions, c => c.OutageAttempts, NpgsqlDbType.Integer));
        complete.Parameters.Add(Array(completions, c => c.CustomerId, NpgsqlDbType.Uuid));
        return complete;
    }

    // A batch's reminders, one per customer and type (ReminderGate keeps a process's batches apart):
    // each customer's reminder_frequency_state row (made for one never reminded) is held unless
    // another batch holds it and its lease has not run out. A row held elsewhere is locked and
    // left; a row taken is answered as it stands once locked — the latest committed version, so
    // with every reminder time a holder before this one recorded (it gives its hold back in the
    // commit that records them). In the order given (the caller sorts; the free below locks in
    // that order too), so two batches taking overlapping rows wait for each other, never deadlock.
    private const string ReserveRemindersSql = """
        INSERT INTO reminder_frequency_state AS s (customer_id, type, held_by, held_until)
        SELECT customer_id, type, $3, $4 FROM unnest($1::uuid[], $2::text[]) AS i(customer_id, type)
        ON CONFLICT (customer_id, type) DO UPDATE SET held_by = excluded.held_by, held_until = excluded.held_until
         WHERE s.held_until IS NULL OR s.held_until <= $5
        RETURNING customer_id, type, last_sent_at, last_created_at, last_pair_id
        """;

    // Locked in the order given (sorted, as the reservation locks them), then marked free by tuple id.
    private const string FreeRemindersSql = """
        UPDATE reminder_frequency_state SET held_until = '-infinity' WHERE ctid = ANY (ARRAY(
            SELECT r.ctid FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS i(customer_id, type, n)
             CROSS JOIN LATERAL (SELECT ctid FROM reminder_frequency_state
                                  WHERE customer_id = i.customer_id AND type = i.type AND held_by = $3 FOR UPDATE) r
             ORDER BY i.n))
        """;

    /// <summary>
    /// Holds the batch's reminders (see migration 0043) until <paramref name="heldUntil"/>, its
    /// lease's end; answers the ones taken, with when each customer last got a reminder of that
    /// type as the database has it now (null when never). One statement.
    /// </summary>
    public async Task<Dictionary<(Guid CustomerId, MessageType Type), RecordedReminder?>> ReserveRemindersAsync(
        string leaseToken, IReadOnlyCollection<(Guid CustomerId, MessageType Type)> reminders, DateTimeOffset heldUntil, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var taken = new Dictionary<(Guid, MessageType), RecordedReminder?>();
        if (reminders.Count == 0)
        {
            return taken;
        }
        var wanted = Sorted(reminders);
        await using var reserve = dataSource.CreateCommand(ReserveRemindersSql);
        reserve.Parameters.Add(Array(wanted, r => r.CustomerId, NpgsqlDbType.Uuid));
        reserve.Parameters.Add(Array(wanted, r => WireName<MessageType>.Of(r.Type), NpgsqlDbType.Text));
        reserve.Parameters.Add(Value(leaseToken));
        reserve.Parameters.Add(Value(heldUntil.ToUniversalTime()));
        reserve.Parameters.Add(Value(now.ToUniversalTime()));
        await using var reader = await reserve.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            taken[(reader.GetGuid(0), WireName<MessageType>.Parse(reader.GetString(1)))] = reader.IsDBNull(2)
                ? null
                : new RecordedReminder(reader.GetFieldValue<DateTimeOffset>(2), NullableTime(reader, 3), reader.IsDBNull(4) ? null : reader.GetInt64(4), 0);
        }
        return taken;
    }

    /// <summary>
    /// Gives back reminders this batch holds, on their own (a batch that failed to take them, or
    /// recorded no outcome); a batch that records outcomes gives them back in that commit
    /// (<see cref="CompleteAsync"/>).
    /// </summary>
    public async Task FreeRemindersAsync(string leaseToken, IReadOnlyCollection<(Guid CustomerId, MessageType Type)> reminders, CancellationToken cancellationToken)
    {
        if (reminders.Count == 0)
        {
            return;
        }
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(FreeRemindersCommand(leaseToken, reminders));
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    private static NpgsqlBatchCommand FreeRemindersCommand(string leaseToken, IReadOnlyCollection<(Guid CustomerId, MessageType Type)> reminders)
    {
        var sorted = Sorted(reminders);
        return new NpgsqlBatchCommand(FreeRemindersSql)
        {
            Parameters = { Array(sorted, r => r.CustomerId, NpgsqlDbType.Uuid), Array(sorted, r => WireName<MessageType>.Of(r.Type), NpgsqlDbType.Text), Value(leaseToken) },
        };
    }

    // One order for every statement that locks reservations: none waits on another in a cycle.
    private static List<(Guid CustomerId, MessageType Type)> Sorted(IEnumerable<(Guid CustomerId, MessageType Type)> reminders) =>
        [.. reminders.Distinct().OrderBy(r => r.CustomerId).ThenBy(r => r.Type)];

    /// <summary>Gives back rows this worker claimed but will not process (shutdown): due again at once.</summary>
    public async Task ReleaseAsync(string leaseToken, IReadOnlyCollection<ClaimedMessage> messages, DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (messages.Count == 0)
        {
            return;
        }
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection, transaction) { BatchCommands = { ReleaseCommand(leaseToken, messages, now) } };
        var released = await batch.ExecuteNonQueryAsync(cancellationToken);
        await RepeatForSkippedRowsAsync(transaction, released, messages.Count, () => ReleaseCommand(leaseToken, messages, now), cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>The release statement (internal so a test can print its plan).</summary>
    internal static NpgsqlBatchCommand ReleaseCommand(string leaseToken, IReadOnlyCollection<ClaimedMessage> messages, DateTimeOffset now) =>
        LeasedRowsCommand(ReleaseSql, leaseToken, messages, m => m.Id, m => m.CompanyId, now);

    /// <summary>A statement over LeasedRowSql: $1 the time, $2 the lease, $3 and $4 the rows' ids and companies.</summary>
    private static NpgsqlBatchCommand LeasedRowsCommand<T>(string sql, string leaseToken, IEnumerable<T> rows, Func<T, long> id, Func<T, Guid> company, DateTimeOffset now)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.Add(Value(now.ToUniversalTime()));
        command.Parameters.Add(Value(leaseToken));
        command.Parameters.Add(Array(rows, id, NpgsqlDbType.Bigint));
        command.Parameters.Add(Array(rows, company, NpgsqlDbType.Uuid));
        return command;
    }

    private static NpgsqlParameter<T> Value<T>(T value) => new() { TypedValue = value };

    /// <summary>An outcome's free text (provider answers, rendered bodies), as PostgreSQL can store it: see <see cref="StorableText"/>.</summary>
    private static NpgsqlParameter Texts<TSource>(IEnumerable<TSource> source, Func<TSource, string?> select) =>
        Array(source, s => StorableText.Of(select(s)), NpgsqlDbType.Text);

    private static NpgsqlParameter Array<TSource, TValue>(IEnumerable<TSource> source, Func<TSource, TValue> select, NpgsqlDbType type) =>
        new() { NpgsqlDbType = NpgsqlDbType.Array | type, Value = source.Select(select).ToArray() };
}
