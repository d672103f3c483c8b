using System.Globalization;
using System.Text.Json;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;

namespace OutboxComms.Core.Workflows;

/// <summary>A step as a client asks for it: days from the due date, local send time, template, channel.</summary>
public sealed record StepDraft(int OffsetDays, TimeOnly SendAt, string TemplateKey, Channel Channel, JsonDocument? TemplateData = null);

/// <summary>A reminder as a client asks for it, before its steps are placed in time.</summary>
public sealed record ReminderDraft(
    Guid CompanyId,
    Guid CustomerId,
    MessageType Type,
    string Reference,
    DateOnly DueDate,
    int GraceDays,
    JsonDocument? TemplateData,
    IReadOnlyList<StepDraft> Steps,
    string? CalendarKey = null,
    string? FinancialYear = null);

/// <summary>
/// Places a reminder's steps in time. Each step fires when the customer's clock shows its local
/// send time on (due date + offset) — across DST gaps and overlaps via <see cref="LocalTimes"/> —
/// and the instants are stored, so the scheduler's claim is a plain range scan. The zone is the
/// customer's when the reminder is created. The deadline itself is the practice's: an ROC filing or
/// an invoice due on 30 November is late from midnight in the company's zone (IST), wherever the
/// client lives, so the due date and the grace end in the company's zone.
/// </summary>
public static class ReminderPlan
{
    public static readonly TimeOnly DefaultSendAt = new(10, 0);

    public static DateTimeOffset StepTime(DateOnly dueDate, int offsetDays, TimeOnly sendAt, TimeZoneInfo zone) =>
        LocalTimes.ToInstant(dueDate.AddDays(offsetDays).ToDateTime(sendAt), zone);

    /// <summary>The first instant after <paramref name="date"/> in <paramref name="zone"/> (its local midnight).</summary>
    public static DateTimeOffset EndOf(DateOnly date, TimeZoneInfo zone) =>
        LocalTimes.ToInstant(date.AddDays(1).ToDateTime(TimeOnly.MinValue), zone);

    /// <summary>
    /// The reminder with its steps in time order. A step whose time has already passed at
    /// <paramref name="now"/> is recorded SKIPPED at once, so creating a reminder late never sends a
    /// burst of stale messages.
    /// </summary>
    public static Reminder Create(ReminderDraft draft, string timeZoneId, TimeZoneInfo zone, TimeZoneInfo deadlineZone, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(draft);
        var steps = draft.Steps
            .Select(s => (Draft: s, FireAt: StepTime(draft.DueDate, s.OffsetDays, s.SendAt, zone)))
            .OrderBy(s => s.FireAt)
            .ThenBy(s => s.Draft.OffsetDays)
            .Select((s, i) => new ReminderStep
            {
                Position = i + 1,
                OffsetDays = s.Draft.OffsetDays,
                SendAt = s.Draft.SendAt,
                FireAt = s.FireAt,
                TemplateKey = s.Draft.TemplateKey,
                Channel = s.Draft.Channel,
                TemplateData = s.Draft.TemplateData ?? JsonDocument.Parse("{}"),
                State = s.FireAt <= now ? StepState.Skipped : StepState.Scheduled,
                StateReason = s.FireAt <= now ? string.Create(CultureInfo.InvariantCulture, $"its time ({s.FireAt.UtcDateTime:u}) had passed when the reminder was created") : null,
                ProcessedAt = s.FireAt <= now ? now : null,
            })
            .ToList();
        var dueAt = EndOf(draft.DueDate, deadlineZone);
        return new Reminder
        {
            CompanyId = draft.CompanyId,
            CustomerId = draft.CustomerId,
            Type = draft.Type,
            Reference = draft.Reference,
            DueDate = draft.DueDate,
            GraceDays = draft.GraceDays,
            TimeZone = timeZoneId,
            DueAt = dueAt,
            GraceEndsAt = EndOf(draft.DueDate.AddDays(draft.GraceDays), deadlineZone),
            TemplateData = draft.TemplateData ?? JsonDocument.Parse("{}"),
            CalendarKey = draft.CalendarKey,
            FinancialYear = draft.FinancialYear,
            Status = ReminderStatus.Active,
            CreatedAt = now,
            UpdatedAt = now,
            Steps = steps,
        };
    }
}
