using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;

namespace OutboxComms.Core.Webhooks;

public enum WebhookOutcome
{
    Applied,
    /// <summary>Older news than the row already has (e.g. "delivered" after "read"): kept for audit only.</summary>
    Stale,
    UnknownMessage,
    Duplicate,
}

/// <summary>
/// Applies provider delivery events to the outbox: each event is stored raw (deduplicated by the
/// provider's event identity, so a redelivery changes nothing twice) and moves its message forward
/// only, in one transaction.
/// </summary>
public sealed class DeliveryEventRecorder(NpgsqlDataSource dataSource, IOptions<RetryBackoffOptions>? backoff = null, TimeProvider? time = null)
{
    private readonly RetryBackoffOptions retryBackoff = backoff?.Value ?? new RetryBackoffOptions();
    private readonly TimeProvider clock = time ?? TimeProvider.System;

    private const string StoreSql = """
        INSERT INTO webhook_events (company_id, provider, event_key, provider_message_id, status, occurred_at, outcome, payload, error, signal)
        VALUES ($1, $2, $3, $4, $5, $6, 'APPLIED', $7, $8, $9)
        ON CONFLICT (company_id, provider, event_key) DO NOTHING
        RETURNING id
        """;

    // Events that matched no message, for provider ids the worker has just recorded (migration 0023's index).
    private const string WaitingSql = """
        SELECT id FROM webhook_events WHERE outcome = 'UNKNOWN_MESSAGE' AND provider_message_id = ANY ($1) ORDER BY id
        """;

    private const string WaitingEventSql = """
        SELECT company_id, provider, event_key, provider_message_id, status, occurred_at, received_at, error, signal, payload
          FROM webhook_events WHERE id = $1 AND outcome = 'UNKNOWN_MESSAGE'
           FOR UPDATE
        """;

    // Forward-only: delivery_rank (migration 0003) orders SENT < FAILED/BOUNCED < DELIVERED < READ;
    // PENDING, SUPPRESSED and CANCELLED have no rank and are never touched. A READ also proves
    // delivery. One step back is taken: a bounce after "delivered" (the recipient's server accepted
    // the mail, then bounced it: SES, SendGrid and Mailgun report both) makes the row BOUNCED; READ
    // stays. Events arrive in any order (SNS and SendGrid promise none), so the outcome must not
    // depend on it: a bounce and a delivery go by the events' own times (the later wins: an earlier
    // delivery that arrives after the bounce changes nothing), while a delivery or read beats a
    // failure whatever the times (it proves the message arrived; a failure after "delivered" was
    // never believed), and a read beats a bounce likewise. Such a delivery clears the failure's time
    // and error. A bounce beats a failure whatever the order (a SendGrid block, then the bounce: the
    // address itself is refused, which is what the practice must fix), and a failure after a bounce
    // changes nothing. The delivery and
    // read times are the earliest reported: a "read" that came first stands in for the delivery
    // until the "delivered" with its own, earlier time arrives (the status stays READ). Mailgun reports
    // the Message-Id without angle brackets, hence the second form; it also says which message it
    // is about in its user variables ($7, null for the other providers), which must agree. Both lookups are served by the
    // hash index on provider_message_id (migration 0012; internal so a test can check their plans).
    internal const string ApplySql = """
        WITH target AS (
            SELECT id, status,
                   coalesce(CASE
                       WHEN $3 = 'BOUNCED' AND status = 'DELIVERED' THEN $4 >= coalesce(delivered_at, '-infinity')
                       WHEN $3 = 'DELIVERED' AND status = 'BOUNCED' THEN $4 >= coalesce(failed_at, '-infinity')
                       WHEN $3 IN ('DELIVERED', 'READ') AND status IN ('FAILED', 'BOUNCED') THEN true
                       WHEN $3 = 'BOUNCED' AND status = 'FAILED' THEN true
                       ELSE delivery_rank($3) > delivery_rank(status)
                   END, false) AS advances
              FROM communication_logs
             WHERE company_id = $1 AND provider_message_id IN ($2, '<' || $2 || '>') AND provider_name = ANY ($6)
               AND ($7::bigint IS NULL OR id = $7)
             LIMIT 1 FOR UPDATE),
        moved AS (
            UPDATE communication_logs m SET
                   status        = CASE WHEN t.advances THEN $3 ELSE m.status END,
                   delivered_at  = CASE WHEN $3 IN ('DELIVERED', 'READ') AND delivery_rank(t.status) IS NOT NULL THEN least(coalesce(m.delivered_at, $4), $4) ELSE m.delivered_at END,
                   read_at       = CASE WHEN $3 = 'READ' AND delivery_rank(t.status) IS NOT NULL THEN least(coalesce(m.read_at, $4), $4) ELSE m.read_at END,
                   failed_at     = CASE WHEN t.advances AND $3 IN ('FAILED', 'BOUNCED') THEN $4
                                        WHEN t.advances AND t.status IN ('FAILED', 'BOUNCED') THEN NULL
                                        ELSE m.failed_at END,
                   -- A message whose content was cleared (retention, erasure) takes no new error
                   -- text: a late bounce's would quote the address again, and nothing clears it twice.
                   error_message = CASE WHEN m.content_redacted_at IS NOT NULL THEN NULL
                                        WHEN t.advances AND $3 IN ('FAILED', 'BOUNCED') THEN $5
                                        WHEN t.advances AND t.status IN ('FAILED', 'BOUNCED') THEN NULL
                                        ELSE m.error_message END,
                   updated_at    = now()
              FROM target t WHERE m.company_id = $1 AND m.id = t.id
            RETURNING m.id, t.advances, t.status)
        SELECT id, advances, status FROM moved
        """;

    internal const string ResponseSql = """
        UPDATE communication_logs SET response_at = coalesce(response_at, $3), updated_at = now()
         WHERE company_id = $1 AND provider_message_id = $2 AND provider_name = ANY ($4)
        RETURNING id, response_at = $3
        """;

    // A complaint or a provider's unsubscribe changes no status: it only names the message whose customer asked.
    internal const string ComplaintSql = """
        SELECT id, true FROM communication_logs
         WHERE company_id = $1 AND provider_message_id IN ($2, '<' || $2 || '>') AND provider_name = ANY ($3)
           AND ($4::bigint IS NULL OR id = $4)
         LIMIT 1
        """;

    /// <summary>
    /// The providers whose messages a webhook route may move (communication_logs.provider_name): an
    /// event verified with the company's Gupshup token must not touch its SES mail, whatever id it names.
    /// </summary>
    internal static string[] SendingProviders(string route) => route switch
    {
        "messagebird" or "messagebird-sms" => ["MESSAGEBIRD"],
        "whatsapp" => ["WHATSAPP_BUSINESS_API"],
        "ses" => ["AWS_SES"],
        _ => [route.ToUpperInvariant()],   // twilio, sendgrid, mailgun, resend, gupshup
    };

    // The message's latest send: the one a delivery event names (a replay's new send gets a new
    // provider id, and webhooks for the old one match no message).
    private const string LatestSendSql = """
        SELECT message_id, attempt_no, id, cost, waived_cost, cost_currency FROM communication_attempts
         WHERE message_id = $2 AND company_id = $1 AND outcome = 'SENT'
         ORDER BY attempt_no DESC, attempted_at DESC, id DESC
         LIMIT 1
        """;

    // A send the provider did not charge for (DeliveryEvent.Free) costs nothing: its attempt's cost
    // becomes 0 (kept in waived_cost, migration 0029) and the message's total loses it. The
    // message's row lock (ApplySql) orders concurrent events, and a second "free" event finds the
    // attempt at 0 and changes nothing.
    internal const string FreeSql = $$"""
        WITH latest AS ({{LatestSendSql}}),
        freed AS (
            UPDATE communication_attempts a SET cost = 0, waived_cost = l.cost
              FROM latest l WHERE a.message_id = l.message_id AND a.attempt_no = l.attempt_no AND a.id = l.id AND l.cost <> 0
            RETURNING l.cost, l.cost_currency)
        UPDATE communication_logs m SET cost = greatest(m.cost - f.cost, 0), updated_at = now()
          FROM freed f WHERE m.company_id = $1 AND m.id = $2 AND m.cost_currency = f.cost_currency
        """;

    // The other way: a message reported failed (its send waived above) and then delivered after all,
    // which the provider does charge for, gets the waived cost back.
    internal const string ChargedAfterAllSql = $$"""
        WITH latest AS ({{LatestSendSql}}),
        restored AS (
            UPDATE communication_attempts a SET cost = l.waived_cost, waived_cost = NULL
              FROM latest l WHERE a.message_id = l.message_id AND a.attempt_no = l.attempt_no AND a.id = l.id AND l.waived_cost IS NOT NULL
            RETURNING l.waived_cost, l.cost_currency)
        UPDATE communication_logs m SET cost = m.cost + r.waived_cost, updated_at = now()
          FROM restored r WHERE m.company_id = $1 AND m.id = $2 AND m.cost_currency = r.cost_currency
        """;

    // A temporary failure reported after the send (DeliveryEvent.TransientFailure): only a row still
    // SENT by the send the event names (its provider id; a replay or an earlier requeue forgot it)
    // is sent again — never one delivered or read, failed or bounced (the forward-only rules above
    // decide those as for any failure), nor one PENDING or being sent again, nor one whose text
    // retention cleared (nothing is left to send; a pending row may not be cleared, migration 0035).
    // Locked, so a duplicate report or another event waits and then finds it no longer SENT.
    private const string RequeueTargetSql = """
        SELECT id, retry_count, max_retries, attempt_count, channel, provider_name, outage_attempts FROM communication_logs
         WHERE company_id = $1 AND provider_message_id IN ($2, '<' || $2 || '>') AND provider_name = ANY ($3)
           AND ($4::bigint IS NULL OR id = $4) AND status = 'SENT' AND content_redacted_at IS NULL
         LIMIT 1 FOR UPDATE
        """;

    // Back to PENDING after the dispatcher's backoff with one more retry counted, as a transient
    // failure at send time is (MessageDispatcher.Retry). The provider id is forgotten, as a replay
    // forgets it: later reports of the abandoned send (a duplicate of this one under another event
    // key, a late status) match nothing, and the resend records its own.
    // A PREFERRED message never split goes to the customer's channel as it is then, as a replay's
    // does (after a WhatsApp payment problem the practice may move the customer to email).
    private const string RequeueSql = """
        UPDATE communication_logs SET status = 'PENDING', next_attempt_at = $3, retry_count = $4, outage_attempts = $7,
               provider_message_id = NULL, failed_at = NULL, error_message = $5, status_reason = $6, updated_at = now(),
               channel = CASE WHEN requested_channel = 'PREFERRED' AND split_from IS NULL THEN 'PREFERRED' ELSE channel END
         WHERE company_id = $1 AND id = $2
        """;

    // The report goes into the attempt history under the send it is about (attempt_no of that
    // provider call, outcome TRANSIENT_FAILURE, no latency: no call was made), so the history shows
    // why the message was sent again; attempt_count is not raised, as no provider call was made.
    private const string ReportedAttemptSql = """
        INSERT INTO communication_attempts (message_id, company_id, attempt_no, attempted_at, channel, provider_name, outcome, error_message)
        VALUES ($2, $1, $3, $4, $5, $6, 'TRANSIENT_FAILURE', $7)
        """;

    private const string OutcomeSql = "UPDATE webhook_events SET outcome = $2, message_id = $3 WHERE id = $1";

    /// <summary>When an event counts as having happened: its own time, unless that is after it arrived (see RecordAsync).</summary>
    private static DateTimeOffset EffectiveTime(DateTimeOffset? occurred, DateTimeOffset receivedAt) =>
        (occurred is { } at && at < receivedAt ? at : receivedAt).ToUniversalTime();

    public async Task<WebhookOutcome> RecordAsync(Guid companyId, string provider, DeliveryEvent delivery, DateTimeOffset receivedAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(delivery);
        // A bounce reason is the recipient's mail server's text, and ids are whatever the body said:
        // a NUL in any of them is refused by PostgreSQL's text.
        delivery = delivery with
        {
            Error = WithoutNul(delivery.Error),
            ProviderMessageId = WithoutNul(delivery.ProviderMessageId)!,
            EventKey = WithoutNul(delivery.EventKey)!,
        };
        // A time after the event's arrival is a provider's clock running ahead, or a body made up:
        // it must not outrank everything recorded before that time comes (a delivery over any
        // later bounce, a WhatsApp choice over the practice's own later ones, an audit trail dated
        // 2100). The body's own time stays in webhook_events.
        var at = EffectiveTime(delivery.OccurredAt, receivedAt);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);

        long eventId;
        await using (var store = new NpgsqlCommand(StoreSql, connection, transaction))
        {
            store.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = provider });
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = delivery.EventKey });
            store.Parameters.Add(new NpgsqlParameter { Value = delivery.MarketingChoice is null ? delivery.ProviderMessageId : DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = delivery.IsResponse ? "RESPONSE" : delivery.CarriesStatus ? WireName<DeliveryStatus>.Of(delivery.Status) : delivery switch
            {
                { MarketingChoice.Stopped: true } => "MARKETING_STOPPED",
                { MarketingChoice.Stopped: false } => "MARKETING_RESUMED",
                { StopsGeneralUpdates: ProviderOptOuts.GeneralUpdatesStop.Complaint } => "COMPLAINED",
                { StopsGeneralUpdates: ProviderOptOuts.GeneralUpdatesStop.Unsubscribe } => "UNSUBSCRIBED",
                _ => throw new InvalidOperationException($"An event without a status that stops general updates for {delivery.StopsGeneralUpdates} has no name to be stored under."),
            } });
            store.Parameters.Add(new NpgsqlParameter { Value = (object?)delivery.OccurredAt?.ToUniversalTime() ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
            // Minimised: the report's statuses, codes and times, not the addresses and text in it.
            store.Parameters.Add(new NpgsqlParameter<string> { TypedValue = WebhookPayloads.Minimise(delivery.Payload) });
            // Masked as the payload is (a bounce's text quotes the address); the message's own error, applied now, is not.
            store.Parameters.Add(new NpgsqlParameter { Value = (object?)LogRedaction.Contacts(delivery.Error) ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            store.Parameters.Add(new NpgsqlParameter { Value = (object?)SignalOf(delivery) ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            if (await store.ExecuteScalarAsync(cancellationToken) is not long id)
            {
                return WebhookOutcome.Duplicate;
            }
            eventId = id;
        }

        if (delivery.MarketingChoice is { } choice)
        {
            // About a person, not a message: "unknown" when no customer of the company has that
            // number, "stale" when it changed none of them (the choice they already had, or one
            // the practice overrode later): kept for audit only.
            var (matched, changed) = await ProviderOptOuts.ApplyWhatsAppMarketingChoiceAsync(transaction, companyId, choice.WhatsAppId, choice.Stopped, at, receivedAt, cancellationToken);
            var choiceOutcome = matched == 0 ? WebhookOutcome.UnknownMessage : changed == 0 ? WebhookOutcome.Stale : WebhookOutcome.Applied;
            return await FinishAsync(connection, transaction, eventId, choiceOutcome, null, cancellationToken);
        }

        return await ApplyAsync(connection, transaction, eventId, companyId, provider, delivery, at, receivedAt, cancellationToken);
    }

    /// <summary>
    /// Applies the events stored as UNKNOWN_MESSAGE that name one of <paramref name="providerMessageIds"/>:
    /// the worker calls this once it has recorded those ids, as an event may arrive before that (a
    /// batch's outcomes are written together, seconds after the sends). Each in its own transaction,
    /// as on receipt; returns how many found their message.
    /// </summary>
    public async Task<int> ApplyWaitingAsync(IReadOnlyCollection<string> providerMessageIds, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(providerMessageIds);
        if (providerMessageIds.Count == 0)
        {
            return 0;
        }
        // As stored on the message and as webhooks name it (Mailgun's Message-Id without its angle brackets).
        string[] ids = [.. providerMessageIds.SelectMany(id => new[] { id, id.Trim('<', '>') }).Distinct(StringComparer.Ordinal)];
        var waiting = new List<long>();
        await using (var find = dataSource.CreateCommand(WaitingSql))
        {
            find.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = ids });
            await using var reader = await find.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                waiting.Add(reader.GetInt64(0));
            }
        }
        var found = 0;
        foreach (var eventId in waiting)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            Guid companyId;
            string provider;
            DeliveryEvent delivery;
            DateTimeOffset at, receivedAt;
            await using (var load = new NpgsqlCommand(WaitingEventSql, connection, transaction) { Parameters = { new NpgsqlParameter<long> { TypedValue = eventId } } })
            await using (var reader = await load.ExecuteReaderAsync(cancellationToken))
            {
                if (!await reader.ReadAsync(cancellationToken))
                {
                    continue;   // applied meanwhile (a redelivery, or another worker)
                }
                companyId = reader.GetGuid(0);
                provider = reader.GetString(1);
                receivedAt = reader.GetFieldValue<DateTimeOffset>(6);
                var occurredAt = reader.IsDBNull(5) ? (DateTimeOffset?)null : reader.GetFieldValue<DateTimeOffset>(5);
                at = EffectiveTime(occurredAt, receivedAt);
                delivery = Stored(reader.GetString(3), reader.GetString(4), occurredAt, reader.IsDBNull(7) ? null : reader.GetString(7),
                    reader.IsDBNull(8) ? null : reader.GetString(8), reader.GetString(2), reader.GetString(9));
                // Whether it was charged is read again from the provider's own words, as on receipt.
                delivery = delivery with
                {
                    Free = provider == "whatsapp" && !delivery.IsResponse && WhatsAppWebhook.Free(delivery.Payload),
                    ExpectedMessageId = provider == "mailgun" ? MailgunWebhook.ExpectedMessageId(delivery.Payload) : null,
                };
            }
            if (await ApplyAsync(connection, transaction, eventId, companyId, provider, delivery, at, receivedAt, cancellationToken) != WebhookOutcome.UnknownMessage)
            {
                found++;
            }
        }
        return found;
    }

    // The consent signal an event carries, as stored with it (migration 0023), and back.
    private static string? SignalOf(DeliveryEvent delivery) => delivery switch
    {
        { RecipientOptedOut: true } => "OPTED_OUT",
        { TransientFailure: true, AccountWide: true } => "TRANSIENT_ACCOUNT",
        { TransientFailure: true } => "TRANSIENT",
        { StopsGeneralUpdates: ProviderOptOuts.GeneralUpdatesStop.Complaint } => "COMPLAINT",
        { StopsGeneralUpdates: ProviderOptOuts.GeneralUpdatesStop.Unsubscribe } => "UNSUBSCRIBE",
        { StopsGeneralUpdates: ProviderOptOuts.GeneralUpdatesStop.WhatsAppMarketing } => "WHATSAPP_MARKETING",
        _ => null,
    };

    /// <summary>A stored event as it was received (its status column also names the events without a status).</summary>
    private static DeliveryEvent Stored(string providerMessageId, string status, DateTimeOffset? occurredAt, string? error, string? signal, string eventKey, string payload)
    {
        ProviderOptOuts.GeneralUpdatesStop? stops = signal switch
        {
            "COMPLAINT" => ProviderOptOuts.GeneralUpdatesStop.Complaint,
            "UNSUBSCRIBE" => ProviderOptOuts.GeneralUpdatesStop.Unsubscribe,
            "WHATSAPP_MARKETING" => ProviderOptOuts.GeneralUpdatesStop.WhatsAppMarketing,
            _ => null,
        };
        return status switch
        {
            "RESPONSE" => new DeliveryEvent(providerMessageId, DeliveryStatus.Sent, occurredAt, null, eventKey, payload) { IsResponse = true },
            "COMPLAINED" => DeliveryEvent.StoppingGeneralUpdates(ProviderOptOuts.GeneralUpdatesStop.Complaint, providerMessageId, occurredAt, eventKey, payload),
            "UNSUBSCRIBED" => DeliveryEvent.StoppingGeneralUpdates(ProviderOptOuts.GeneralUpdatesStop.Unsubscribe, providerMessageId, occurredAt, eventKey, payload),
            _ => new DeliveryEvent(providerMessageId, WireName<DeliveryStatus>.Parse(status), occurredAt, error, eventKey, payload)
            {
                RecipientOptedOut = signal == "OPTED_OUT",
                TransientFailure = signal is "TRANSIENT" or "TRANSIENT_ACCOUNT",
                AccountWide = signal == "TRANSIENT_ACCOUNT",
                StopsGeneralUpdates = stops,
            },
        };
    }

    private static string? WithoutNul(string? text) =>
        text?.Contains('\0', StringComparison.Ordinal) == true ? text.Replace("\0", "", StringComparison.Ordinal) : text;

    /// <summary>Moves the event's message (forward only), applies the consent it carries, records the outcome and commits.</summary>
    private async Task<WebhookOutcome> ApplyAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, long eventId, Guid companyId, string provider, DeliveryEvent delivery, DateTimeOffset at, DateTimeOffset receivedAt, CancellationToken cancellationToken)
    {
        if (delivery is { TransientFailure: true, Status: DeliveryStatus.Failed, CarriesStatus: true, IsResponse: false }
            && await RequeueAsync(transaction, companyId, provider, delivery, at, cancellationToken) is { } requeued)
        {
            return await FinishAsync(connection, transaction, eventId, WebhookOutcome.Applied, requeued, cancellationToken);
        }

        long? messageId = null;
        var advanced = false;
        string? previous = null;
        await using (var apply = new NpgsqlCommand(delivery.IsResponse ? ResponseSql : !delivery.CarriesStatus ? ComplaintSql : ApplySql, connection, transaction))
        {
            apply.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            apply.Parameters.Add(new NpgsqlParameter<string> { TypedValue = delivery.ProviderMessageId });
            if (delivery.IsResponse)
            {
                apply.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = at });
            }
            else if (delivery.CarriesStatus)
            {
                apply.Parameters.Add(new NpgsqlParameter<string> { TypedValue = WireName<DeliveryStatus>.Of(delivery.Status) });
                apply.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = at });
                apply.Parameters.Add(new NpgsqlParameter { Value = (object?)delivery.Error ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            }
            apply.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = SendingProviders(provider) });
            if (!delivery.IsResponse)
            {
                apply.Parameters.Add(new NpgsqlParameter { Value = (object?)delivery.ExpectedMessageId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
            }
            await using var reader = await apply.ExecuteReaderAsync(cancellationToken);
            if (await reader.ReadAsync(cancellationToken))
            {
                messageId = reader.GetInt64(0);
                advanced = !reader.IsDBNull(1) && reader.GetBoolean(1);
                previous = reader.FieldCount > 2 ? reader.GetString(2) : null;
            }
        }

        // A failure that did not move the message (it was delivered already) is not believed about the charge either.
        var charge = messageId is null ? null
            : delivery.Free && (advanced || delivery.Status != DeliveryStatus.Failed) ? FreeSql
            : advanced && previous == "FAILED" && delivery.Status is DeliveryStatus.Delivered or DeliveryStatus.Read ? ChargedAfterAllSql
            : null;
        if (charge is not null)
        {
            await using var command = new NpgsqlCommand(charge, connection, transaction);
            command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = messageId!.Value });
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        if (messageId is { } stopped && (delivery.RecipientOptedOut || delivery.StopsGeneralUpdates is not null))
        {
            ProviderOptOuts.Signal[] signal = [new(companyId, stopped, provider.ToUpperInvariant(), at)];
            await (delivery.StopsGeneralUpdates is { } reason
                ? ProviderOptOuts.StopGeneralUpdatesAsync(transaction, signal, reason, receivedAt, cancellationToken)
                : ProviderOptOuts.WithdrawAsync(transaction, signal, receivedAt, cancellationToken));
        }

        var outcome = messageId is null ? WebhookOutcome.UnknownMessage : advanced ? WebhookOutcome.Applied : WebhookOutcome.Stale;
        return await FinishAsync(connection, transaction, eventId, outcome, messageId, cancellationToken);
    }

    /// <summary>
    /// Sends again a message whose send the provider reports failed for a temporary reason, when it
    /// is still SENT and has a retry left: its id, or null to apply the failure as any other (a
    /// message no longer SENT, or out of retries, which fails as it always did).
    /// </summary>
    private async Task<long?> RequeueAsync(NpgsqlTransaction transaction, Guid companyId, string provider, DeliveryEvent delivery, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var connection = transaction.Connection!;
        long id;
        int retry, attemptNo;
        string channel;
        string? providerName;
        int maxRetries;
        int outageAttempt;
        await using (var find = new NpgsqlCommand(RequeueTargetSql, connection, transaction))
        {
            find.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            find.Parameters.Add(new NpgsqlParameter<string> { TypedValue = delivery.ProviderMessageId });
            find.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = SendingProviders(provider) });
            find.Parameters.Add(new NpgsqlParameter { Value = (object?)delivery.ExpectedMessageId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
            await using var reader = await find.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken))
            {
                return null;
            }
            id = reader.GetInt64(0);
            // Read as the worker reads them: a SQL producer's max_retries above the limit is the
            // limit, and an absurd retry_count does not overflow.
            retry = Math.Clamp(reader.GetInt32(1), 0, int.MaxValue - 1) + 1;
            maxRetries = Math.Clamp(reader.GetInt32(2), 0, CommunicationLog.MaxRetriesLimit);
            attemptNo = reader.GetInt32(3);
            channel = reader.GetString(4);
            providerName = reader.IsDBNull(5) ? null : reader.GetString(5);
            outageAttempt = Math.Clamp(reader.GetInt32(6), 0, int.MaxValue - 1) + 1;
        }
        // The account's condition (a throughput or spam limit, an empty wallet, a payment problem)
        // is waited out as a send-time outage is, on the outage budget and using up no retry: a few
        // retries would all fail within minutes while it lasts. Past the budget, each spends a retry.
        var waitsOut = delivery.AccountWide && outageAttempt <= retryBackoff.OutageRetries;
        if (waitsOut)
        {
            retry--;
        }
        else if (retry > maxRetries)
        {
            return null;
        }
        else if (!delivery.AccountWide)
        {
            outageAttempt--;
        }

        // Meta does not charge a failed message: the send's cost is waived first, as for a final failure.
        if (delivery.Free)
        {
            await using var free = new NpgsqlCommand(FreeSql, connection, transaction);
            free.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            free.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
            await free.ExecuteNonQueryAsync(cancellationToken);
        }
        var error = delivery.Error ?? "the provider reported a temporary failure";
        await using (var attempt = new NpgsqlCommand(ReportedAttemptSql, connection, transaction))
        {
            attempt.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            attempt.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
            attempt.Parameters.Add(new NpgsqlParameter<int> { TypedValue = attemptNo });
            attempt.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = at });
            attempt.Parameters.Add(new NpgsqlParameter<string> { TypedValue = channel });
            attempt.Parameters.Add(new NpgsqlParameter { Value = (object?)providerName ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text });
            attempt.Parameters.Add(new NpgsqlParameter<string> { TypedValue = $"reported after the send: {error}" });
            await attempt.ExecuteNonQueryAsync(cancellationToken);
        }
        var next = clock.GetUtcNow() + (waitsOut ? retryBackoff.OutageDelay(outageAttempt) : retryBackoff.Delay(retry));
        await using (var requeue = new NpgsqlCommand(RequeueSql, connection, transaction))
        {
            requeue.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            requeue.Parameters.Add(new NpgsqlParameter<long> { TypedValue = id });
            requeue.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = next });
            requeue.Parameters.Add(new NpgsqlParameter<int> { TypedValue = retry });
            requeue.Parameters.Add(new NpgsqlParameter<string> { TypedValue = error });
            var how = waitsOut
                ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"waiting out the account's condition ({outageAttempt} of {retryBackoff.OutageRetries} attempts that use up no retries)")
                : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"retry {retry} of {maxRetries}");
            requeue.Parameters.Add(new NpgsqlParameter<string> { TypedValue = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"the provider reported after taking it that the send failed for a temporary reason ({error}); sent again: {how} at {next.UtcDateTime:u}") });
            requeue.Parameters.Add(new NpgsqlParameter<int> { TypedValue = outageAttempt });
            await requeue.ExecuteNonQueryAsync(cancellationToken);
        }
        return id;
    }

    /// <summary>Records the event's outcome and commits.</summary>
    private static async Task<WebhookOutcome> FinishAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, long eventId, WebhookOutcome outcome, long? messageId, CancellationToken cancellationToken)
    {
        await using (var record = new NpgsqlCommand(OutcomeSql, connection, transaction))
        {
            record.Parameters.Add(new NpgsqlParameter<long> { TypedValue = eventId });
            record.Parameters.Add(new NpgsqlParameter<string> { TypedValue = outcome switch
            {
                WebhookOutcome.Applied => "APPLIED",
                WebhookOutcome.Stale => "STALE",
                _ => "UNKNOWN_MESSAGE",
            } });
            record.Parameters.Add(new NpgsqlParameter { Value = (object?)messageId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
            await record.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return outcome;
    }
}
