using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
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
/// The compliance calendar as a company sees it (the shipped data file with the company's own
/// corrections), corrections per filing, and creating a customer's reminder sequences for a
/// financial year from it. A convenience, not legal advice: practices correct what they read differently.
/// </summary>
public static class ComplianceCalendarEndpoints
{
    public enum FilingOrigin
    {
        /// <summary>As in the calendar data file.</summary>
        Shipped,
        /// <summary>The data file's filing with this company's corrections.</summary>
        Overridden,
        /// <summary>A filing this company added.</summary>
        Added,
    }

    [EchoedFields("text")]
    public sealed record RuleBody(string? Kind, int? Days, int? Months, int? Month, int? Day, int? YearOffset);

    public sealed record StepBody(int? OffsetDays, string? TemplateKey);

    /// <summary>Replaces the company's correction of a filing whole; fields left out inherit the shipped filing.</summary>
    [EchoedFields("key", "origin", "shipped", "dueDate", "updatedBy", "updatedAt")]
    public sealed record OverrideRequest(
        string? Form, string? Title, string? AppliesTo, RuleBody? Rule, string? Source, bool? SelectedByDefault, List<StepBody?>? Steps, bool? Disabled);

    public sealed record RuleView(DueDateRuleKind Kind, int? Days, int? Months, int? Month, int? Day, int? YearOffset, string Text);

    public sealed record ShippedView(RuleView Rule, string Source, IReadOnlyList<CalendarStep>? Steps);

    public sealed record FilingView(
        string Key, string Form, string Title, string AppliesTo, RuleView Rule, string Source, bool SelectedByDefault, IReadOnlyList<CalendarStep> Steps,
        FilingOrigin Origin, bool Disabled, ShippedView? Shipped, DateOnly? DueDate, string? UpdatedBy, DateTimeOffset? UpdatedAt);

    public sealed record CalendarView(string Version, string Notice, string? FinancialYear, DateOnly? AgmDate, List<FilingView> Filings);

    /// <summary><c>filings</c>: keys to create (default: those selected by default); the rest are defaults for every step.</summary>
    public sealed record CreateFromCalendarRequest(
        Guid? CustomerId, string? CustomerExternalId, string? FinancialYear, string? AgmDate, List<string?>? Filings,
        string? SendAt, string? Channel, int? GraceDays, JsonElement? TemplateData);

    public sealed record SkippedFiling(string Key, string Reason);

    public sealed record CreatedFromCalendar(List<ReminderEndpoints.ReminderView> Created, List<SkippedFiling> Skipped);

    public static IEndpointRouteBuilder MapComplianceCalendar(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/compliance-calendar").WithTags("Compliance calendar")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Plan);
        group.MapGet("/", Get);
        group.MapPut("/{key}", PutOverride);
        group.MapDelete("/{key}", DeleteOverride);
        group.MapPost("/reminders", CreateReminders);
        return endpoints;
    }

    /// <summary>The effective calendar; with <c>financialYear</c> (and <c>agmDate</c>) each filing shows its due date.</summary>
    internal static async Task<Results<Ok<CalendarView>, ValidationProblem>> Get(
        Tenant tenant, OutboxDbContext db, ComplianceCalendar calendar, string? financialYear, string? agmDate, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        FinancialYear year = default;
        validation.When(financialYear is not null && !FinancialYear.TryParse(financialYear, out year), "financialYear", "financialYear is written \"2025-26\".");
        var agm = validation.ParseDate("agmDate", agmDate, required: false);
        validation.When(financialYear is not null && year != default && agm is { } held && !year.CouldHoldAgm(held), "agmDate", year.AgmHint);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var filings = await EffectiveAsync(db, calendar, tenant.CompanyId, cancellationToken);
        return TypedResults.Ok(new CalendarView(calendar.Version, calendar.Notice, financialYear is null ? null : year.Label, agm,
            [.. filings.Select(f => View(f, calendar, financialYear is null ? null : f.Filing.Rule.DueDate(year, agm)))]));
    }

    internal static async Task<Results<Ok<FilingView>, ValidationProblem>> PutOverride(
        string key, OverrideRequest request, Tenant tenant, OutboxDbContext db, ComplianceCalendar calendar, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation().When(!ComplianceFiling.IsValidKey(key), "key", ComplianceFiling.KeyRule);
        var shipped = calendar.Find(key);
        validation.Require("source", request.Source)
            .When(request.Source is { Length: > 1000 }, "source", "source is at most 1000 characters.")
            .When(request.Form is { Length: > 40 }, "form", "form is at most 40 characters.")
            .When(request.Title is { Length: > 200 }, "title", "title is at most 200 characters.")
            .When(request.AppliesTo is { Length: > 1000 }, "appliesTo", "appliesTo is at most 1000 characters.")
            .Storable(("source", request.Source), ("form", request.Form), ("title", request.Title), ("appliesTo", request.AppliesTo));
        // A blank form would name every such filing "" (its reminders' reference " for FY 2025-26").
        foreach (var (field, value) in new[] { ("form", request.Form), ("title", request.Title) })
        {
            validation.When(value is not null && string.IsNullOrWhiteSpace(value), field, $"{field} cannot be blank: leave it out to keep the calendar's own.");
        }
        validation.When(request.AppliesTo is { Length: > 0 } && string.IsNullOrWhiteSpace(request.AppliesTo), "appliesTo",
            "appliesTo cannot be only spaces: leave it out to keep the calendar's own, or give \"\" for none.");
        if (shipped is null)
        {
            // A filing of the company's own: nothing to inherit.
            validation.Require("form", request.Form).Require("title", request.Title).When(request.Rule is null, "rule", "rule is required for a filing that is not in the shipped calendar.");
        }
        var rule = Rule(validation, request.Rule);
        var steps = request.Steps?.Select((s, i) =>
        {
            validation.When(s?.OffsetDays is null, $"steps[{i}].offsetDays", "offsetDays is required.");
            return new CalendarStep(s?.OffsetDays ?? 0, s?.TemplateKey?.Trim() ?? "");
        }).ToList();
        if (steps is not null)
        {
            foreach (var (field, message) in CalendarStep.Problems(steps, "steps"))
            {
                validation.Add(field, message);
            }
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var entity = await db.ComplianceRuleOverrides.SingleOrDefaultAsync(o => o.CompanyId == tenant.CompanyId && o.FilingKey == key, cancellationToken);
        if (entity is null)
        {
            entity = new ComplianceRuleOverride { CompanyId = tenant.CompanyId, FilingKey = key, Source = "", UpdatedBy = "" };
            db.ComplianceRuleOverrides.Add(entity);
        }
        entity.Form = request.Form?.Trim();
        entity.Title = request.Title?.Trim();
        entity.AppliesTo = request.AppliesTo?.Trim();
        entity.RuleKind = rule?.Kind;
        entity.RuleDays = rule?.Days;
        entity.RuleMonths = rule?.Months;
        entity.RuleMonth = rule?.Month;
        entity.RuleDay = rule?.Day;
        entity.RuleYearOffset = rule?.YearOffset;
        entity.Source = request.Source!.Trim();
        entity.SelectedByDefault = request.SelectedByDefault;
        entity.Steps = ComplianceRuleOverride.StepJson(steps);
        entity.Disabled = request.Disabled ?? false;
        entity.UpdatedBy = tenant.Actor;
        entity.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
        return TypedResults.Ok(View(EffectiveFiling.Merge(shipped, entity), calendar, null));
    }

    /// <summary>Drops the company's correction: the shipped filing applies again (an added filing disappears).</summary>
    internal static async Task<Results<NoContent, ProblemHttpResult>> DeleteOverride(string key, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var deleted = await db.ComplianceRuleOverrides.Where(o => o.CompanyId == tenant.CompanyId && o.FilingKey == key).ExecuteDeleteAsync(cancellationToken);
        return deleted == 0 ? Problems.NotFound($"A correction of filing {key}") : TypedResults.NoContent();
    }

    /// <summary>
    /// One reminder sequence per chosen filing, due per its rule for the customer's financial year
    /// and AGM date. Filings already created for that customer and year, filings that need the AGM
    /// date when none is given, and filings whose every step has passed are listed as skipped.
    /// </summary>
    internal static async Task<Results<Created<CreatedFromCalendar>, Ok<CreatedFromCalendar>, ValidationProblem, ProblemHttpResult>> CreateReminders(
        CreateFromCalendarRequest request, Tenant tenant, OutboxDbContext db, ComplianceCalendar calendar, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation().RequireCustomer(request.CustomerId, request.CustomerExternalId);
        FinancialYear year = default;
        validation.When(!FinancialYear.TryParse(request.FinancialYear, out year), "financialYear", "financialYear is required, written \"2025-26\" (1 April 2025 to 31 March 2026).");
        var agm = validation.ParseDate("agmDate", request.AgmDate, required: false);
        validation.When(year != default && agm is { } held && !year.CouldHoldAgm(held), "agmDate", year.AgmHint);
        var (sendAt, channel, graceDays) = validation.ParseStepDefaults(request.SendAt, request.Channel, request.GraceDays);
        using var templateData = validation.ParseTemplateData("templateData", request.TemplateData);
        var filings = (await EffectiveAsync(db, calendar, tenant.CompanyId, cancellationToken)).Where(f => !f.Disabled).ToList();
        var chosen = new List<EffectiveFiling>();
        if (request.Filings is null)
        {
            chosen.AddRange(filings.Where(f => f.Filing.SelectedByDefault));
        }
        else
        {
            validation.When(request.Filings.Count == 0, "filings", "filings lists at least one key, or is left out for the filings selected by default.");
            for (var i = 0; i < request.Filings.Count; i++)
            {
                var found = filings.FirstOrDefault(f => f.Filing.Key == request.Filings[i]);
                if (found is null)
                {
                    validation.Add($"filings[{i}]", $"'{request.Filings[i]}' is not a filing of this company's calendar (GET /v1/compliance-calendar lists them).");
                }
                else if (!chosen.Contains(found))
                {
                    chosen.Add(found);
                }
            }
        }
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

        // A filing's reference names its form, with its key when another filing planned here has
        // the same form (AOC-4 beside AOC-4-OPC): "AOC-4 for FY 2025-26", as a practice writes it.
        var formsInUse = chosen.GroupBy(f => f.Filing.Form).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        string Reference(ComplianceFiling filing) =>
            formsInUse.Contains(filing.Form) ? $"{filing.Form} ({filing.Key}) for FY {year.Label}" : $"{filing.Form} for FY {year.Label}";
        // Ordered with a business app creating the same reminder by hand at this moment (the lock
        // POST /v1/reminders takes), in one order, so that one of the two sees the other's.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // The form's plain reference, which a hand-made reminder of the filing is matched by too.
        string Plain(ComplianceFiling filing) => $"{filing.Form} for FY {year.Label}";
        foreach (var reference in chosen.SelectMany(f => new[] { Reference(f.Filing), Plain(f.Filing) })
                     .Select(r => r.ToLowerInvariant()).Distinct().Order(StringComparer.Ordinal))
        {
            await ReminderEndpoints.LockReferenceAsync(db, tenant.CompanyId, customer.Id, MessageType.ComplianceReminder, reference, cancellationToken);
        }
        var keys = chosen.Select(f => f.Filing.Key).ToList();
        // Per filing: its active reminder if any, else the latest resolved one.
        var existing = (await db.Reminders.AsNoTracking()
                .Where(r => r.CompanyId == tenant.CompanyId && r.CustomerId == customer.Id && r.FinancialYear == year.Label && keys.Contains(r.CalendarKey!))
                .Select(r => new { Key = r.CalendarKey!, r.Id, r.Status })
                .ToListAsync(cancellationToken))
            .GroupBy(r => r.Key)
            .ToDictionary(g => g.Key, g => g.OrderBy(r => r.Status == ReminderStatus.Active ? 0 : 1).ThenByDescending(r => r.Id).Select(r => (r.Id, r.Status)).First());
        // The customer's compliance reminders made by hand (a business app's POST /v1/reminders), which
        // may already remind of a filing the calendar would plan: see ByHandReminder.
        var byHand = await db.Reminders.AsNoTracking()
            .Where(r => r.CompanyId == tenant.CompanyId && r.CustomerId == customer.Id && r.Status == ReminderStatus.Active
                        && r.CalendarKey == null && r.Type == MessageType.ComplianceReminder)
            .OrderBy(r => r.Id)
            .Select(r => new ByHandReminder(r.Id, r.Reference, r.DueDate))
            .ToListAsync(cancellationToken);
        var now = time.GetUtcNow();
        var created = new List<Reminder>();
        var skipped = new List<SkippedFiling>();
        foreach (var filing in chosen.Select(f => f.Filing))
        {
            if (existing.TryGetValue(filing.Key, out var found) && found.Status == ReminderStatus.Active)
            {
                skipped.Add(new SkippedFiling(filing.Key, $"already created for FY {year.Label}: reminder {found.Id}"));
                continue;
            }
            if (found.Status == ReminderStatus.Resolved && request.Filings is null)
            {
                // Resolved usually means filed: planning all default filings again must not remind
                // anyone of it. Naming the filing plans it again (e.g. after a wrong AGM date).
                skipped.Add(new SkippedFiling(filing.Key, $"resolved for FY {year.Label}: reminder {found.Id}; name it in filings to create it again"));
                continue;
            }
            if (filing.Rule.DueDate(year, agm) is not { } dueDate)
            {
                skipped.Add(new SkippedFiling(filing.Key, $"needs agmDate: due {filing.Rule.Describe()}"));
                continue;
            }
            var reference = Reference(filing);
            var plain = Plain(filing);
            if (byHand.FirstOrDefault(r => r.DueDate == dueDate
                    && (string.Equals(r.Reference.Trim(), reference, StringComparison.OrdinalIgnoreCase) || string.Equals(r.Reference.Trim(), plain, StringComparison.OrdinalIgnoreCase))) is { } same)
            {
                skipped.Add(new SkippedFiling(filing.Key, string.Create(CultureInfo.InvariantCulture,
                    $"due {dueDate:yyyy-MM-dd}: reminder {same.Id} ('{same.Reference}'), made by hand, already reminds of it; resolve that one to plan this one instead")));
                continue;
            }
            var steps = (filing.Steps ?? calendar.DefaultSteps).Select(s => new StepDraft(s.OffsetDays, sendAt, s.TemplateKey, channel)).ToList();
            var draft = new ReminderDraft(tenant.CompanyId, customer.Id, MessageType.ComplianceReminder, reference, dueDate, graceDays,
                FilingData(templateData, filing, year), steps, filing.Key, year.Label);
            var reminder = ReminderPlan.Create(draft, customer.TimeZone, zone, deadlineZone, now);
            if (reminder.Steps.All(s => s.State == StepState.Skipped))
            {
                skipped.Add(new SkippedFiling(filing.Key, string.Create(CultureInfo.InvariantCulture, $"due {dueDate:yyyy-MM-dd}: every step's time has already passed")));
                continue;
            }
            created.Add(reminder);
        }
        // The step templates of the reminders to be created (not of the filings skipped), checked
        // before any is: a practice learns now, not at the first step weeks later, which templates
        // its calendar still needs.
        var uses = created.SelectMany(r => r.Steps.Select(s => (Filing: r.CalendarKey!, s.TemplateKey))).ToList();
        var missing = await WorkflowRequests.MissingTemplatesAsync(db, tenant.CompanyId, uses.Select(u => (u.TemplateKey, channel)), cancellationToken, customer);
        foreach (var ((templateKey, _), problem) in missing)
        {
            var users = string.Join(", ", uses.Where(u => u.TemplateKey == templateKey).Select(u => u.Filing).Distinct());
            validation.Add("filings", $"{problem} The steps of {users} use it; or correct their steps with PUT /v1/compliance-calendar/{{key}}.");
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        db.Reminders.AddRange(created);
        try
        {
            await db.SaveChangesAsync(cancellationToken);
        }
        catch (DbUpdateException ex) when (ex.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            return Problems.Conflict("These calendar reminders were being created by another request at the same moment; list them with GET /v1/reminders.");
        }
        await transaction.CommitAsync(cancellationToken);
        var ids = created.Select(r => r.Id).ToList();
        var views = ids.Count == 0 ? [] : await ReminderViews.LoadAsync(db, tenant.CompanyId, db.Reminders.Where(r => ids.Contains(r.Id)).OrderBy(r => r.DueDate), cancellationToken);
        var result = new CreatedFromCalendar([.. views.OrderBy(v => v.DueDate).ThenBy(v => v.Id)], skipped);
        return created.Count > 0
            ? TypedResults.Created($"/v1/reminders?customerId={customer.Id}", result)
            : TypedResults.Ok(result);
    }

    /// <summary>
    /// A compliance reminder made by hand (POST /v1/reminders). It already reminds of a calendar
    /// filing when it names it as the calendar does ("MGT-7 for FY 2025-26", in any case) and is due
    /// the same day: two sequences for one filing would send the client every step twice. (The other
    /// way round, POST /v1/reminders answers an active reminder of the same reference and due date,
    /// calendar-made or not.) Nothing looser: "AOC-4 CFS" is a filing of its own, due the same day.
    /// </summary>
    private sealed record ByHandReminder(long Id, string Reference, DateOnly DueDate);

    private static async Task<IReadOnlyList<EffectiveFiling>> EffectiveAsync(OutboxDbContext db, ComplianceCalendar calendar, Guid companyId, CancellationToken cancellationToken) =>
        calendar.For(await db.ComplianceRuleOverrides.AsNoTracking().Where(o => o.CompanyId == companyId).ToListAsync(cancellationToken));

    private static DueDateRule? Rule(Validation validation, RuleBody? body)
    {
        if (body is null)
        {
            return null;
        }
        if (!WireName<DueDateRuleKind>.TryParse(body.Kind, out var kind))
        {
            validation.Add("rule.kind", $"rule.kind is one of {string.Join(", ", WireName<DueDateRuleKind>.All)}.");
            return null;
        }
        var rule = new DueDateRule(kind, body.Days, body.Months, body.Month, body.Day, body.YearOffset);
        foreach (var (field, message) in rule.Problems())
        {
            validation.Add($"rule.{field}", message);
        }
        return rule;
    }

    /// <summary>The request's template data with <c>filing.*</c> (form, title, source, financial year) for the templates.</summary>
    private static JsonDocument FilingData(JsonDocument? requestData, ComplianceFiling filing, FinancialYear year)
    {
        // Property by property, so a name the request gives twice is the last one given (as in
        // POST /v1/reminders) rather than an error building the object's dictionary.
        var data = new JsonObject();
        if (requestData is not null)
        {
            foreach (var property in requestData.RootElement.EnumerateObject())
            {
                data[property.Name] = JsonNode.Parse(property.Value.GetRawText());
            }
        }
        data["filing"] = new JsonObject
        {
            ["key"] = filing.Key,
            ["form"] = filing.Form,
            ["title"] = filing.Title,
            ["source"] = filing.Source,
            ["rule"] = filing.Rule.Describe(),
            ["financialYear"] = year.Label,
        };
        return JsonDocument.Parse(data.ToJsonString());
    }

    private static FilingView View(EffectiveFiling effective, ComplianceCalendar calendar, DateOnly? dueDate)
    {
        var f = effective.Filing;
        var origin = effective.Override is null ? FilingOrigin.Shipped : effective.Shipped is null ? FilingOrigin.Added : FilingOrigin.Overridden;
        return new FilingView(
            f.Key, f.Form, f.Title, f.AppliesTo, ToView(f.Rule), f.Source, f.SelectedByDefault, f.Steps ?? calendar.DefaultSteps, origin, effective.Disabled,
            origin == FilingOrigin.Overridden ? new ShippedView(ToView(effective.Shipped!.Rule), effective.Shipped.Source, effective.Shipped.Steps) : null,
            dueDate, effective.Override?.UpdatedBy, effective.Override?.UpdatedAt);
    }

    private static RuleView ToView(DueDateRule rule) => new(rule.Kind, rule.Days, rule.Months, rule.Month, rule.Day, rule.YearOffset, rule.Describe());
}
