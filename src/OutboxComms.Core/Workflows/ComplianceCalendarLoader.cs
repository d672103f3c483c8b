using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace OutboxComms.Core.Workflows;

/// <summary>
/// Reads the compliance calendar: the data file shipped inside this assembly
/// (<c>Workflows/compliance-calendar.json</c>), or a deployment's own file of the same shape named
/// by <c>Workflows:ComplianceCalendarPath</c>. Every problem in the file is reported at once, with
/// its JSON path, so a bad edit stops the API at start rather than producing wrong due dates.
/// </summary>
public static class ComplianceCalendarLoader
{
    public const string ResourceName = "workflows/compliance-calendar.json";

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        // A misspelt field in a hand-edited file must be an error, not a silently ignored line.
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseUpper, allowIntegerValues: false) },
    };

    /// <summary>The shipped calendar, or the file at <paramref name="path"/> when given.</summary>
    public static ComplianceCalendar Load(string? path = null)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            using var shipped = typeof(ComplianceCalendarLoader).Assembly.GetManifestResourceStream(ResourceName)
                ?? throw new InvalidOperationException($"The embedded resource {ResourceName} is missing from the build.");
            return Load(shipped, "the shipped compliance calendar");
        }
        if (!File.Exists(path))
        {
            throw new ComplianceCalendarException(path, [$"file not found: {path}"]);
        }
        using var file = File.OpenRead(path);
        return Load(file, path);
    }

    public static ComplianceCalendar Load(Stream json, string origin)
    {
        CalendarFile? file;
        try
        {
            file = JsonSerializer.Deserialize<CalendarFile>(json, Json);
        }
        catch (JsonException ex)
        {
            throw new ComplianceCalendarException(origin, [$"{ex.Path ?? "$"}: {ex.Message}"]);
        }
        var problems = new List<string>();
        var calendar = file is null ? null : Validate(file, problems);
        if (calendar is null || problems.Count > 0)
        {
            throw new ComplianceCalendarException(origin, problems.Count > 0 ? problems : ["the file is empty"]);
        }
        return calendar;
    }

    private static ComplianceCalendar? Validate(CalendarFile file, List<string> problems)
    {
        void Add(string field, string message) => problems.Add($"{field}: {message}");

        if (string.IsNullOrWhiteSpace(file.Version))
        {
            Add("version", "version is required.");
        }
        if (string.IsNullOrWhiteSpace(file.Notice))
        {
            Add("notice", "notice is required: say that the calendar is a convenience, not legal advice.");
        }
        foreach (var (field, message) in CalendarStep.Problems(file.DefaultSteps, "defaultSteps"))
        {
            Add(field, message);
        }
        if (file.Filings is not { Count: > 0 })
        {
            Add("filings", "filings needs at least one filing.");
            return null;
        }

        var filings = new List<ComplianceFiling>();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < file.Filings.Count; i++)
        {
            var at = $"filings[{i}]";
            var f = file.Filings[i];
            if (f is null)
            {
                Add(at, "a filing is an object.");
                continue;
            }
            if (!ComplianceFiling.IsValidKey(f.Key))
            {
                Add($"{at}.key", ComplianceFiling.KeyRule);
            }
            else if (!keys.Add(f.Key!))
            {
                Add($"{at}.key", $"the key {f.Key} is used twice.");
            }
            foreach (var (field, value) in new[] { ("form", f.Form), ("title", f.Title), ("appliesTo", f.AppliesTo), ("source", f.Source) })
            {
                if (string.IsNullOrWhiteSpace(value))
                {
                    Add($"{at}.{field}", $"{field} is required.");
                }
            }
            DueDateRule? rule = null;
            if (f.Rule?.Kind is not { } kind)
            {
                Add($"{at}.rule.kind", "rule.kind is required: FIXED_DATE, DAYS_AFTER_AGM, DAYS_AFTER_FINANCIAL_YEAR_END or MONTHS_AFTER_FINANCIAL_YEAR_END.");
            }
            else
            {
                rule = new DueDateRule(kind, f.Rule.Days, f.Rule.Months, f.Rule.Month, f.Rule.Day, f.Rule.YearOffset);
                foreach (var (field, message) in rule.Problems())
                {
                    Add($"{at}.rule.{field}", message);
                }
            }
            if (f.Steps is not null)
            {
                foreach (var (field, message) in CalendarStep.Problems(f.Steps, $"{at}.steps"))
                {
                    Add(field, message);
                }
            }
            if (rule is not null)
            {
                filings.Add(new ComplianceFiling(f.Key!, f.Form!, f.Title!, f.AppliesTo!, rule, f.Source!, f.SelectedByDefault ?? true, f.Steps));
            }
        }
        return new ComplianceCalendar(file.Version!, file.Notice!, file.DefaultSteps!, filings);
    }

    // The file's shape, every field optional so that a missing one is reported by name.
    private sealed record CalendarFile(string? Version, string? Notice, List<CalendarStep>? DefaultSteps, List<FilingFile?>? Filings);

    private sealed record FilingFile(string? Key, string? Form, string? Title, string? AppliesTo, RuleFile? Rule, string? Source, bool? SelectedByDefault, List<CalendarStep>? Steps);

    private sealed record RuleFile(DueDateRuleKind? Kind, int? Days, int? Months, int? Month, int? Day, int? YearOffset);
}

/// <summary>A compliance calendar file that cannot be used, with every problem found in it.</summary>
public sealed class ComplianceCalendarException(string origin, IReadOnlyList<string> problems)
    : Exception($"{origin} is not a valid compliance calendar: {string.Join("; ", problems)}")
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>Bound from the <c>Workflows</c> section.</summary>
public sealed class ComplianceCalendarOptions
{
    public const string Section = "Workflows";

    /// <summary>A deployment's own calendar file (same shape as the shipped one); unset uses the shipped calendar.</summary>
    public string? ComplianceCalendarPath { get; set; }
}

public static class ComplianceCalendarExtensions
{
    /// <summary>Registers the calendar as a singleton; a bad file fails the host at start, naming every problem.</summary>
    public static IHostApplicationBuilder AddComplianceCalendar(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<ComplianceCalendarOptions>().BindConfiguration(ComplianceCalendarOptions.Section).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<ComplianceCalendarOptions>, CalendarFileValidation>();
        builder.Services.AddSingleton(sp => ComplianceCalendarLoader.Load(sp.GetRequiredService<IOptions<ComplianceCalendarOptions>>().Value.ComplianceCalendarPath));
        return builder;
    }

    private sealed class CalendarFileValidation : IValidateOptions<ComplianceCalendarOptions>
    {
        public ValidateOptionsResult Validate(string? name, ComplianceCalendarOptions options)
        {
            try
            {
                ComplianceCalendarLoader.Load(options.ComplianceCalendarPath);
                return ValidateOptionsResult.Success;
            }
            catch (ComplianceCalendarException ex)
            {
                return ValidateOptionsResult.Fail(ex.Problems.Select(p => $"Workflows:ComplianceCalendarPath: {p}"));
            }
        }
    }
}
