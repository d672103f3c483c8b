using System.Text.Json;

namespace OutboxComms.Core.Workflows;

/// <summary>
/// A practice's correction of a shipped compliance-calendar filing, or a filing of its own. Null
/// fields inherit the shipped filing's value, so an override names only what it changes; a rule
/// (when given) replaces the shipped rule whole. <see cref="Source"/> is the practice's reference
/// for its reading (a notification, a circular).
/// </summary>
public class ComplianceRuleOverride
{
    public Guid CompanyId { get; set; }
    public required string FilingKey { get; set; }
    public string? Form { get; set; }
    public string? Title { get; set; }
    public string? AppliesTo { get; set; }
    public DueDateRuleKind? RuleKind { get; set; }
    public int? RuleDays { get; set; }
    public int? RuleMonths { get; set; }
    public int? RuleMonth { get; set; }
    public int? RuleDay { get; set; }
    public int? RuleYearOffset { get; set; }
    public required string Source { get; set; }
    public bool? SelectedByDefault { get; set; }
    /// <summary>JSON array of <see cref="CalendarStep"/>; null keeps the shipped steps.</summary>
    public string? Steps { get; set; }
    /// <summary>Hides a shipped filing from this company's calendar.</summary>
    public bool Disabled { get; set; }
    public required string UpdatedBy { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    public IReadOnlyList<CalendarStep>? StepList() =>
        Steps is null ? null : JsonSerializer.Deserialize<List<CalendarStep>>(Steps, ComplianceCalendarLoader.Json);

    public static string? StepJson(IReadOnlyList<CalendarStep>? steps) =>
        steps is null ? null : JsonSerializer.Serialize(steps, ComplianceCalendarLoader.Json);
}
