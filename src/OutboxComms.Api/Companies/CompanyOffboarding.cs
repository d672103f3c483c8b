using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Caching.Memory;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Data;

namespace OutboxComms.Api.Companies;

public static partial class CompanyEndpoints
{
    /// <summary>What a deactivation changed (all zero when it was deactivated already).</summary>
    public sealed record DeactivationResponse(Guid CompanyId, DateTimeOffset DeactivatedAt, int KeysRevoked, int MessagesCancelled, int ReminderStepsCancelled, int SchedulesDisabled);

    // $1 company, $2 now. Messages a worker holds (their lease running) are being sent and are
    // recorded as they end; anything a SQL producer still writes is cancelled by the worker, which
    // sends nothing for a deactivated company (MessageDispatcher), whatever its channel settings say.
    private const string DeactivateSql = """
        WITH keys AS (
            UPDATE api_keys SET revoked_at = $2 WHERE company_id = $1 AND revoked_at IS NULL RETURNING key_hash),
        settings AS (
            UPDATE company_settings SET email_enabled = false, whatsapp_enabled = false, sms_enabled = false, updated_at = $2
             WHERE company_id = $1 AND (email_enabled OR whatsapp_enabled OR sms_enabled) RETURNING 1),
        schedules AS (
            UPDATE company_schedules SET enabled = false, next_occurrence_at = NULL, updated_at = $2 WHERE company_id = $1 AND enabled RETURNING 1),
        steps AS (
            UPDATE reminder_steps s SET state = 'CANCELLED', state_reason = 'cancelled: the company was deactivated', processed_at = $2
              FROM reminders r WHERE r.id = s.reminder_id AND r.company_id = $1 AND s.state = 'SCHEDULED' RETURNING 1),
        messages AS (
            UPDATE communication_logs SET status = 'CANCELLED', status_reason = 'cancelled: the company was deactivated', updated_at = $2,
                   locked_by = NULL, locked_until = NULL
             WHERE company_id = $1 AND status = 'PENDING' AND (locked_until IS NULL OR locked_until <= $2) RETURNING 1)
        SELECT key_hash, (SELECT count(*) FROM messages)::int, (SELECT count(*) FROM steps)::int, (SELECT count(*) FROM schedules)::int
          FROM (SELECT key_hash FROM keys UNION ALL SELECT NULL) k
        """;

    /// <summary>
    /// The first step of offboarding a practice (the admin's): its API keys are revoked, its email,
    /// WhatsApp and SMS switched off, its schedules disabled, its pending messages and reminder
    /// steps cancelled. Its history — messages, consent records, costs — stays, for the practice's
    /// export and the operator's accounts, until the worker's <c>purge-company</c> deletes it. Export
    /// the consent records first (<c>GET /v1/consents/export</c>): afterwards the company has no key.
    /// Deactivating again revokes and cancels whatever appeared since, and answers the first time.
    /// </summary>
    internal static async Task<Results<Ok<DeactivationResponse>, ProblemHttpResult>> Deactivate(
        Guid id, OutboxDbContext db, IMemoryCache cache, TimeProvider time, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // Locked: an admin's key creation for the company waits, then is refused.
        var company = await db.Companies.FromSql($"SELECT * FROM companies WHERE id = {id} FOR NO KEY UPDATE").SingleOrDefaultAsync(cancellationToken);
        if (company is null)
        {
            return Problems.NotFound($"Company {id}");
        }
        var now = time.GetUtcNow();
        company.DeactivatedAt ??= now;
        company.UpdatedAt = now;
        await db.SaveChangesAsync(cancellationToken);
        var revoked = new List<byte[]>();
        int messages = 0, steps = 0, schedules = 0;
        await using (var command = new NpgsqlCommand(DeactivateSql, (NpgsqlConnection)db.Database.GetDbConnection(), (NpgsqlTransaction)transaction.GetDbTransaction()))
        {
            command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = id });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                if (!reader.IsDBNull(0))
                {
                    revoked.Add(reader.GetFieldValue<byte[]>(0));
                }
                (messages, steps, schedules) = (reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3));
            }
        }
        await transaction.CommitAsync(cancellationToken);
        foreach (var hash in revoked)
        {
            ApiKeyAuthenticationHandler.Forget(cache, hash);
        }
        return TypedResults.Ok(new DeactivationResponse(id, company.DeactivatedAt.Value, revoked.Count, messages, steps, schedules));
    }

    /// <summary>
    /// Lifts a deactivation (a practice that stays after all, or one deactivated by mistake): the
    /// admin may then give it a key. Nothing the deactivation did is undone — the practice switches
    /// its channels and schedules on again, and sends anew what was cancelled.
    /// </summary>
    internal static async Task<Results<Ok<CompanyResponse>, ProblemHttpResult>> Reactivate(Guid id, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var company = await db.Companies.FromSql($"SELECT * FROM companies WHERE id = {id} FOR NO KEY UPDATE").SingleOrDefaultAsync(cancellationToken);
        if (company is null)
        {
            return Problems.NotFound($"Company {id}");
        }
        if (company.DeactivatedAt is not null)
        {
            company.DeactivatedAt = null;
            company.UpdatedAt = time.GetUtcNow();
            await db.SaveChangesAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return TypedResults.Ok(ToResponse(company));
    }
}
