using System.Globalization;
using System.Text.RegularExpressions;

namespace OutboxComms.Core.Workflows;

/// <summary>How a filing's due date follows from the financial year and the AGM date.</summary>
public enum DueDateRuleKind
{
    /// <summary><see cref="DueDateRule.Month"/>/<see cref="DueDateRule.Day"/> of the calendar year in which the financial year ends, + <see cref="DueDateRule.YearOffset"/>.</summary>
    FixedDate,
    /// <summary><see cref="DueDateRule.Days"/> days after the date of the AGM.</summary>
    DaysAfterAgm,
    /// <summary><see cref="DueDateRule.Days"/> days after the last day of the financial year.</summary>
    DaysAfterFinancialYearEnd,
    /// <summary><see cref="DueDateRule.Months"/> months after the last day of the financial year.</summary>
    MonthsAfterFinancialYearEnd,
}

/// <summary>A due-date rule. Only the fields its <see cref="Kind"/> uses may be set.</summary>
public sealed record DueDateRule(DueDateRuleKind Kind, int? Days = null, int? Months = null, int? Month = null, int? Day = null, int? YearOffset = null)
{
    public bool NeedsAgmDate => Kind == DueDateRuleKind.DaysAfterAgm;

    /// <summary>The due date for <paramref name="year"/>; null when the rule needs the AGM date and none is known.</summary>
    public DateOnly? DueDate(FinancialYear year, DateOnly? agmDate) => Kind switch
    {
        DueDateRuleKind.FixedDate => new DateOnly(year.End.Year + (YearOffset ?? 0), Month!.Value, Day!.Value),
        DueDateRuleKind.DaysAfterAgm => agmDate?.AddDays(Days!.Value),
        DueDateRuleKind.DaysAfterFinancialYearEnd => year.End.AddDays(Days!.Value),
        DueDateRuleKind.MonthsAfterFinancialYearEnd => year.End.AddMonths(Months!.Value),
        _ => throw new InvalidOperationException($"Unknown rule kind {Kind}."),
    };

    /// <summary>Field problems, keyed by the field's JSON name relative to the rule (<c>days</c>, <c>month</c>).</summary>
    public IEnumerable<(string Field, string Message)> Problems()
    {
        var uses = Kind switch
        {
            DueDateRuleKind.FixedDate => new[] { "month", "day", "yearOffset" },
            DueDateRuleKind.DaysAfterAgm or DueDateRuleKind.DaysAfterFinancialYearEnd => ["days"],
            _ => ["months"],
        };
        foreach (var (field, value) in new (string, int?)[] { ("days", Days), ("months", Months), ("month", Month), ("day", Day), ("yearOffset", YearOffset) })
        {
            if (value is not null && !uses.Contains(field))
            {
                yield return (field, $"{field} does not apply to a {Data.WireName<DueDateRuleKind>.Of(Kind)} rule.");
            }
        }
        switch (Kind)
        {
            case DueDateRuleKind.FixedDate:
                if (Month is not (>= 1 and <= 12))
                {
                    yield return ("month", "month is required: 1–12.");
                }
                // 29 February is refused: it would not exist in most years.
                else if (Day is null || Day < 1 || Day > DateTime.DaysInMonth(2025, Month.Value))
                {
                    yield return ("day", $"day is required: 1–{DateTime.DaysInMonth(2025, Month.Value)} for month {Month}.");
                }
                if (YearOffset is < -1 or > 1)
                {
                    yield return ("yearOffset", "yearOffset is -1, 0 or 1 (years from the calendar year in which the financial year ends).");
                }
                break;
            case DueDateRuleKind.DaysAfterAgm or DueDateRuleKind.DaysAfterFinancialYearEnd when Days is not (>= 0 and <= 730):
                yield return ("days", "days is required: 0–730.");
                break;
            case DueDateRuleKind.MonthsAfterFinancialYearEnd when Months is not (>= 1 and <= 24):
                yield return ("months", "months is required: 1–24.");
                break;
        }
    }

    /// <summary>The rule in words, for people: "30 days after the AGM", "30 June after the financial year".</summary>
    public string Describe() => Kind switch
    {
        DueDateRuleKind.FixedDate => string.Create(CultureInfo.InvariantCulture, $"{Day} {CultureInfo.InvariantCulture.DateTimeFormat.GetMonthName(Month ?? 1)} of the year {YearOffset switch
        {
            -1 => "before the one in which",
            1 => "after the one in which",
            _ => "in which",
        }} the financial year ends"),
        DueDateRuleKind.DaysAfterAgm => string.Create(CultureInfo.InvariantCulture, $"{Days} days after the AGM"),
        DueDateRuleKind.DaysAfterFinancialYearEnd => string.Create(CultureInfo.InvariantCulture, $"{Days} days after the financial year ends"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{Months} months after the financial year ends"),
    };
}

/// <summary>One message of a calendar filing's reminder sequence, relative to the due date.</summary>
public sealed record CalendarStep(int OffsetDays, string TemplateKey)
{
    public const int MaxSteps = 20;
    public const int MaxOffsetDays = 366;

    public static IEnumerable<(string Field, string Message)> Problems(IReadOnlyList<CalendarStep>? steps, string field)
    {
        if (steps is null || steps.Count is 0 or > MaxSteps)
        {
            yield return (field, $"{field} needs 1–{MaxSteps} steps.");
            yield break;
        }
        for (var i = 0; i < steps.Count; i++)
        {
            if (steps[i] is null)
            {
                yield return ($"{field}[{i}]", "a step is an object with offsetDays and templateKey.");
                continue;
            }
            if (steps[i].OffsetDays is < -MaxOffsetDays or > MaxOffsetDays)
            {
                yield return ($"{field}[{i}].offsetDays", $"offsetDays is between -{MaxOffsetDays} and {MaxOffsetDays}.");
            }
            if (string.IsNullOrWhiteSpace(steps[i].TemplateKey))
            {
                yield return ($"{field}[{i}].templateKey", "templateKey is required.");
            }
        }
        if (steps.Where(s => s is not null).GroupBy(s => s.OffsetDays).Any(g => g.Count() > 1))
        {
            yield return (field, "two steps have the same offsetDays.");
        }
    }
}

/// <summary>
/// One recurring statutory filing: its due-date rule, who it applies to, and where the rule comes
/// from. <see cref="Steps"/> null means the calendar's default steps.
/// </summary>
public sealed record ComplianceFiling(
    string Key,
    string Form,
    string Title,
    string AppliesTo,
    DueDateRule Rule,
    string Source,
    bool SelectedByDefault,
    IReadOnlyList<CalendarStep>? Steps = null)
{
    private static readonly Regex KeyPattern = new("^[A-Z0-9][A-Z0-9-]{0,39}$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    public static bool IsValidKey(string? key) => key is not null && KeyPattern.IsMatch(key);

    public const string KeyRule = "a key is 1–40 upper-case letters, digits and dashes, starting with a letter or digit (e.g. MGT-7).";
}

/// <summary>
/// The compliance calendar: common recurring ROC/MCA filings with due-date rules and sources. A
/// convenience for reminders, not legal advice; practices correct it per company
/// (<see cref="ComplianceRuleOverride"/>) or per deployment (their own data file).
/// </summary>
public sealed record ComplianceCalendar(string Version, string Notice, IReadOnlyList<CalendarStep> DefaultSteps, IReadOnlyList<ComplianceFiling> Filings)
{
    public ComplianceFiling? Find(string key) => Filings.FirstOrDefault(f => string.Equals(f.Key, key, StringComparison.Ordinal));

    /// <summary>The calendar as one company sees it: shipped filings with its overrides applied, plus its own additions.</summary>
    public IReadOnlyList<EffectiveFiling> For(IEnumerable<ComplianceRuleOverride> overrides)
    {
        ArgumentNullException.ThrowIfNull(overrides);
        var byKey = overrides.ToDictionary(o => o.FilingKey, StringComparer.Ordinal);
        var result = new List<EffectiveFiling>();
        foreach (var shipped in Filings)
        {
            result.Add(byKey.Remove(shipped.Key, out var o) ? EffectiveFiling.Merge(shipped, o) : new EffectiveFiling(shipped, shipped, null));
        }
        result.AddRange(byKey.Values.OrderBy(o => o.FilingKey, StringComparer.Ordinal).Select(o => EffectiveFiling.Merge(null, o)));
        return result;
    }
}

/// <summary>A filing as a company sees it: <see cref="Shipped"/> is the data file's version (null for the company's own additions).</summary>
public sealed record EffectiveFiling(ComplianceFiling Filing, ComplianceFiling? Shipped, ComplianceRuleOverride? Override)
{
    public bool Disabled => Override?.Disabled ?? false;

    public static EffectiveFiling Merge(ComplianceFiling? shipped, ComplianceRuleOverride o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var rule = o.RuleKind is { } kind
            ? new DueDateRule(kind, o.RuleDays, o.RuleMonths, o.RuleMonth, o.RuleDay, o.RuleYearOffset)
            : shipped?.Rule ?? throw new InvalidOperationException($"Override {o.FilingKey} adds a filing without a rule.");
        var filing = new ComplianceFiling(
            o.FilingKey,
            o.Form ?? shipped?.Form ?? o.FilingKey,
            o.Title ?? shipped?.Title ?? o.FilingKey,
            o.AppliesTo ?? shipped?.AppliesTo ?? "",
            rule,
            o.Source,
            o.SelectedByDefault ?? shipped?.SelectedByDefault ?? true,
            o.StepList() ?? shipped?.Steps);
        return new EffectiveFiling(filing, shipped, o);
    }
}

/// <summary>An Indian financial year, 1 April to 31 March, written "2025-26".</summary>
public readonly record struct FinancialYear(DateOnly Start, DateOnly End)
{
    public string Label => string.Create(CultureInfo.InvariantCulture, $"{Start.Year}-{End.Year % 100:00}");

    public static FinancialYear StartingIn(int year) => new(new DateOnly(year, 4, 1), new DateOnly(year + 1, 3, 31));

    /// <summary>
    /// The longest an AGM adopting this year's accounts may follow its end: 6 months (9 for a
    /// first AGM), plus an extension, or late; but one held after the next year has ended too is
    /// that year's AGM.
    /// </summary>
    public const int MaxMonthsToAgm = 12;

    /// <summary>
    /// Whether <paramref name="agm"/> can be the AGM that adopts this year's accounts: after the
    /// year ends and within <see cref="MaxMonthsToAgm"/> months of it. Anything else is a typo or
    /// another year's AGM, whose due dates would plan this year's filings a year out.
    /// </summary>
    public bool CouldHoldAgm(DateOnly agm) => agm > End && agm <= End.AddMonths(MaxMonthsToAgm);

    /// <summary>The error for an <c>agmDate</c> that <see cref="CouldHoldAgm"/> refuses.</summary>
    public string AgmHint => string.Create(CultureInfo.InvariantCulture,
        $"agmDate must be after FY {Label} ends ({End:dd MMMM yyyy}) and within {MaxMonthsToAgm} months of it: the AGM that adopts its accounts.");

    /// <summary>"2025-26" or "2025-2026".</summary>
    public static bool TryParse(string? text, out FinancialYear year)
    {
        year = default;
        var parts = text?.Trim().Split('-');
        if (parts is not { Length: 2 }
            || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var start) || start is < 2000 or > 2200
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var end))
        {
            return false;
        }
        var matches = parts[1].Length switch
        {
            2 => end == (start + 1) % 100,
            4 => end == start + 1,
            _ => false,
        };
        if (matches)
        {
            year = StartingIn(start);
        }
        return matches;
    }

    public override string ToString() => Label;
}
