using System.Text.Json;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Workflows;

public enum ReminderStatus
{
    /// <summary>Steps still come due.</summary>
    Active,
    /// <summary>The filing was made or the invoice paid: no further step is sent.</summary>
    Resolved,
}

public enum StepState
{
    /// <summary>Waits for its time.</summary>
    Scheduled,
    /// <summary>Became an outbox row (<see cref="ReminderStep.MessageId"/>); dispatch decides the rest.</summary>
    Queued,
    /// <summary>Its time passed without it being sent (see the reason).</summary>
    Skipped,
    /// <summary>The reminder was resolved before the step's time.</summary>
    Cancelled,
}

/// <summary>
/// A sequence of messages about one deadline of one customer ("MGT-7 for FY 2025-26", "Invoice
/// INV-1042"), each step relative to the due date and sent at a local time in the customer's zone.
/// </summary>
public class Reminder
{
    public long Id { get; set; }
    public Guid CompanyId { get; set; }
    public Guid CustomerId { get; set; }
    /// <summary>COMPLIANCE_REMINDER or PAYMENT_REMINDER.</summary>
    public MessageType Type { get; set; }
    public required string Reference { get; set; }
    public DateOnly DueDate { get; set; }
    /// <summary>A step missed while no scheduler ran is still sent until the due date + this many days ends.</summary>
    public int GraceDays { get; set; }
    /// <summary>The customer's IANA zone when the steps were planned.</summary>
    public required string TimeZone { get; set; }
    /// <summary>The end of the due date in the company's zone when the steps were planned (its local midnight after it): the deadline is the practice's.</summary>
    public DateTimeOffset DueAt { get; set; }
    /// <summary><see cref="DueAt"/> + <see cref="GraceDays"/>, in the company's local days.</summary>
    public DateTimeOffset GraceEndsAt { get; set; }
    public JsonDocument TemplateData { get; set; } = JsonDocument.Parse("{}");
    /// <summary>The compliance calendar filing this came from, with <see cref="FinancialYear"/>.</summary>
    public string? CalendarKey { get; set; }
    public string? FinancialYear { get; set; }
    public ReminderStatus Status { get; set; }
    public DateTimeOffset? ResolvedAt { get; set; }
    public string? ResolutionNote { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    public List<ReminderStep> Steps { get; set; } = [];
}

/// <summary>One message of a reminder sequence.</summary>
public class ReminderStep
{
    public long Id { get; set; }
    public long ReminderId { get; set; }
    /// <summary>1, 2, … in order of <see cref="FireAt"/>.</summary>
    public int Position { get; set; }
    /// <summary>Days relative to the due date: −30, −7, −1, +1, +7.</summary>
    public int OffsetDays { get; set; }
    /// <summary>Local send time in the reminder's zone.</summary>
    public TimeOnly SendAt { get; set; }
    /// <summary>Due date + offset at <see cref="SendAt"/>, as an instant (DST-safe).</summary>
    public DateTimeOffset FireAt { get; set; }
    public required string TemplateKey { get; set; }
    public Channel Channel { get; set; } = Channel.Preferred;
    public JsonDocument TemplateData { get; set; } = JsonDocument.Parse("{}");
    public StepState State { get; set; }
    public string? StateReason { get; set; }
    /// <summary>The outbox row this step became.</summary>
    public long? MessageId { get; set; }
    public DateTimeOffset? ProcessedAt { get; set; }
}
