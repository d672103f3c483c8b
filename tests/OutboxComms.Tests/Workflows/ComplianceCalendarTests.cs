using System.Text;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Tests.Workflows;

public sealed class ComplianceCalendarTests
{
    private static readonly FinancialYear Fy2025 = FinancialYear.StartingIn(2025);
    private static readonly DateOnly Agm = new(2026, 9, 20);

    [Theory]
    [InlineData("AGM", "2026-09-30")]             // six months after 31 March 2026
    [InlineData("AOC-4", "2026-10-20")]           // 30 days after the AGM
    [InlineData("AOC-4-OPC", "2026-09-27")]       // 180 days after 31 March 2026
    [InlineData("MGT-7", "2026-11-19")]           // 60 days after the AGM
    [InlineData("MGT-7A", "2026-11-19")]
    [InlineData("ADT-1", "2026-10-05")]           // 15 days after the AGM
    [InlineData("DIR-3-KYC", "2026-06-30")]
    [InlineData("DPT-3", "2026-06-30")]
    [InlineData("MSME-1-OCT-MAR", "2026-04-30")]
    [InlineData("MSME-1-APR-SEP", "2025-10-31")]  // the half year inside FY 2025-26
    [InlineData("PAS-6-OCT-MAR", "2026-05-30")]   // 60 days after 31 March 2026
    [InlineData("PAS-6-APR-SEP", "2025-11-29")]   // 60 days after 30 September 2025
    public void The_shipped_rules_give_the_expected_due_dates_for_FY_2025_26_with_the_AGM_on_20_September_2026(string key, string expected)
    {
        var filing = ComplianceCalendarLoader.Load().Find(key);

        Assert.NotNull(filing);
        Assert.Equal(DateOnly.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), filing.Rule.DueDate(Fy2025, Agm));
    }

    [Fact]
    public void Every_shipped_filing_names_its_source_and_the_calendar_says_it_is_not_legal_advice()
    {
        var calendar = ComplianceCalendarLoader.Load();

        Assert.Contains("not legal advice", calendar.Notice, StringComparison.Ordinal);
        Assert.All(calendar.Filings, f => Assert.False(string.IsNullOrWhiteSpace(f.Source), f.Key));
        Assert.All(calendar.Filings, f => Assert.Empty(f.Rule.Problems()));
        Assert.Contains(calendar.Filings, f => f.Key == "MGT-7" && f.SelectedByDefault);
        Assert.Equal(calendar.Filings.Count, calendar.Filings.Select(f => f.Key).Distinct().Count());
    }

    [Fact]
    public void AGM_based_filings_have_no_due_date_until_the_AGM_date_is_known()
    {
        var calendar = ComplianceCalendarLoader.Load();

        Assert.Null(calendar.Find("AOC-4")!.Rule.DueDate(Fy2025, null));
        Assert.Equal(new DateOnly(2026, 6, 30), calendar.Find("DPT-3")!.Rule.DueDate(Fy2025, null));
    }

    [Theory]
    [InlineData("2025-26", 2025)]
    [InlineData("2025-2026", 2025)]
    [InlineData(" 2099-00 ", 2099)]
    public void Financial_years_are_read_in_the_Indian_form(string text, int startYear)
    {
        Assert.True(FinancialYear.TryParse(text, out var year));
        Assert.Equal(new DateOnly(startYear, 4, 1), year.Start);
        Assert.Equal(new DateOnly(startYear + 1, 3, 31), year.End);
    }

    [Theory]
    [InlineData("2025-27")]
    [InlineData("25-26")]
    [InlineData("2025")]
    [InlineData("FY 2025-26")]
    [InlineData(null)]
    public void Other_financial_year_spellings_are_refused(string? text) => Assert.False(FinancialYear.TryParse(text, out _));

    [Fact]
    public void A_bad_calendar_file_is_refused_with_the_path_of_every_problem()
    {
        const string json = """
            // a practice's own copy, badly edited
            {
              "version": "x",
              "notice": "not legal advice",
              "defaultSteps": [ { "offsetDays": -7, "templateKey": "r" }, { "offsetDays": -7, "templateKey": "r" } ],
              "filings": [
                { "key": "MGT-7", "form": "MGT-7", "title": "Annual return", "appliesTo": "all", "rule": { "kind": "DAYS_AFTER_AGM" }, "source": "s.92(4)" },
                { "key": "MGT-7", "form": "MGT-7", "title": "Again", "appliesTo": "all", "rule": { "kind": "FIXED_DATE", "month": 2, "day": 29 }, "source": "" },
                { "key": "dpt 3", "form": "DPT-3", "title": "Deposits", "appliesTo": "all", "rule": { "kind": "FIXED_DATE", "month": 6, "day": 30, "days": 3 }, "source": "r.16" }
              ]
            }
            """;

        var error = Assert.Throws<ComplianceCalendarException>(() => ComplianceCalendarLoader.Load(new MemoryStream(Encoding.UTF8.GetBytes(json)), "custom.json"));

        Assert.Contains("defaultSteps: two steps have the same offsetDays.", error.Problems);
        Assert.Contains(error.Problems, p => p.StartsWith("filings[0].rule.days:", StringComparison.Ordinal));
        Assert.Contains(error.Problems, p => p.StartsWith("filings[1].key: the key MGT-7 is used twice", StringComparison.Ordinal));
        Assert.Contains(error.Problems, p => p.StartsWith("filings[1].rule.day:", StringComparison.Ordinal));
        Assert.Contains("filings[1].source: source is required.", error.Problems);
        Assert.Contains(error.Problems, p => p.StartsWith("filings[2].key:", StringComparison.Ordinal));
        Assert.Contains("filings[2].rule.days: days does not apply to a FIXED_DATE rule.", error.Problems);
        Assert.StartsWith("custom.json is not a valid compliance calendar", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_misspelt_field_in_the_file_is_an_error_not_a_silently_ignored_line()
    {
        const string json = """{ "version": "x", "notice": "n", "defaultSteps": [], "filings": [ { "key": "A", "rule": { "kind": "DAYS_AFTER_AGM", "dayz": 30 } } ] }""";

        var error = Assert.Throws<ComplianceCalendarException>(() => ComplianceCalendarLoader.Load(new MemoryStream(Encoding.UTF8.GetBytes(json)), "custom.json"));

        Assert.Contains("dayz", Assert.Single(error.Problems), StringComparison.Ordinal);
    }

    [Fact]
    public void A_deployment_file_replaces_the_shipped_calendar()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, """
                { "version": "practice-1", "notice": "A convenience, not legal advice.",
                  "defaultSteps": [ { "offsetDays": -3, "templateKey": "reminder" } ],
                  "filings": [ { "key": "FORM-11", "form": "Form 11", "title": "LLP annual return", "appliesTo": "LLPs",
                                 "rule": { "kind": "DAYS_AFTER_FINANCIAL_YEAR_END", "days": 60 }, "source": "LLP Rules, 2009, r.25" } ] }
                """);

            var calendar = ComplianceCalendarLoader.Load(path);

            Assert.Equal("practice-1", calendar.Version);
            Assert.Equal(new DateOnly(2026, 5, 30), Assert.Single(calendar.Filings).Rule.DueDate(Fy2025, null));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_company_override_replaces_only_what_it_names_and_may_add_or_hide_filings()
    {
        var calendar = ComplianceCalendarLoader.Load();
        var overrides = new[]
        {
            // An extension by circular: AOC-4 45 days after the AGM this year.
            new ComplianceRuleOverride { FilingKey = "AOC-4", RuleKind = DueDateRuleKind.DaysAfterAgm, RuleDays = 45, Source = "General Circular (hypothetical)", UpdatedBy = "test" },
            new ComplianceRuleOverride { FilingKey = "DPT-3", Disabled = true, Source = "client has no deposits", UpdatedBy = "test" },
            new ComplianceRuleOverride { FilingKey = "CSR-2", Form = "CSR-2", Title = "CSR report", RuleKind = DueDateRuleKind.FixedDate, RuleMonth = 3, RuleDay = 31, RuleYearOffset = 1, Source = "CSR Rules", UpdatedBy = "test" },
        };

        var effective = calendar.For(overrides);

        var aoc4 = effective.Single(f => f.Filing.Key == "AOC-4");
        Assert.Equal(new DateOnly(2026, 11, 4), aoc4.Filing.Rule.DueDate(Fy2025, Agm));
        Assert.Equal(calendar.Find("AOC-4")!.Title, aoc4.Filing.Title);
        Assert.Equal("General Circular (hypothetical)", aoc4.Filing.Source);
        Assert.True(effective.Single(f => f.Filing.Key == "DPT-3").Disabled);
        var csr = effective.Single(f => f.Filing.Key == "CSR-2");
        Assert.Null(csr.Shipped);
        Assert.Equal(new DateOnly(2027, 3, 31), csr.Filing.Rule.DueDate(Fy2025, Agm));
        Assert.Equal(calendar.Filings.Count + 1, effective.Count);
    }
}
