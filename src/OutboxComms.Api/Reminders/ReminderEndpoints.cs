using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Api.Reminders;

/// <summary>
/// Reminder sequences: a deadline of a customer and messages relative to it (−30, −7, −1, +1 days…),
/// each at a local time in the customer's zone. The worker's scheduler turns each step into an
/// ordinary outbox row at its time; resolving stops every step not yet sent.
/// </summary>
public static class ReminderEndpoints
{
    public sealed record StepRequest(int? OffsetDays, string? SendAt, string? TemplateKey, [property: OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH", "PREFERRED")] string? Channel, JsonElement? TemplateData);

    /// <summary><c>sendAt</c>, <c>channel</c> and <c>templateKey</c> are defaults for steps that do not name their own.</summary>
    public sealed record CreateReminderRequest(
        Guid? CustomerId, string? CustomerExternalId, [property: OpenApiValues("COMPLIANCE_REMINDER", "PAYMENT_REMINDER")] string? Type, string? Reference, string? DueDate, int? GraceDays,
        string? SendAt, [property: OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH", "PREFERRED")] string? Channel, string? TemplateKey, JsonElement? TemplateData, List<StepRequest?>? Steps);

    public sealed record ResolveRequest(string? Note);

    public sealed record MessageView(long Id, DeliveryStatus Status, Channel Channel, string? StatusReason, string? ErrorMessage, DateTimeOffset? SentAt, DateTimeOffset? DeliveredAt, DateTimeOffset? ReadAt);

    public sealed record StepView(
        long Id, int Position, int OffsetDays, string SendAt, DateTimeOffset ScheduledFor, string TemplateKey, Channel Channel,
        StepState State, string? Reason, DateTimeOffset? ProcessedAt, MessageView? Message);

    /// <summary><c>timeZone</c> is the customer's (the steps' clock); <c>dueAt</c> and <c>graceEndsAt</c> are the deadline's instants, midnight in the company's zone.</summary>
    public sealed record ReminderView(
        long Id, Guid CustomerId, MessageType Type, string Reference, DateOnly DueDate, DateTimeOffset DueAt, int GraceDays, DateTimeOffset GraceEndsAt, string TimeZone, ReminderStatus Status,
        string? CalendarKey, string? FinancialYear, JsonElement TemplateData, DateTimeOffset CreatedAt, DateTimeOffset? ResolvedAt, string? ResolutionNote,
        List<StepView> Steps);

    public sealed record ReminderPage(List<ReminderView> Items, long? NextAfter);

    public static IEndpointRouteBuilder MapReminders(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/reminders").WithTags("Reminders")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Plan);
        group.MapPost("/", Create);
        group.MapGet("/", List);
        group.MapGet("/{id:long}", Get);
        group.MapPost("/{id:long}/resolve", Resolve);
        return endpoints;
    }

    internal static async Task<Results<Created<ReminderView>, Ok<ReminderView>, ValidationProblem, ProblemHttpResult>> Create(
        CreateReminderRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation().RequireCustomer(request.CustomerId, request.CustomerExternalId);
        var type = validation.ParseMessageType("type", request.Type, MessageType.ComplianceReminder, MessageType.PaymentReminder);
        validation.Require("reference", request.Reference).When(request.Reference is { Length: > 200 }, "reference", "reference is at most 200 characters.")
            .Storable(("reference", request.Reference), ("templateKey", request.TemplateKey));
        var dueDate = validation.ParseDate("dueDate", request.DueDate, required: true);
        var (sendAt, channel, graceDays) = validation.ParseStepDefaults(request.SendAt, request.Channel, request.GraceDays);
        var templateData = validation.ParseTemplateData("templateData", request.TemplateData);
        var steps = Steps(validation, request.Steps, sendAt, channel, request.TemplateKey);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var (customer, zone, deadlineZone) = await WorkflowRequests.FindCustomerAsync(db, tenant.CompanyId, request.CustomerId, request.CustomerExternalId, validation, cancellationToken);
        if (customer is null)
        {
            // As a message names it: the request's field is wrong, not its URL.
            return WorkflowRequests.UnknownCustomer(validation, request.CustomerId, request.CustomerExternalId).Problem();
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var draft = new ReminderDraft(tenant.CompanyId, customer.Id, type!.Value, request.Reference!.Trim(), dueDate!.Value, graceDays, templateData, steps);
        var reminder = ReminderPlan.Create(draft, customer.TimeZone, zone, deadlineZone, time.GetUtcNow());
        // A business app that retries after a timeout must not start a second sequence (every step
        // sent twice): an active reminder of this customer, type, reference (in any case, as the
        // compliance calendar matches it) and due date is the answer — even when the retry comes
        // after the last step's time. The lock orders concurrent retries, so only the first creates
        // it, and the calendar takes the same lock for a filing it plans.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        await LockReferenceAsync(db, tenant.CompanyId, customer.Id, reminder.Type, reminder.Reference, cancellationToken);
        var lowered = reminder.Reference.ToLowerInvariant();
        var existing = await db.Reminders.AsNoTracking().Include(r => r.Steps)
            .Where(r => r.CompanyId == tenant.CompanyId && r.CustomerId == customer.Id && r.Type == reminder.Type && r.Reference.ToLower() == lowered
                        && r.DueDate == reminder.DueDate && r.Status == ReminderStatus.Active)
            .FirstOrDefaultAsync(cancellationToken);
        if (existing is not null)
        {
            if (!SamePlan(existing, reminder))
            {
                // Not a retry: a changed plan would be dropped silently. As for messages, the same key with another body is a conflict.
                return Problems.Conflict($"An active reminder {existing.Id} for '{reminder.Reference}' due {reminder.DueDate:yyyy-MM-dd} already exists with other steps, grace or data: resolve it first to replace it.");
            }
            return TypedResults.Ok((await ReminderViews.LoadAsync(db, tenant.CompanyId, db.Reminders.Where(r => r.Id == existing.Id), cancellationToken)).Single());
        }
        if (reminder.Steps.All(s => s.State == StepState.Skipped))
        {
            var last = reminder.Steps.Max(s => s.FireAt);
            return validation.Add("steps", string.Create(CultureInfo.InvariantCulture, $"every step's time has passed (the last was {last.UtcDateTime:u} in the customer's zone {customer.TimeZone}); nothing would be sent.")).Problem();
        }
        // Checked now, for a reminder to be created (a retry of one is answered above whatever
        // became of its templates since): weeks later every step would fail instead.
        var missing = await WorkflowRequests.MissingTemplatesAsync(db, tenant.CompanyId, steps.Select(s => (s.TemplateKey, s.Channel)), cancellationToken, customer);
        for (var i = 0; i < steps.Count; i++)
        {
            if (missing.TryGetValue((steps[i].TemplateKey, steps[i].Channel), out var problem))
            {
                validation.Add($"steps[{i}].templateKey", problem);
            }
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        db.Reminders.Add(reminder);
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        var view = (await ReminderViews.LoadAsync(db, tenant.CompanyId, db.Reminders.Where(r => r.Id == reminder.Id), cancellationToken)).Single();
        return TypedResults.Created($"/v1/reminders/{reminder.Id}", view);
    }

    /// <summary>
    /// Orders, until the transaction ends, everyone creating a reminder of this customer, type and
    /// reference (in any case): a business app's retries, and the compliance calendar planning the
    /// same filing, so that only the first creates it.
    /// </summary>
    internal static Task LockReferenceAsync(OutboxDbContext db, Guid companyId, Guid customerId, MessageType type, string reference, CancellationToken cancellationToken)
    {
        var key = $"reminder:{companyId}:{customerId}:{WireName<MessageType>.Of(type)}:{reference.Trim().ToLowerInvariant()}";
        return db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(hashtextextended({key}, 0))", cancellationToken);
    }

    internal static async Task<Results<Ok<ReminderPage>, ValidationProblem>> List(
        Tenant tenant, OutboxDbContext db, Guid? customerId, string? customerExternalId, string? reference, string? status, string? type, long? after, int? limit,
        CancellationToken cancellationToken)
    {
        var validation = new Validation()
            .When(status is not null && !WireName<ReminderStatus>.TryParse(status, out _), "status", "status is ACTIVE or RESOLVED.")
            .When(limit is < 1 or > 200, "limit", "limit is between 1 and 200.")
            .Storable(("customerExternalId", customerExternalId), ("reference", reference));
        var parsedType = type is null ? null : validation.ParseMessageType("type", type, MessageType.ComplianceReminder, MessageType.PaymentReminder);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var take = limit ?? 50;
        var query = db.Reminders.Where(r => r.CompanyId == tenant.CompanyId && r.Id > (after ?? 0));
        if (customerId is { } customer)
        {
            query = query.Where(r => r.CustomerId == customer);
        }
        if (customerExternalId?.Trim() is { } externalId)
        {
            // A billing app knows its client and its invoice, not our ids: the reminder to resolve is found by them.
            query = query.Where(r => db.Customers.Any(c => c.Id == r.CustomerId && c.CompanyId == tenant.CompanyId && c.ExternalId == externalId));
        }
        if (reference?.Trim().ToLowerInvariant() is { } lowered)
        {
            query = query.Where(r => r.Reference.ToLower() == lowered);   // as a create matches it
        }
        if (status is not null)
        {
            var wanted = WireName<ReminderStatus>.Parse(status);
            query = query.Where(r => r.Status == wanted);
        }
        if (parsedType is { } wantedType)
        {
            query = query.Where(r => r.Type == wantedType);
        }
        // One more than the page: a full last page has no next.
        var items = await ReminderViews.LoadAsync(db, tenant.CompanyId, query.OrderBy(r => r.Id).Take(take + 1), cancellationToken);
        items.Sort((a, b) => a.Id.CompareTo(b.Id));   // the outer query of LoadAsync need not keep the page's order
        var more = items.Count > take;
        if (more)
        {
            items.RemoveAt(take);
        }
        return TypedResults.Ok(new ReminderPage(items, more ? items[^1].Id : null));
    }

    internal static async Task<Results<Ok<ReminderView>, ProblemHttpResult>> Get(long id, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var view = (await ReminderViews.LoadAsync(db, tenant.CompanyId, db.Reminders.Where(r => r.Id == id), cancellationToken)).SingleOrDefault();
        return view is null ? Problems.NotFound($"Reminder {id}") : TypedResults.Ok(view);
    }

    /// <summary>
    /// Stops every step not yet sent: scheduled steps are cancelled, and outbox rows a step already
    /// produced that no worker has started (deferred by quiet hours or frequency) are cancelled too.
    /// A message a worker is sending at this moment still goes. Resolving twice changes nothing.
    /// </summary>
    internal static async Task<Results<Ok<ReminderView>, ValidationProblem, ProblemHttpResult>> Resolve(
        long id, ResolveRequest? request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var noteProblems = new Validation().When(request?.Note is { Length: > 500 }, "note", "note is at most 500 characters.").Storable(("note", request?.Note));
        if (!noteProblems.IsValid)
        {
            return noteProblems.Problem();
        }
        // The resolve locks the reminder, its steps, then their messages and digests; a worker
        // recording a batch, or a business app's transaction, may hold some of those rows and want
        // one the resolve holds. PostgreSQL then aborts one side (40P01). Resolving is idempotent,
        // so it is done again, from a fresh read, rather than answered with a 409.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await ResolveOnceAsync(id, request, tenant, db, time, cancellationToken);
            }
            catch (Exception ex) when (attempt < 3 && (ex as PostgresException ?? ex.InnerException as PostgresException)?.SqlState == PostgresErrorCodes.DeadlockDetected)
            {
                db.ChangeTracker.Clear();   // SaveChanges wraps it (DbUpdateException); the set-based updates do not
            }
        }
    }

    private static async Task<Results<Ok<ReminderView>, ValidationProblem, ProblemHttpResult>> ResolveOnceAsync(
        long id, ResolveRequest? request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var reminder = await db.Reminders.SingleOrDefaultAsync(r => r.Id == id && r.CompanyId == tenant.CompanyId, cancellationToken);
        if (reminder is null)
        {
            return Problems.NotFound($"Reminder {id}");
        }
        if (reminder.Status == ReminderStatus.Active)
        {
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            // Locked, then read again: a resolve of the same reminder at this moment waits here and
            // then finds it resolved, so the first resolution and its note stay as they were.
            await db.Database.ExecuteSqlAsync($"SELECT 1 FROM reminders WHERE id = {id} AND company_id = {tenant.CompanyId} FOR NO KEY UPDATE", cancellationToken);
            await db.Entry(reminder).ReloadAsync(cancellationToken);
            if (reminder.Status == ReminderStatus.Active)
            {
                var now = time.GetUtcNow();
                var reason = string.Create(CultureInfo.InvariantCulture, $"the reminder was resolved at {now.UtcDateTime:u}");
                reminder.Status = ReminderStatus.Resolved;
                reminder.ResolvedAt = now;
                reminder.ResolutionNote = request?.Note;
                reminder.UpdatedAt = now;
                await db.SaveChangesAsync(cancellationToken);
                // A step the scheduler holds right now is waited for, then no longer SCHEDULED; the next
                // statement (a fresh snapshot) then sees the outbox row it produced and cancels that.
                await db.ReminderSteps.Where(s => s.ReminderId == id && s.State == StepState.Scheduled)
                    .ExecuteUpdateAsync(s => s.SetProperty(x => x.State, StepState.Cancelled).SetProperty(x => x.StateReason, reason).SetProperty(x => x.ProcessedAt, now), cancellationToken);
                // The steps' messages and the rows the worker split from them (a step on BOTH channels:
                // the sibling carries the step's metadata), unless a worker holds one under a live lease
                // (it is being sent); one whose lease ran out (its worker died) is cancelled, its lease
                // cleared as the message cancel does.
                var marker = System.Text.Json.JsonSerializer.Serialize(new { reminderId = id });
                var pending = db.CommunicationLogs
                    .Where(m => m.CompanyId == tenant.CompanyId && m.CustomerId == reminder.CustomerId && m.Status == DeliveryStatus.Pending
                                && ((EF.Functions.JsonContains(m.Metadata, marker) && EF.Functions.JsonExists(m.Metadata, "reminderStepId"))
                                    || db.ReminderSteps.Any(s => s.ReminderId == id && s.MessageId == m.Id)));
                // One statement, deciding each row by its lease as it is when the row is updated (a
                // worker that records it meanwhile is waited for, and its row then read again): an
                // unleased row is cancelled; one being sent right now still goes, but if it does not go
                // now (a retry, quiet hours) it expires at its next claim instead of reaching the client
                // after the resolution — its lease and status stay the worker's, whose outcome is still recorded.
                // Twice: a worker recording a BOTH step's outcome inserts its WhatsApp twin in the same
                // transaction the first statement waits for; the twin, committed after that statement's
                // snapshot, is only seen by a second one (which otherwise only writes the first one's
                // result again: a leased row keeps its lease, status and the expiry already set).
                for (var pass = 0; pass < 2; pass++)
                {
                    await pending.ExecuteUpdateAsync(m => m
                        .SetProperty(x => x.Status, x => x.LockedUntil == null || x.LockedUntil <= now ? DeliveryStatus.Cancelled : x.Status)
                        .SetProperty(x => x.StatusReason, x => x.LockedUntil == null || x.LockedUntil <= now ? reason : x.StatusReason)
                        .SetProperty(x => x.ExpiresAt, x => x.LockedUntil > now && (x.ExpiresAt == null || x.ExpiresAt > now) ? now : x.ExpiresAt)
                        .SetProperty(x => x.LockedBy, x => x.LockedUntil == null || x.LockedUntil <= now ? null : x.LockedBy)
                        .SetProperty(x => x.LockedUntil, x => x.LockedUntil == null || x.LockedUntil <= now ? null : x.LockedUntil)
                        .SetProperty(x => x.UpdatedAt, now), cancellationToken);
                    foreach (var (sql, parameters) in DigestsWithout(tenant.CompanyId, reminder.CustomerId, id, reason, now))
                    {
                        await db.Database.ExecuteSqlRawAsync(sql, parameters, cancellationToken);
                    }
                }
                await transaction.CommitAsync(cancellationToken);
            }
        }
        var view = (await ReminderViews.LoadAsync(db, tenant.CompanyId, db.Reminders.Where(r => r.Id == id), cancellationToken)).Single();
        return TypedResults.Ok(view);
    }

    /// <summary>
    /// A schedule's digest not yet sent (deferred by quiet hours or the frequency policy, or queued)
    /// that lists the resolved reminder in its <c>dueReminders</c> no longer lists it: the client is
    /// not reminded of a filing already made. A digest written for customers with a reminder due
    /// (<c>REMINDERS_DUE</c>) left with nothing to list is cancelled, as its schedule would not have
    /// written it; an <c>ALL_CUSTOMERS</c> one still goes. One a worker is sending right now is
    /// changed too (the send under way goes as it is; the row is what a retry, its BOTH twin or a
    /// replay renders), and when left with nothing to list it expires now. (The worker also leaves
    /// out any resolved reminder a digest still lists: <see cref="DigestReminders"/>.)
    /// Two statements: the first locks the digests in id order (two resolves for one customer take
    /// them in the same order); the second computes every new value from the row it updates, so
    /// that a row changed while it waited (a concurrent resolve of another reminder, a worker that
    /// claimed it) is decided on as it is now.
    /// </summary>
    private static (string Sql, object[] Parameters)[] DigestsWithout(Guid companyId, Guid customerId, long reminderId, string reason, DateTimeOffset now)
    {
        object[] parameters =
        [
            companyId, customerId, System.Text.Json.JsonSerializer.Serialize(new[] { new { reminderId } }), reminderId, now,
            reason + "; the digest listed nothing else",
        ];
        // {0} company, {1} customer, {2} the list holding the reminder, {3} its id, {4} now, {5} the reason.
        const string Digests = """
             WHERE m.company_id = {0} AND m.customer_id = {1} AND m.status = 'PENDING'
               AND m.metadata ? 'scheduleKey' AND m.template_data->'dueReminders' @> {2}::jsonb
            """;
        const string Others = "jsonb_array_elements(m.template_data->'dueReminders') WITH ORDINALITY AS e(item, n) WHERE e.item->'reminderId' IS DISTINCT FROM to_jsonb({3}::bigint)";
        const string NothingLeft = $"""
            (NOT EXISTS (SELECT 1 FROM {Others})
             AND coalesce(m.template_data->'schedule'->>'audience',
                          (SELECT s.audience FROM company_schedules s WHERE s.company_id = m.company_id AND s.key = m.metadata->>'scheduleKey'))
                 = 'REMINDERS_DUE')
            """;
        const string Free = "(m.locked_until IS NULL OR m.locked_until <= {4})";
        return
        [
            ($"SELECT m.id FROM communication_logs m {Digests} ORDER BY m.id FOR NO KEY UPDATE", parameters),
            ($$"""
             UPDATE communication_logs m
                SET template_data = jsonb_set(m.template_data, ARRAY['dueReminders'], (SELECT coalesce(jsonb_agg(e.item ORDER BY e.n), '[]'::jsonb) FROM {{Others}})),
                    status = CASE WHEN {{NothingLeft}} AND {{Free}} THEN 'CANCELLED' ELSE m.status END,
                    status_reason = CASE WHEN {{NothingLeft}} AND {{Free}} THEN {5} ELSE m.status_reason END,
                    expires_at = CASE WHEN {{NothingLeft}} AND NOT {{Free}} AND (m.expires_at IS NULL OR m.expires_at > {4}) THEN {4} ELSE m.expires_at END,
                    locked_by = CASE WHEN {{NothingLeft}} AND {{Free}} THEN NULL ELSE m.locked_by END,
                    locked_until = CASE WHEN {{NothingLeft}} AND {{Free}} THEN NULL ELSE m.locked_until END,
                    updated_at = {4}
             {{Digests}}
             """, parameters),
        ];
    }

    /// <summary>Whether a reminder asked for again is the same plan (a retry): grace, data and every step's offset, time, template, channel and data.</summary>
    private static bool SamePlan(Reminder stored, Reminder asked) =>
        stored.GraceDays == asked.GraceDays
        && System.Text.Json.JsonElement.DeepEquals(stored.TemplateData.RootElement, asked.TemplateData.RootElement)
        && stored.Steps.Count == asked.Steps.Count
        && stored.Steps.OrderBy(s => s.Position).Zip(asked.Steps.OrderBy(s => s.Position)).All(pair =>
            pair.First.OffsetDays == pair.Second.OffsetDays && pair.First.SendAt == pair.Second.SendAt && pair.First.TemplateKey == pair.Second.TemplateKey
            && pair.First.Channel == pair.Second.Channel && System.Text.Json.JsonElement.DeepEquals(pair.First.TemplateData.RootElement, pair.Second.TemplateData.RootElement));

    private static List<StepDraft> Steps(Validation validation, List<StepRequest?>? steps, TimeOnly sendAt, Channel channel, string? templateKey)
    {
        var drafts = new List<StepDraft>();
        if (steps is null || steps.Count is 0 or > CalendarStep.MaxSteps)
        {
            validation.Add("steps", $"steps needs 1–{CalendarStep.MaxSteps} steps, e.g. [{{\"offsetDays\": -7}}, {{\"offsetDays\": 1}}].");
            return drafts;
        }
        for (var i = 0; i < steps.Count; i++)
        {
            var at = $"steps[{i}]";
            if (steps[i] is not { } step)
            {
                validation.Add(at, "a step is an object with offsetDays.");
                continue;
            }
            validation.When(step.OffsetDays is not { } offset || offset is < -CalendarStep.MaxOffsetDays or > CalendarStep.MaxOffsetDays, $"{at}.offsetDays",
                $"offsetDays is required: days from the due date, -{CalendarStep.MaxOffsetDays} to {CalendarStep.MaxOffsetDays}.");
            validation.Storable(($"{at}.templateKey", step.TemplateKey));
            var key = step.TemplateKey ?? templateKey;
            validation.When(string.IsNullOrWhiteSpace(key), $"{at}.templateKey", "templateKey is required (on the step, or on the reminder for every step).")
                .When(key is { Length: > 100 }, $"{at}.templateKey", "templateKey is at most 100 characters.");
            var stepSendAt = validation.ParseLocalTime($"{at}.sendAt", step.SendAt, sendAt);
            var stepChannel = validation.ParseChannel($"{at}.channel", step.Channel, channel);
            var data = validation.ParseTemplateData($"{at}.templateData", step.TemplateData);
            drafts.Add(new StepDraft(step.OffsetDays ?? 0, stepSendAt, key?.Trim() ?? "", stepChannel, data));
        }
        validation.When(drafts.GroupBy(d => (d.OffsetDays, d.SendAt)).Any(g => g.Count() > 1), "steps", "two steps fall on the same day and time.");
        return drafts;
    }
}

/// <summary>Reminders as the API shows them: steps with their state and the outbox row each produced.</summary>
internal static class ReminderViews
{
    public static async Task<List<ReminderEndpoints.ReminderView>> LoadAsync(OutboxDbContext db, Guid companyId, IQueryable<Reminder> query, CancellationToken cancellationToken)
    {
        var reminders = await query.Where(r => r.CompanyId == companyId).Include(r => r.Steps).AsNoTracking().ToListAsync(cancellationToken);
        var messageIds = reminders.SelectMany(r => r.Steps).Where(s => s.MessageId is not null).Select(s => s.MessageId!.Value).ToList();
        var messages = messageIds.Count == 0
            ? []
            : await db.CommunicationLogs.AsNoTracking()
                .Where(m => m.CompanyId == companyId && messageIds.Contains(m.Id))
                .Select(m => new ReminderEndpoints.MessageView(m.Id, m.Status, m.Channel, m.StatusReason, m.ErrorMessage, m.SentAt, m.DeliveredAt, m.ReadAt))
                .ToDictionaryAsync(m => m.Id, cancellationToken);
        return reminders.Select(r => new ReminderEndpoints.ReminderView(
            r.Id, r.CustomerId, r.Type, r.Reference, r.DueDate, r.DueAt, r.GraceDays, r.GraceEndsAt, r.TimeZone, r.Status, r.CalendarKey, r.FinancialYear,
            r.TemplateData.RootElement.Clone(), r.CreatedAt, r.ResolvedAt, r.ResolutionNote,
            [.. r.Steps.OrderBy(s => s.Position).Select(s => new ReminderEndpoints.StepView(
                s.Id, s.Position, s.OffsetDays, s.SendAt.ToString("HH:mm", CultureInfo.InvariantCulture), s.FireAt, s.TemplateKey, s.Channel, s.State,
                s.StateReason, s.ProcessedAt, s.MessageId is { } m && messages.TryGetValue(m, out var message) ? message : null))])).ToList();
    }
}
