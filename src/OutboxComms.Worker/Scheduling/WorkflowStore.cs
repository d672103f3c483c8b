using System.Globalization;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using OutboxComms.Core.Data;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Worker.Scheduling;

/// <summary>A reminder step whose time has come, as the claim returns it.</summary>
internal sealed record DueStep(
    long Id,
    long ReminderId,
    DateTimeOffset FireAt,
    ReminderStatus ReminderStatus,
    bool CustomerDeleted,
    bool LaterStepDue,
    DateOnly DueDate,
    int GraceDays,
    DateTimeOffset GraceEndsAt,
    DateTimeOffset DueAt,
    int OffsetDays)
{
    /// <summary>
    /// A notice before the deadline (due date − n, or on it): its news ("due tomorrow", "due today")
    /// holds until the due date ends. Told by the step's day, not by comparing instants: the steps
    /// keep the customer's clock and the deadline the company's, so a Sydney client's overdue
    /// notice at 05:00 on the day after still comes before midnight in India.
    /// </summary>
    public bool BeforeDeadline => OffsetDays <= 0;
}

/// <summary>What becomes of a due step: QUEUED (an outbox row), SKIPPED or CANCELLED, and why.</summary>
internal sealed record StepDecision(StepState State, string? Reason);

/// <summary>A schedule whose next occurrence has come, as the claim returns it (zone already defaulted to the company's).</summary>
internal sealed record DueSchedule(
    Guid CompanyId,
    string Key,
    string Cron,
    string TimeZone,
    string Type,
    string Channel,
    string TemplateKey,
    string TemplateData,
    ScheduleAudience Audience,
    int? AudienceDays,
    DateTimeOffset NextOccurrenceAt);

/// <summary>
/// What one claimed schedule does now: materialise one occurrence (with a note when it is a late
/// catch-up), record the missed ones as skipped, and move on to <see cref="Next"/>.
/// </summary>
internal sealed record SchedulePlan(DateTimeOffset? Materialise, string? MaterialiseNote, DateTimeOffset? SkipAt, string? SkipReason, DateTimeOffset? Next, TimeZoneInfo Zone);

internal readonly record struct StepCounts(int Claimed, int Queued, int Skipped, int Cancelled)
{
    public static StepCounts operator +(StepCounts a, StepCounts b) =>
        new(a.Claimed + b.Claimed, a.Queued + b.Queued, a.Skipped + b.Skipped, a.Cancelled + b.Cancelled);
}

/// <summary>
/// The scheduler's SQL, in one place, on Npgsql directly (a catch-up after downtime may process
/// thousands of steps; one claim and one batched write per batch).
///
/// Exactly once, with any number of workers: due steps and schedules are claimed
/// <c>FOR UPDATE SKIP LOCKED</c> and changed in the same transaction that inserts their outbox
/// rows, so no two workers process the same one; and every outbox row carries a unique
/// <c>idempotency_key</c> per occurrence (<c>reminder-step:&lt;id&gt;</c>,
/// <c>schedule:&lt;key&gt;:&lt;occurrence&gt;:&lt;customer&gt;</c>) inserted with
/// <c>ON CONFLICT DO NOTHING</c>, so even a step or occurrence processed twice (a restored backup,
/// a hand-edited state) cannot produce a second message.
/// </summary>
internal sealed class WorkflowStore(NpgsqlDataSource dataSource)
{
    // "Later step due": a later step of the same reminder is due too (or already went), which makes
    // a missed earlier step pointless. Positions follow fire times.
    private const string ClaimStepsSql = """
        SELECT s.id, s.reminder_id, s.fire_at, r.status, c.deleted_at IS NOT NULL,
               EXISTS (SELECT 1 FROM reminder_steps later
                        WHERE later.reminder_id = s.reminder_id AND later.position > s.position
                          AND later.state IN ('SCHEDULED', 'QUEUED') AND later.fire_at <= $1),
               r.due_date, r.grace_days, r.grace_ends_at, r.due_at, s.offset_days
          FROM reminder_steps s
          JOIN reminders r ON r.id = s.reminder_id
          JOIN customers c ON c.id = r.customer_id
         WHERE s.state = 'SCHEDULED' AND s.fire_at <= $1
         ORDER BY s.fire_at, s.id
         LIMIT $2
         FOR UPDATE OF s SKIP LOCKED
        """;

    // An ordinary outbox row, so consent, quiet hours and frequency apply at dispatch. The template
    // sees the reminder's data, the step's data over it, and `reminder.*` (reference, due date, …).
    // A step meant for before the due date, or on it, expires when the due date ends (grace is for
    // overdue notices; see DueStep.BeforeDeadline): deferred past that (quiet hours, frequency),
    // "due tomorrow" would be wrong, so dispatch cancels it with the reason.
    private const string QueueStepsSql = """
        INSERT INTO communication_logs (company_id, customer_id, type, channel, template_key, template_data, metadata,
                                        idempotency_key, next_attempt_at, expires_at)
        SELECT r.company_id, r.customer_id, r.type, s.channel, s.template_key,
               r.template_data || s.template_data || jsonb_build_object('reminder', jsonb_build_object(
                   'id', r.id, 'reference', r.reference, 'type', r.type, 'dueDate', r.due_date, 'offsetDays', s.offset_days,
                   'step', s.position, 'calendarKey', r.calendar_key, 'financialYear', r.financial_year)),
               jsonb_build_object('reminderId', r.id, 'reminderStepId', s.id),
               'reminder-step:' || s.id, $2,
               CASE WHEN s.offset_days <= 0 THEN r.due_at END
          FROM reminder_steps s JOIN reminders r ON r.id = s.reminder_id
         WHERE s.id = ANY($1)
        ON CONFLICT DO NOTHING
        """;

    private const string RecordStepsSql = """
        UPDATE reminder_steps s
           SET state = u.state, state_reason = coalesce(u.reason, s.state_reason), processed_at = $1,   -- a queued step keeps its plan's note ("moved to …")
               message_id = (SELECT m.id FROM communication_logs m
                              WHERE m.company_id = r.company_id AND m.idempotency_key = 'reminder-step:' || s.id)
          FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(id, state, reason), reminders r
         WHERE s.id = u.id AND r.id = s.reminder_id
        """;

    private const string ClaimSchedulesSql = """
        SELECT s.company_id, s.key, s.cron, coalesce(s.time_zone, c.time_zone), s.type, s.channel, s.template_key,
               s.template_data::text, s.audience, s.audience_days, s.next_occurrence_at
          FROM company_schedules s JOIN companies c ON c.id = s.company_id
         WHERE s.enabled AND s.next_occurrence_at <= $1 AND c.deactivated_at IS NULL
         ORDER BY s.next_occurrence_at
         LIMIT $2
         FOR UPDATE OF s SKIP LOCKED
        """;

    // One outbox row per customer of the audience, and the run that records it, in one statement.
    // dueReminders (when the schedule looks ahead) lists the customer's active reminders due from
    // the occurrence's local date to that + audience_days, and those already overdue whose grace
    // has not ended (overdue: true; the most urgent, not to be left out of the list). Overdue is
    // the reminder's own deadline (due_at, the company's midnight), whatever the schedule's zone. Each message expires at the schedule's
    // next occurrence ($16), which supersedes it: a digest that reminder frequency or quiet hours
    // hold past that is cancelled, not sent beside (or after) its successor; without this a weekly
    // digest to a MONTHLY customer piled up one more pending digest every week.
    private const string MaterialiseOccurrenceSql = """
        WITH sent AS (
            INSERT INTO communication_logs (company_id, customer_id, type, channel, template_key, template_data, metadata,
                                            idempotency_key, next_attempt_at, expires_at)
            SELECT c.company_id, c.id, $2, $3, $4,
                   $5::jsonb || jsonb_build_object('schedule', $6::jsonb)
                             || CASE WHEN $7::int IS NULL THEN '{}'::jsonb
                                     ELSE jsonb_build_object('dueReminders', coalesce(d.items, '[]'::jsonb)) END,
                   jsonb_build_object('scheduleKey', $13::text, 'occurrence', $14::timestamptz),
                   $11 || c.id::text, $12, $16
              FROM customers c
              LEFT JOIN LATERAL (
                   SELECT jsonb_agg(jsonb_build_object('reminderId', r.id, 'reference', r.reference, 'type', r.type, 'dueDate', r.due_date,
                                                       'overdue', r.due_at <= $14)
                                    ORDER BY r.due_date, r.id) AS items
                     FROM reminders r
                    WHERE r.customer_id = c.id AND r.status = 'ACTIVE' AND r.due_date <= $9
                      AND (r.due_at > $14 OR r.grace_ends_at > $14)) d ON $7::int IS NOT NULL
             WHERE c.company_id = $1 AND c.deleted_at IS NULL AND ($10 = 'ALL_CUSTOMERS' OR d.items IS NOT NULL)
            ON CONFLICT DO NOTHING
            RETURNING 1)
        INSERT INTO schedule_runs (company_id, schedule_key, occurrence_at, outcome, reason, message_count, recorded_at)
        SELECT $1, $13, $14, 'MATERIALISED', $15, count(*), $12 FROM sent
        ON CONFLICT DO NOTHING
        RETURNING message_count
        """;

    private const string SkipOccurrenceSql = """
        INSERT INTO schedule_runs (company_id, schedule_key, occurrence_at, outcome, reason, recorded_at)
        VALUES ($1, $2, $3, 'SKIPPED', $4, $5)
        ON CONFLICT DO NOTHING
        """;

    private const string AdvanceScheduleSql = """
        UPDATE company_schedules
           SET next_occurrence_at = $3, last_occurrence_at = coalesce($4, last_occurrence_at)
         WHERE company_id = $1 AND key = $2
        """;

    /// <summary>Claims up to <paramref name="limit"/> due steps and turns each into what <paramref name="decide"/> says, in one transaction.</summary>
    public async Task<StepCounts> MaterialiseDueStepsAsync(DateTimeOffset now, int limit, Func<DueStep, StepDecision> decide, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var due = new List<DueStep>();
        await using (var claim = new NpgsqlCommand(ClaimStepsSql, connection, transaction))
        {
            claim.Parameters.Add(Value(now.ToUniversalTime()));
            claim.Parameters.Add(Value(limit));
            await using var reader = await claim.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                due.Add(new DueStep(
                    reader.GetInt64(0), reader.GetInt64(1), reader.GetFieldValue<DateTimeOffset>(2),
                    WireName<ReminderStatus>.Parse(reader.GetString(3)), reader.GetBoolean(4), reader.GetBoolean(5),
                    reader.GetFieldValue<DateOnly>(6), reader.GetInt32(7), reader.GetFieldValue<DateTimeOffset>(8), reader.GetFieldValue<DateTimeOffset>(9), reader.GetInt32(10)));
            }
        }
        if (due.Count == 0)
        {
            return default;
        }

        var decided = due.Select(step => (Step: step, Decision: decide(step))).ToList();
        var queued = decided.Where(d => d.Decision.State == StepState.Queued).Select(d => d.Step.Id).ToArray();
        await using var batch = new NpgsqlBatch(connection, transaction);
        if (queued.Length > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(QueueStepsSql) { Parameters = { Value(queued), Value(now.ToUniversalTime()) } });
        }
        batch.BatchCommands.Add(new NpgsqlBatchCommand(RecordStepsSql)
        {
            Parameters =
            {
                Value(now.ToUniversalTime()),
                Value(decided.Select(d => d.Step.Id).ToArray()),
                Value(decided.Select(d => WireName<StepState>.Of(d.Decision.State)).ToArray()),
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = decided.Select(d => d.Decision.Reason).ToArray() },
            },
        });
        await batch.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return new StepCounts(
            due.Count,
            queued.Length,
            decided.Count(d => d.Decision.State == StepState.Skipped),
            decided.Count(d => d.Decision.State == StepState.Cancelled));
    }

    /// <summary>
    /// Claims up to <paramref name="limit"/> due schedules and, for each, records what
    /// <paramref name="plan"/> says and advances it, in one transaction. Calls
    /// <paramref name="report"/> with each schedule, its plan and how many messages it produced.
    /// </summary>
    /// <remarks>
    /// Each schedule works under a savepoint: one whose statements fail (a data error, a timeout
    /// on a large audience) is rolled back alone, reported through <paramref name="failed"/> and
    /// left due, to be tried again next pass (and skipped by the catch-up rules once too old);
    /// the other schedules of the batch, other practices' included, go on.
    /// </remarks>
    public async Task<(int Claimed, int Failed)> MaterialiseDueSchedulesAsync(
        DateTimeOffset now, int limit, Func<DueSchedule, SchedulePlan> plan, Action<DueSchedule, SchedulePlan, int> report,
        Action<DueSchedule, Exception> failed, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var due = new List<DueSchedule>();
        await using (var claim = new NpgsqlCommand(ClaimSchedulesSql, connection, transaction))
        {
            claim.Parameters.Add(Value(now.ToUniversalTime()));
            claim.Parameters.Add(Value(limit));
            await using var reader = await claim.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                due.Add(new DueSchedule(
                    reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4),
                    reader.GetString(5), reader.GetString(6), reader.GetString(7), WireName<ScheduleAudience>.Parse(reader.GetString(8)),
                    reader.IsDBNull(9) ? null : reader.GetInt32(9), reader.GetFieldValue<DateTimeOffset>(10)));
            }
        }

        var outcomes = new List<(DueSchedule, SchedulePlan, int)>();
        var failures = new List<(DueSchedule, Exception)>();
        foreach (var schedule in due)
        {
            await transaction.SaveAsync("schedule", cancellationToken);
            try
            {
                outcomes.Add(await MaterialiseAsync(schedule));
            }
            catch (NpgsqlException ex) when (connection.FullState == System.Data.ConnectionState.Open)
            {
                // A PostgreSQL error, or a statement timeout on a large audience; a broken connection is the batch's.
                await transaction.RollbackAsync("schedule", cancellationToken);
                failures.Add((schedule, ex));
            }
        }
        await transaction.CommitAsync(cancellationToken);
        foreach (var (schedule, decided, messages) in outcomes)
        {
            report(schedule, decided, messages);
        }
        foreach (var (schedule, exception) in failures)
        {
            failed(schedule, exception);
        }
        return (due.Count, failures.Count);

        async Task<(DueSchedule, SchedulePlan, int)> MaterialiseAsync(DueSchedule schedule)
        {
            var decided = plan(schedule);
            if (decided.SkipAt is { } skipAt)
            {
                await using var skip = new NpgsqlCommand(SkipOccurrenceSql, connection, transaction)
                {
                    Parameters = { Value(schedule.CompanyId), Value(schedule.Key), Value(skipAt.ToUniversalTime()), Value(decided.SkipReason ?? "skipped"), Value(now.ToUniversalTime()) },
                };
                await skip.ExecuteNonQueryAsync(cancellationToken);
            }
            var messages = 0;
            if (decided.Materialise is { } occurrence)
            {
                messages = await MaterialiseOccurrenceAsync(connection, transaction, schedule, occurrence, decided, now, cancellationToken);
            }
            await using (var advance = new NpgsqlCommand(AdvanceScheduleSql, connection, transaction))
            {
                advance.Parameters.Add(Value(schedule.CompanyId));
                advance.Parameters.Add(Value(schedule.Key));
                advance.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = (object?)decided.Next?.ToUniversalTime() ?? DBNull.Value });
                advance.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = (object?)decided.Materialise?.ToUniversalTime() ?? DBNull.Value });
                await advance.ExecuteNonQueryAsync(cancellationToken);
            }
            return (schedule, decided, messages);
        }
    }

    private static async Task<int> MaterialiseOccurrenceAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, DueSchedule schedule, DateTimeOffset occurrence, SchedulePlan plan, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var local = TimeZoneInfo.ConvertTime(occurrence, plan.Zone);
        var localDate = DateOnly.FromDateTime(local.DateTime);
        var scheduleData = JsonSerializer.Serialize(new
        {
            key = schedule.Key,
            occurrence = local.ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture),
            date = localDate.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
            dueWithinDays = schedule.AudienceDays,
            // Read when a resolve leaves the digest nothing to list (DigestReminders): with this audience it does not go.
            audience = WireName<ScheduleAudience>.Of(schedule.Audience),
        });
        var idempotencyPrefix = string.Create(CultureInfo.InvariantCulture, $"schedule:{schedule.Key}:{occurrence.UtcDateTime:yyyy-MM-dd'T'HH:mm:ss'Z'}:");
        await using var command = new NpgsqlCommand(MaterialiseOccurrenceSql, connection, transaction);
        command.Parameters.Add(Value(schedule.CompanyId));
        command.Parameters.Add(Value(schedule.Type));
        command.Parameters.Add(Value(schedule.Channel));
        command.Parameters.Add(Value(schedule.TemplateKey));
        command.Parameters.Add(Value(schedule.TemplateData));
        command.Parameters.Add(Value(scheduleData));
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Integer, Value = (object?)schedule.AudienceDays ?? DBNull.Value });
        command.Parameters.Add(Value(localDate));
        command.Parameters.Add(Value(localDate.AddDays(schedule.AudienceDays ?? 0)));
        command.Parameters.Add(Value(WireName<ScheduleAudience>.Of(schedule.Audience)));
        command.Parameters.Add(Value(idempotencyPrefix));
        command.Parameters.Add(Value(now.ToUniversalTime()));
        command.Parameters.Add(Value(schedule.Key));
        command.Parameters.Add(Value(occurrence.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)plan.MaterialiseNote ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = (object?)plan.Next?.ToUniversalTime() ?? DBNull.Value });
        // No row back: this occurrence was already recorded (and its messages, by their keys, already exist).
        return await command.ExecuteScalarAsync(cancellationToken) is int count ? count : 0;
    }

    private static NpgsqlParameter<T> Value<T>(T value) => new() { TypedValue = value };
}
