using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Api.Customers;

public static partial class CustomerEndpoints
{
    public const string ErasedName = "(erased)";

    /// <summary>What an erasure removed: the messages whose content it cleared, and the files and provider reports it deleted.</summary>
    public sealed record ErasureResponse(Guid CustomerId, DateTimeOffset ErasedAt, int Messages, int Attachments, int WebhookEvents);

    // The customer's messages (by our id, or by their externalId on a SQL producer's row that named
    // only that), scanned through the company's key; each then names the customer by our id alone. Cleared: subjects, bodies, template data, error
    // texts that quote addresses, the producer's metadata except the scheduler's own keys, the
    // provider's message id (a later report about it then matches nothing, and unmatched reports
    // are deleted within a day: Webhooks:UnmatchedRetentionHours); deleted:
    // their files and the providers' reports about them. Kept: each message's type, channel, status,
    // times, provider and cost (the practice's accounts), and the customer's consent records.
    private static readonly string EraseSql = $$"""
        WITH msgs AS MATERIALIZED (
            SELECT id, provider_message_id FROM communication_logs
             WHERE company_id = $1 AND (customer_id = $2 OR (customer_id IS NULL AND customer_external_id = $3))),
        logs AS (
            UPDATE communication_logs m
               SET customer_id = $2, customer_external_id = NULL, provider_message_id = NULL,
                   -- A producer's own key may hold the client code; the scheduler's name only our ids.
                   idempotency_key = CASE WHEN m.idempotency_key IS NULL OR m.idempotency_key LIKE 'reminder-step:%' OR m.idempotency_key LIKE 'schedule:%'
                                             OR m.idempotency_key LIKE 'erased:%'
                                          THEN m.idempotency_key ELSE 'erased:' || md5(m.idempotency_key) END,
                   {{MessageRedaction.ContentSet}},
                   status = CASE WHEN m.status = 'PENDING' THEN 'CANCELLED' ELSE m.status END,
                   status_reason = CASE WHEN m.status = 'PENDING' THEN 'cancelled: the customer was erased at their request'
                                        WHEN m.updated_at = $4 THEN m.status_reason   -- the second pass: as the first left it
                                        ELSE 'content erased at the customer''s request' END,
                   locked_by = NULL, locked_until = NULL, updated_at = $4
             WHERE m.company_id = $1 AND m.id IN (SELECT id FROM msgs)
            RETURNING 1),
        {{MessageRedaction.RelatedRows("msgs")}},
        files AS (
            DELETE FROM communication_attachments f
             WHERE f.message_id IN (SELECT id FROM msgs) AND (f.company_id IS NULL OR f.company_id = $1) RETURNING 1),
        events AS (
            DELETE FROM webhook_events w
             WHERE w.company_id = $1 AND (w.message_id IN (SELECT id FROM msgs)
                   OR w.provider_message_id IN (SELECT provider_message_id FROM msgs WHERE provider_message_id IS NOT NULL)
                   -- Their WhatsApp marketing choices, which name a number, not a message (by its hash, or as stored before it was hashed).
                   OR (w.provider = 'whatsapp' AND w.event_key LIKE ANY ($5))) RETURNING 1),
        -- The API's idempotency keys of single sends to them: a key's text may be the client code
        -- ("invoice-ABCDE1234F-42"). A retry with one then finds no customer, and sends nothing. A bulk
        -- request's key (many customers) stays, until Api:IdempotencyKeyRetentionDays.
        keys AS (
            DELETE FROM idempotency_keys k
             WHERE k.company_id = $1 AND jsonb_typeof(k.response -> 'messages') = 'array'
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(k.response -> 'messages') e
                            WHERE e ->> 'id' ~ '^[0-9]{1,18}$' AND (e ->> 'id')::bigint IN (SELECT id FROM msgs))
            RETURNING 1),
        reminders AS (
            UPDATE reminders r SET template_data = '{}', resolution_note = NULL, reference = 'erased reminder ' || r.id
             WHERE r.company_id = $1 AND r.customer_id = $2 RETURNING r.id),
        steps AS (
            UPDATE reminder_steps s SET template_data = '{}' WHERE s.reminder_id IN (SELECT id FROM reminders) RETURNING 1)
        SELECT (SELECT count(*) FROM logs)::int, (SELECT count(*) FROM files)::int, (SELECT count(*) FROM events)::int,
               (SELECT count(*) FROM attempts) + (SELECT count(*) FROM replays) + (SELECT count(*) FROM steps) + (SELECT count(*) FROM keys)
        """;

    /// <summary>
    /// Erases a customer at their request (India's DPDP Act: a data principal's erasure): a live or
    /// deleted customer's name and contacts, and the personal content of their messages, files and
    /// provider reports; what the practice must keep stays — consent records and preferences (the
    /// evidence of what was agreed), and each message's type, channel, status, times and cost. The
    /// customer is deleted and can never be restored; pending messages are cancelled. Refused with
    /// 409 while one of their messages is being sent (its outcome would write its text back): retry
    /// a minute later. Erasing again answers the first erasure.
    /// </summary>
    internal static async Task<Results<Ok<ErasureResponse>, ProblemHttpResult>> Erase(
        string id, Tenant tenant, OutboxDbContext db, TimeProvider time, Core.Webhooks.WebhookEventKeys eventKeys, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // Live or deleted. Locked: a PUT, restore or import waits.
        var customer = await LockAsync(db, tenant, id, deletedOnly: false, cancellationToken);
        if (customer is null)
        {
            return NotFound(id);
        }
        var now = time.GetUtcNow();
        if (customer.ErasedAt is { } erasedAt)
        {
            return TypedResults.Ok(new ErasureResponse(customer.Id, erasedAt, 0, 0, 0));
        }
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        var npgsqlTransaction = (NpgsqlTransaction)transaction.GetDbTransaction();
        // The customer's rows locked first (in id order), so no worker claims one meanwhile (the claim
        // skips locked rows); one already claimed and being sent is a 409.
        await using (var sending = Command("""
            SELECT count(*) FILTER (WHERE status = 'PENDING' AND locked_until > $4) FROM (
                SELECT status, locked_until FROM communication_logs
                 WHERE company_id = $1 AND (customer_id = $2 OR (customer_id IS NULL AND customer_external_id = $3))
                 ORDER BY id FOR UPDATE) mine
            """))
        {
            if (await sending.ExecuteScalarAsync(cancellationToken) is > 0L)
            {
                return Problems.Conflict($"A message to customer '{id}' is being sent right now; erase again in a minute, once it is recorded.");
            }
        }
        // Twice: the second statement's snapshot also sees a row another transaction committed while
        // the first ran (an API send, a reminder step queued, a BOTH split). The second pass clears
        // the same rows again, so the counts are the first pass's plus what only the second found.
        int messages = 0, attachments = 0, events = 0;
        for (var pass = 0; pass < 2; pass++)
        {
            await using var erase = Command(EraseSql);
            await using var reader = await erase.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            messages = Math.Max(messages, reader.GetInt32(0));
            attachments += reader.GetInt32(1);
            events += reader.GetInt32(2);
        }
        // The externalId goes too (a client code may be a PAN): the messages now name the erased
        // customer by our id, and a returning client can be created again with their code.
        customer.Name = ErasedName;
        customer.ExternalId = null;
        customer.Email = customer.Phone = customer.WhatsAppNumber = null;
        customer.DeletedAt ??= now;
        customer.ErasedAt = now;
        customer.UpdatedAt = now;
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return TypedResults.Ok(new ErasureResponse(customer.Id, now, messages, attachments, events));

        // $1 company, $2 customer, $3 their externalId (before it goes), $4 now, $5 the keys of their WhatsApp marketing choices.
        NpgsqlCommand Command(string sql) => new(sql, connection, npgsqlTransaction)
        {
            Parameters =
            {
                new NpgsqlParameter<Guid> { TypedValue = tenant.CompanyId },
                new NpgsqlParameter<Guid> { TypedValue = customer.Id },
                new NpgsqlParameter { Value = (object?)customer.ExternalId ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Text },
                new NpgsqlParameter<DateTimeOffset> { TypedValue = now },
                new NpgsqlParameter<string[]> { TypedValue = MarketingKeys(eventKeys, string.IsNullOrEmpty(customer.WhatsAppNumber) ? customer.Phone : customer.WhatsAppNumber) },
            },
        };
    }

    /// <summary>
    /// LIKE patterns of the event keys of the WhatsApp marketing choices that matched the customer:
    /// by their WhatsApp number or, without one, their phone (as the choice was matched), its
    /// wa_id being the number's digits — an international number's as written (+ or 00 dropped), a
    /// national one's with India's 91 before it. Under every key a stored event may carry it (<see cref="Core.Webhooks.WebhookEventKeys.EveryPart"/>).
    /// </summary>
    private static string[] MarketingKeys(Core.Webhooks.WebhookEventKeys eventKeys, params string?[] numbers)
    {
        var keys = new List<string>();
        foreach (var number in numbers.Where(n => !string.IsNullOrWhiteSpace(n)).Select(n => n!.Trim()))
        {
            var digits = new string(number.Where(char.IsAsciiDigit).ToArray());
            var waIds = number.StartsWith('+') ? [digits]
                : digits.StartsWith("00", StringComparison.Ordinal) ? [digits[2..]]
                : new[] { digits, "91" + digits.TrimStart('0') };
            foreach (var waId in waIds.Where(w => w.Length > 0))
            {
                keys.AddRange(eventKeys.EveryPart(waId).Select(part => $"marketing:{part}:%"));
            }
        }
        return [.. keys.Distinct(StringComparer.Ordinal)];
    }
}
