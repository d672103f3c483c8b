using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Api.Reminders;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Api.Schedules;

/// <summary>
/// A company's recurring messages: a cron expression (Cronos; 5 fields, or 6 with seconds)
/// evaluated in the company's time zone or the schedule's own, DST-safe, sent to all customers or
/// to those with a reminder due within N days (e.g. a Monday-09:00 digest of what is due this week).
/// </summary>
public static partial class ScheduleEndpoints
{
    public sealed record AudienceBody(string? Kind, int? WithinDays);

    [EchoedFields("key", "effectiveTimeZone", "nextOccurrenceAt", "nextOccurrenceLocal", "lastOccurrenceAt", "createdAt", "updatedAt", "recentRuns")]
    public sealed record PutScheduleRequest(
        string? Cron, string? TimeZone, [property: OpenApiValues("INVOICE", "COMPLIANCE_REMINDER", "PAYMENT_REMINDER", "GENERAL_UPDATE")] string? Type, [property: OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH", "PREFERRED")] string? Channel, string? TemplateKey, JsonElement? TemplateData, AudienceBody? Audience, bool? Enabled);

    public sealed record AudienceView(ScheduleAudience Kind, int? WithinDays);

    public sealed record RunView(DateTimeOffset OccurrenceAt, ScheduleRunOutcome Outcome, string? Reason, int MessageCount, DateTimeOffset RecordedAt);

    /// <summary><c>timeZone</c> is null when the schedule follows the company's zone; <c>effectiveTimeZone</c> is the zone used.</summary>
    public sealed record ScheduleView(
        string Key, string Cron, string? TimeZone, string EffectiveTimeZone, MessageType Type, Channel Channel, string TemplateKey, JsonElement TemplateData,
        AudienceView Audience, bool Enabled, DateTimeOffset? NextOccurrenceAt, string? NextOccurrenceLocal, DateTimeOffset? LastOccurrenceAt,
        DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, List<RunView>? RecentRuns);

    public static IEndpointRouteBuilder MapSchedules(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/schedules").WithTags("Schedules")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Plan);
        group.MapGet("/", List);
        group.MapGet("/{key}", Get);
        group.MapPut("/{key}", Put);
        group.MapDelete("/{key}", Delete);
        return endpoints;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", RegexOptions.CultureInvariant)]
    private static partial Regex KeyPattern();

    internal static async Task<Results<Created<ScheduleView>, Ok<ScheduleView>, ValidationProblem>> Put(
        string key, PutScheduleRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation().When(!KeyPattern().IsMatch(key), "key", "key is 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit.");
        if (!ScheduleTimes.TryParse(request.Cron, out var cron, out var cronError))
        {
            validation.Add("cron", cronError);
        }
        else if (ScheduleTimes.TooFrequent(request.Cron!, cron, time.GetUtcNow()) is { } tooFrequent)
        {
            validation.Add("cron", $"'{request.Cron}' {tooFrequent}: every run writes to each customer of the audience. Did you mean \"0 …\" (on the hour)?");
        }
        validation.When(request.TimeZone is not null && !FieldRules.IsIanaZone(request.TimeZone), "timeZone",
            $"'{request.TimeZone}' is not an IANA time zone (e.g. Asia/Kolkata); leave it out to use the company's.");
        var type = validation.ParseMessageType("type", request.Type, Enum.GetValues<MessageType>());
        var channel = validation.ParseChannel("channel", request.Channel, Channel.Preferred);
        validation.Require("templateKey", request.TemplateKey).When(request.TemplateKey is { Length: > 100 }, "templateKey", "templateKey is at most 100 characters.")
            .Storable(("templateKey", request.TemplateKey));
        using var templateData = validation.ParseTemplateData("templateData", request.TemplateData);
        var audience = default(ScheduleAudience);
        if (request.Audience is null)
        {
            validation.Add("audience", "audience is required: {\"kind\": \"ALL_CUSTOMERS\"} or {\"kind\": \"REMINDERS_DUE\", \"withinDays\": 7}.");
        }
        else
        {
            validation.When(!WireName<ScheduleAudience>.TryParse(request.Audience.Kind, out audience), "audience.kind", "audience.kind is ALL_CUSTOMERS or REMINDERS_DUE.")
                .When(request.Audience.WithinDays is < 0 or > 366, "audience.withinDays", "audience.withinDays is between 0 and 366.")
                .When(audience == ScheduleAudience.RemindersDue && request.Audience.WithinDays is null, "audience.withinDays",
                    "audience.withinDays is required for REMINDERS_DUE: customers with a reminder due within that many days.");
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var enabled = request.Enabled ?? true;
        if (enabled)
        {
            // A disabled schedule may be saved before its template is written; enabling it checks.
            var missing = await WorkflowRequests.MissingTemplatesAsync(db, tenant.CompanyId, [(request.TemplateKey!.Trim(), channel)], cancellationToken);
            if (missing.Count > 0)
            {
                return validation.Add("templateKey", missing.Values.Single()).Problem();
            }
        }
        var companyZone = await db.Companies.Where(c => c.Id == tenant.CompanyId).Select(c => c.TimeZone).SingleAsync(cancellationToken);
        var zoneId = request.TimeZone ?? companyZone;
        LocalTimes.TryFindZone(zoneId, out var zone);
        var now = time.GetUtcNow();
        var next = ScheduleTimes.Next(cron, now, zone);
        if (next is null)
        {
            return validation.Add("cron", $"'{request.Cron}' has no future occurrence.").Problem();
        }

        var schedule = await db.CompanySchedules.SingleOrDefaultAsync(s => s.CompanyId == tenant.CompanyId && s.Key == key, cancellationToken);
        var created = schedule is null;
        if (schedule is null)
        {
            schedule = new CompanySchedule { CompanyId = tenant.CompanyId, Key = key, Cron = "", TemplateKey = "", CreatedAt = now };
            db.CompanySchedules.Add(schedule);
        }
        // A changed timing starts afresh from now; an unchanged one keeps its pending occurrence
        // (re-saving must neither skip nor repeat one).
        var retimed = created || schedule.Cron != request.Cron!.Trim() || schedule.TimeZone != request.TimeZone || (enabled && (!schedule.Enabled || schedule.NextOccurrenceAt is null));
        schedule.Cron = request.Cron!.Trim();
        schedule.TimeZone = request.TimeZone;
        schedule.Type = type!.Value;
        schedule.Channel = channel;
        schedule.TemplateKey = request.TemplateKey!.Trim();
        schedule.TemplateData = templateData is null ? JsonDocument.Parse("{}") : JsonDocument.Parse(templateData.RootElement.GetRawText());
        schedule.Audience = audience;
        schedule.AudienceDays = request.Audience!.WithinDays;
        schedule.Enabled = enabled;
        schedule.NextOccurrenceAt = !enabled ? null : retimed ? next : schedule.NextOccurrenceAt;
        schedule.UpdatedAt = now;
        await db.SaveChangesAsync(cancellationToken);

        var view = View(schedule, companyZone, await RecentRunsAsync(db, tenant.CompanyId, key, cancellationToken));
        return created ? TypedResults.Created($"/v1/schedules/{key}", view) : TypedResults.Ok(view);
    }

    internal static async Task<Ok<List<ScheduleView>>> List(Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var companyZone = await db.Companies.Where(c => c.Id == tenant.CompanyId).Select(c => c.TimeZone).SingleAsync(cancellationToken);
        var schedules = await db.CompanySchedules.AsNoTracking().Where(s => s.CompanyId == tenant.CompanyId).OrderBy(s => s.Key).ToListAsync(cancellationToken);
        return TypedResults.Ok(schedules.Select(s => View(s, companyZone, null)).ToList());
    }

    internal static async Task<Results<Ok<ScheduleView>, ProblemHttpResult>> Get(string key, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var schedule = await db.CompanySchedules.AsNoTracking().SingleOrDefaultAsync(s => s.CompanyId == tenant.CompanyId && s.Key == key, cancellationToken);
        if (schedule is null)
        {
            return Problems.NotFound($"Schedule '{key}'");
        }
        var companyZone = await db.Companies.Where(c => c.Id == tenant.CompanyId).Select(c => c.TimeZone).SingleAsync(cancellationToken);
        return TypedResults.Ok(View(schedule, companyZone, await RecentRunsAsync(db, tenant.CompanyId, key, cancellationToken)));
    }

    /// <summary>Stops the schedule. Its run history stays (keyed by the schedule's key).</summary>
    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(string key, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var deleted = await db.CompanySchedules.Where(s => s.CompanyId == tenant.CompanyId && s.Key == key).ExecuteDeleteAsync(cancellationToken);
        return deleted == 0 ? Problems.NotFound($"Schedule '{key}'") : TypedResults.NoContent();
    }

    private static Task<List<RunView>> RecentRunsAsync(OutboxDbContext db, Guid companyId, string key, CancellationToken cancellationToken) =>
        db.ScheduleRuns.AsNoTracking().Where(r => r.CompanyId == companyId && r.ScheduleKey == key)
            .OrderByDescending(r => r.OccurrenceAt).Take(20)
            .Select(r => new RunView(r.OccurrenceAt, r.Outcome, r.Reason, r.MessageCount, r.RecordedAt))
            .ToListAsync(cancellationToken);

    private static ScheduleView View(CompanySchedule s, string companyZone, List<RunView>? runs)
    {
        var zoneId = s.TimeZone ?? companyZone;
        var local = s.NextOccurrenceAt is { } next && LocalTimes.TryFindZone(zoneId, out var zone)
            ? TimeZoneInfo.ConvertTime(next, zone).ToString("yyyy-MM-dd'T'HH:mm:sszzz", CultureInfo.InvariantCulture)
            : null;
        return new ScheduleView(s.Key, s.Cron, s.TimeZone, zoneId, s.Type, s.Channel, s.TemplateKey, s.TemplateData.RootElement.Clone(),
            new AudienceView(s.Audience, s.AudienceDays), s.Enabled, s.NextOccurrenceAt, local, s.LastOccurrenceAt, s.CreatedAt, s.UpdatedAt, runs);
    }
}
