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
    /// When a step fires. A step meant for before the due date or on it expires when the due date
    /// ends in the company's zone; for a client far west of it (Honolulu, 15½ hours behind IST) the
    /// due date's 10:00 comes after that, and the step would only ever be cancelled. It goes the
    /// day before instead (or earlier, until it comes before the deadline), at the same local time,
    /// saying so. An overdue notice (after the due date) whose local time comes before that
    /// deadline (a client far east: Sydney) goes at the deadline, saying so.
    /// </summary>
    private static (DateTimeOffset FireAt, string? Note) BeforeTheDeadline(DateOnly dueDate, StepDraft step, TimeZoneInfo zone, DateTimeOffset dueAt, DateTimeOffset now)
    {
        var fireAt = StepTime(dueDate, step.OffsetDays, step.SendAt, zone);
        if (step.OffsetDays > 0)
        {
            // An overdue notice is not sent before the filing is overdue: a client far east of the
            // company (Sydney's 05:00 the day after is 23:30 IST on the due date) gets it when the
            // due date ends in the company's zone, not half an hour before a last-minute filing.
            return fireAt >= dueAt
                ? (fireAt, null)
                : (dueAt, string.Create(CultureInfo.InvariantCulture,
                    $"moved to when the due date ends in the company's zone ({dueAt.UtcDateTime:u}): at {dueDate.AddDays(step.OffsetDays):yyyy-MM-dd} {step.SendAt:HH:mm} in the customer's zone ({zone.Id}) the filing was not yet overdue"));
        }
        if (fireAt < dueAt)
        {
            return (fireAt, null);
        }
        var offset = step.OffsetDays;
        while (fireAt >= dueAt)
        {
            fireAt = StepTime(dueDate, --offset, step.SendAt, zone);
        }
        var tooLate = string.Create(CultureInfo.InvariantCulture,
            $"on {dueDate.AddDays(step.OffsetDays):yyyy-MM-dd} it would have come after the due date ends in the company's zone ({dueAt.UtcDateTime:u})");
        return fireAt <= now && now < dueAt
            // Created after the earlier time but before the deadline: now is the last chance.
            ? (now, string.Create(CultureInfo.InvariantCulture, $"moved to when the reminder was created: {tooLate}, and {dueDate.AddDays(offset):yyyy-MM-dd} {step.SendAt:HH:mm} had passed"))
            : (fireAt, string.Create(CultureInfo.InvariantCulture, $"moved to {dueDate.AddDays(offset):yyyy-MM-dd} {step.SendAt:HH:mm} in the customer's zone ({zone.Id}): {tooLate}"));
    }

    /// <summary>
    /// The reminder with its steps in time order. A step whose time has already passed at
    /// <paramref name="now"/> is recorded SKIPPED at once, so creating a reminder late never sends a
    /// burst of stale messages; so is a step moved before the deadline (<see cref="BeforeTheDeadline"/>)
    /// onto or before another step that still goes before it (two reminders at once say no more than one).
    /// </summary>
    public static Reminder Create(ReminderDraft draft, string timeZoneId, TimeZoneInfo zone, TimeZoneInfo deadlineZone, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(draft);
        var dueAt = EndOf(draft.DueDate, deadlineZone);
        var planned = draft.Steps.Select((s, i) => (Draft: s, Index: i, Planned: BeforeTheDeadline(draft.DueDate, s, zone, dueAt, now))).ToList();
        // Another step that still reminds the client instead of a moved one: for one moved before
        // the deadline, a step at or after its time that still goes before the deadline; for an
        // overdue notice moved to the deadline, another at that same instant. At the same instant
        // (two steps moved to now, or to the deadline) an unmoved step, else the one given later,
        // is the one kept: exactly one of them goes.
        bool RemindsInstead((StepDraft Draft, int Index, (DateTimeOffset FireAt, string? Note) Planned) other, (StepDraft Draft, int Index, (DateTimeOffset FireAt, string? Note) Planned) moved)
        {
            var kept = other.Planned.FireAt == moved.Planned.FireAt && (other.Planned.Note is null || other.Index > moved.Index);
            return other.Index != moved.Index && (moved.Draft.OffsetDays > 0
                ? kept
                : other.Planned.FireAt < dueAt && (other.Planned.FireAt > moved.Planned.FireAt || kept));
        }
        var steps = planned
            .Select(s => (s.Draft, s.Planned.FireAt, Skipped: s.Planned.FireAt < now || (s.Planned.FireAt == now && s.Planned.Note is null)
                ? string.Create(CultureInfo.InvariantCulture, $"its time ({s.Planned.FireAt.UtcDateTime:u}) had passed when the reminder was created")
                : s.Planned.Note is { } moved && planned.FirstOrDefault(o => RemindsInstead(o, s)) is { Draft: not null } later
                    // Moved onto or before another step that still goes before the deadline: that one reminds the client.
                    ? string.Create(CultureInfo.InvariantCulture, $"{moved}, where the step of offsetDays {later.Draft.OffsetDays} already reminds the client")
                    : null,
                s.Planned.Note))
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
                State = s.Skipped is null ? StepState.Scheduled : StepState.Skipped,
                StateReason = s.Skipped ?? s.Note,
                ProcessedAt = s.Skipped is null ? null : now,
            })
            .ToList();
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
