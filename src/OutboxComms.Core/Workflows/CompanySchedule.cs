using System.Text.Json;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Workflows;

/// <summary>Who a schedule's occurrence goes to.</summary>
public enum ScheduleAudience
{
    /// <summary>Every (not deleted) customer of the company.</summary>
    AllCustomers,
    /// <summary>Customers with an active reminder due within <see cref="CompanySchedule.AudienceDays"/> days.</summary>
    RemindersDue,
}

public enum ScheduleRunOutcome
{
    /// <summary>The occurrence became one outbox row per customer of the audience.</summary>
    Materialised,
    /// <summary>Not sent (missed while no scheduler ran, beyond catch-up); see the reason.</summary>
    Skipped,
}

/// <summary>
/// A company's recurring message, e.g. a Monday-09:00 digest of what is due this week: a cron
/// expression (Cronos) evaluated in <see cref="TimeZone"/> or, when that is null, the company's.
/// </summary>
public class CompanySchedule
{
    public Guid CompanyId { get; set; }
    public required string Key { get; set; }
    public required string Cron { get; set; }
    public string? TimeZone { get; set; }
    public MessageType Type { get; set; }
    public Channel Channel { get; set; } = Channel.Preferred;
    public required string TemplateKey { get; set; }
    public JsonDocument TemplateData { get; set; } = JsonDocument.Parse("{}");
    public ScheduleAudience Audience { get; set; }
    /// <summary>
    /// Look-ahead in days for the customers' due reminders: who is in a REMINDERS_DUE audience, and
    /// (for any audience) the <c>dueReminders</c> list in the template data.
    /// </summary>
    public int? AudienceDays { get; set; }
    public bool Enabled { get; set; } = true;
    /// <summary>Null when disabled or the expression has no future occurrence.</summary>
    public DateTimeOffset? NextOccurrenceAt { get; set; }
    public DateTimeOffset? LastOccurrenceAt { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>What happened at one occurrence of a schedule.</summary>
public class ScheduleRun
{
    public Guid CompanyId { get; set; }
    public required string ScheduleKey { get; set; }
    public DateTimeOffset OccurrenceAt { get; set; }
    public ScheduleRunOutcome Outcome { get; set; }
    public string? Reason { get; set; }
    public int MessageCount { get; set; }
    public DateTimeOffset RecordedAt { get; set; }
}
