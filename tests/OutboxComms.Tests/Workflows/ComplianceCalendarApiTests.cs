using System.Net;
using System.Text.Json.Nodes;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Workflows;

public sealed class ComplianceCalendarApiTests(DatabaseFixture db) : WorkflowApiTests(db)
{
    private static JsonNode Filing(JsonNode? calendar, string key) => calendar!["filings"]!.AsArray().Single(f => f.Text("key") == key)!;

    [Fact]
    public async Task The_calendar_shows_each_filings_rule_source_and_due_date_for_a_financial_year()
    {
        var (client, _, _) = await PracticeAsync();

        var (response, calendar) = await client.SendJsonAsync(HttpMethod.Get, "/v1/compliance-calendar?financialYear=2025-26&agmDate=2026-09-20");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("not legal advice", calendar.Text("notice"), StringComparison.Ordinal);
        var mgt7 = Filing(calendar, "MGT-7");
        Assert.Equal(("2026-11-19", "SHIPPED", "60 days after the AGM"), (mgt7.Text("dueDate"), mgt7.Text("origin"), mgt7["rule"].Text("text")));
        Assert.Contains("s.92(4)", mgt7.Text("source"), StringComparison.Ordinal);
        Assert.Equal("2025-10-31", Filing(calendar, "MSME-1-APR-SEP").Text("dueDate"));

        var (bad, problem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/compliance-calendar?financialYear=2025&agmDate=20-09-2026");
        WorkflowApi.AssertFields(bad, problem, "financialYear", "agmDate");
        // An AGM that cannot adopt FY 2025-26's accounts: before the year ends, or another year's.
        foreach (var wrongAgm in new[] { "2026-03-20", "2027-10-01" })
        {
            var (wrong, wrongProblem) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/compliance-calendar?financialYear=2025-26&agmDate={wrongAgm}");
            WorkflowApi.AssertFields(wrong, wrongProblem, "agmDate");
            Assert.Contains("after FY 2025-26 ends (31 March 2026) and within 12 months", wrongProblem!["errors"]!["agmDate"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        }
        var (created, createdProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerExternalId = "CLIENT-77", financialYear = "2024-25", agmDate = "2026-09-20" });
        WorkflowApi.AssertFields(created, createdProblem, "agmDate");
    }

    [Fact]
    public async Task A_customers_reminders_are_created_from_the_financial_year_and_AGM_date_once()
    {
        var (client, _, customer) = await PracticeAsync();
        var request = new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-20", sendAt = "11:00" };

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", request);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var created = body!["created"]!.AsArray();
        // The filings selected by default, in due-date order.
        Assert.Equal(["DPT-3", "AGM", "AOC-4", "MGT-7"], created.Select(r => r.Text("calendarKey")));
        Assert.Equal(["2026-06-30", "2026-09-30", "2026-10-20", "2026-11-19"], created.Select(r => r.Text("dueDate")));
        var mgt7 = created.Single(r => r.Text("calendarKey") == "MGT-7")!;
        Assert.Equal(("MGT-7 for FY 2025-26", "COMPLIANCE_REMINDER", "2025-26"), (mgt7.Text("reference"), mgt7.Text("type"), mgt7.Text("financialYear")));
        Assert.Equal([-30, -7, -1, 1], mgt7["steps"]!.AsArray().Select(s => s!["offsetDays"]!.GetValue<int>()));
        Assert.Equal(["compliance-reminder", "compliance-reminder", "compliance-final-reminder", "compliance-overdue"], mgt7["steps"]!.AsArray().Select(s => s.Text("templateKey")));
        Assert.Equal("2026-10-20T05:30:00+00:00", mgt7["steps"]![0].Text("scheduledFor"));   // 11:00 IST, 30 days before
        Assert.Equal("MGT-7", mgt7["templateData"]!["filing"].Text("form"));
        Assert.Contains("s.92(4)", mgt7["templateData"]!["filing"].Text("source"), StringComparison.Ordinal);
        Assert.Equal([-45, -21, -7], created.Single(r => r.Text("calendarKey") == "AGM")!["steps"]!.AsArray().Select(s => s!["offsetDays"]!.GetValue<int>()));
        Assert.Empty(body["skipped"]!.AsArray());

        var (again, repeat) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", request);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Empty(repeat!["created"]!.AsArray());
        Assert.All(repeat["skipped"]!.AsArray(), s => Assert.StartsWith("already created for FY 2025-26", s.Text("reason"), StringComparison.Ordinal));
        Assert.Equal(4, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM reminders WHERE customer_id = $1", customer));
    }

    [Fact]
    public async Task A_resolved_filing_is_planned_again_only_when_the_request_names_it()
    {
        var (client, _, customer) = await PracticeAsync();
        var (_, first) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-20", filings = new[] { "MGT-7", "AOC-4" } });
        var mgt7 = first!["created"]!.AsArray().Single(r => r.Text("calendarKey") == "MGT-7")!["id"]!.GetValue<long>();
        // The AGM was adjourned to 27 September: the reminder planned on the 20th is resolved…
        await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{mgt7}/resolve", new { note = "AGM adjourned to 27 Sep" });

        // …planning the defaults again does not bring it back (resolved usually means filed)…
        var (_, defaults) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-27" });
        var skipped = defaults!["skipped"]!.AsArray().ToDictionary(s => s.Text("key"), s => s.Text("reason"));
        Assert.Equal($"resolved for FY 2025-26: reminder {mgt7}; name it in filings to create it again", skipped["MGT-7"]);
        Assert.StartsWith("already created for FY 2025-26", skipped["AOC-4"], StringComparison.Ordinal);

        // …naming it plans it on the new date, once.
        var (again, replanned) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-27", filings = new[] { "MGT-7" } });
        Assert.Equal(HttpStatusCode.Created, again.StatusCode);
        Assert.Equal("2026-11-26", Assert.Single(replanned!["created"]!.AsArray())!.Text("dueDate"));
        var (_, twice) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-27", filings = new[] { "MGT-7" } });
        Assert.StartsWith("already created for FY 2025-26", Assert.Single(twice!["skipped"]!.AsArray()).Text("reason"), StringComparison.Ordinal);
        Assert.Equal(2, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM reminders WHERE customer_id = $1 AND calendar_key = 'MGT-7'", customer));
    }

    [Fact]
    public async Task Template_data_naming_a_field_twice_keeps_the_last_as_a_hand_made_reminder_does()
    {
        var (client, _, customer) = await PracticeAsync();

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            $$$$"""{"customerId":"{{{{customer}}}}","financialYear":"2025-26","agmDate":"2026-09-20","filings":["MGT-7"],"templateData":{"signature":"A","signature":"Rao & Associates","nested":{"x":1,"x":2}}}""");

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = Assert.Single(body!["created"]!.AsArray())!["id"]!.GetValue<long>();
        Assert.Equal("Rao & Associates/MGT-7", await TestData.ScalarAsync<string>(Db.DataSource,
            "SELECT (template_data->>'signature') || '/' || (template_data->'filing'->>'key') FROM reminders WHERE id = $1", id));
    }

    [Fact]
    public async Task A_filing_a_reminder_made_by_hand_already_reminds_of_is_not_planned_twice()
    {
        var (client, _, customer) = await PracticeAsync();
        async Task<long> ByHand(string reference, string dueDate)
        {
            var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
            {
                customerId = customer, type = "COMPLIANCE_REMINDER", reference, dueDate, templateKey = "compliance-reminder", steps = new[] { new { offsetDays = -7 } },
            });
            Assert.True(response.StatusCode == HttpStatusCode.Created, body?.ToJsonString());
            return body!["id"]!.GetValue<long>();
        }
        await ByHand("AOC-4 CFS for FY 2025-26", "2026-10-20");       // the consolidated statements: a filing of its own, due the same day
        await ByHand("MGT-7 for FY 2025-26", "2026-11-26");           // the MGT-7 of another AGM date
        var annualReturn = await ByHand("mgt-7 for FY 2025-26 ", "2026-11-19");

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-20", filings = new[] { "MGT-7", "AOC-4" } });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(["AOC-4"], body!["created"]!.AsArray().Select(r => r.Text("calendarKey")));
        var skipped = Assert.Single(body["skipped"]!.AsArray());
        Assert.Equal(("MGT-7", $"due 2026-11-19: reminder {annualReturn} ('mgt-7 for FY 2025-26'), made by hand, already reminds of it; resolve that one to plan this one instead"),
            (skipped.Text("key"), skipped.Text("reason")));
    }

    [Fact]
    public async Task A_filing_whose_form_another_filing_shares_is_covered_by_a_hand_made_reminder_named_by_its_form()
    {
        var (client, _, customer) = await PracticeAsync();
        // The practice's own "AOC-4 for FY 2025-26" (AOC-4-OPC shares the form in the calendar, but is not planned here).
        var (handMade, byHand) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
        {
            customerId = customer, type = "COMPLIANCE_REMINDER", reference = "AOC-4 for FY 2025-26", dueDate = "2026-10-20", templateKey = "compliance-reminder", steps = new[] { new { offsetDays = -7 } },
        });
        Assert.Equal(HttpStatusCode.Created, handMade.StatusCode);

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders",
            new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-20", filings = new[] { "AOC-4", "MGT-7" } });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(["MGT-7 for FY 2025-26"], body!["created"]!.AsArray().Select(r => r.Text("reference")));
        Assert.StartsWith($"due 2026-10-20: reminder {byHand!["id"]!.GetValue<long>()} ('AOC-4 for FY 2025-26'), made by hand", Assert.Single(body["skipped"]!.AsArray()).Text("reason"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Filings_that_need_the_AGM_date_or_whose_steps_have_all_passed_are_skipped_with_the_reason()
    {
        var (client, _, _) = await PracticeAsync();

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", new
        {
            customerExternalId = "CLIENT-77", financialYear = "2025-26", filings = new[] { "AOC-4", "DPT-3", "MSME-1-APR-SEP", "MSME-1-OCT-MAR" },
        });

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(["MSME-1 (MSME-1-OCT-MAR) for FY 2025-26", "DPT-3 for FY 2025-26"], body!["created"]!.AsArray().Select(r => r.Text("reference")));
        var skipped = body["skipped"]!.AsArray().ToDictionary(s => s.Text("key"), s => s.Text("reason"));
        Assert.Equal("needs agmDate: due 30 days after the AGM", skipped["AOC-4"]);
        Assert.Equal("due 2025-10-31: every step's time has already passed", skipped["MSME-1-APR-SEP"]);

        var (bad, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", new
        {
            customerExternalId = "CLIENT-77", financialYear = "2025-27", agmDate = "2026-09-20", filings = new[] { "MGT-7", "GST-9" }, channel = "FAX",
        });
        WorkflowApi.AssertFields(bad, problem, "financialYear", "filings[1]", "channel");
    }

    [Fact]
    public async Task A_practice_corrects_a_rule_for_its_own_company_and_can_go_back_to_the_shipped_one()
    {
        var (clientA, _, customerA) = await PracticeAsync();
        var (clientB, _, _) = await PracticeAsync();

        var (put, filing) = await clientA.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/AOC-4", new
        {
            rule = new { kind = "DAYS_AFTER_AGM", days = 45 },
            source = "Extension by MCA General Circular (as read by the practice)",
        });

        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        Assert.Equal(("OVERRIDDEN", 45, 30), (filing.Text("origin"), filing!["rule"]!["days"]!.GetValue<int>(), filing["shipped"]!["rule"]!["days"]!.GetValue<int>()));
        Assert.Equal(("AOC-4", true), (filing.Text("form"), filing["selectedByDefault"]!.GetValue<bool>()));
        Assert.StartsWith("api-key:", filing.Text("updatedBy"), StringComparison.Ordinal);
        var (_, calendarA) = await clientA.SendJsonAsync(HttpMethod.Get, "/v1/compliance-calendar?financialYear=2025-26&agmDate=2026-09-20");
        var (_, calendarB) = await clientB.SendJsonAsync(HttpMethod.Get, "/v1/compliance-calendar?financialYear=2025-26&agmDate=2026-09-20");
        Assert.Equal("2026-11-04", Filing(calendarA, "AOC-4").Text("dueDate"));
        Assert.Equal(("2026-10-20", "SHIPPED"), (Filing(calendarB, "AOC-4").Text("dueDate"), Filing(calendarB, "AOC-4").Text("origin")));

        var (_, created) = await clientA.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", new
        {
            customerId = customerA, financialYear = "2025-26", agmDate = "2026-09-20", filings = new[] { "AOC-4" },
        });
        Assert.Equal("2026-11-04", created!["created"]![0].Text("dueDate"));

        Assert.Equal(HttpStatusCode.NotFound, (await clientB.SendJsonAsync(HttpMethod.Delete, "/v1/compliance-calendar/AOC-4")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await clientA.SendJsonAsync(HttpMethod.Delete, "/v1/compliance-calendar/AOC-4")).Response.StatusCode);
        var (_, restored) = await clientA.SendJsonAsync(HttpMethod.Get, "/v1/compliance-calendar?financialYear=2025-26&agmDate=2026-09-20");
        Assert.Equal("2026-10-20", Filing(restored, "AOC-4").Text("dueDate"));
    }

    [Fact]
    public async Task A_practice_adds_its_own_filing_or_hides_one_and_bad_corrections_are_answered_400_naming_the_field()
    {
        var (client, _, customer) = await PracticeAsync();

        var (added, csr) = await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/CSR-2", new
        {
            form = "CSR-2", title = "Report on corporate social responsibility", rule = new { kind = "FIXED_DATE", month = 3, day = 31, yearOffset = 1 },
            source = "Companies (CSR Policy) Rules, 2014, r.12(1A)", steps = new[] { new { offsetDays = -14, templateKey = "csr-reminder" } },
        });
        Assert.Equal(HttpStatusCode.OK, added.StatusCode);
        Assert.Equal("ADDED", csr.Text("origin"));
        Assert.Null(csr!["shipped"]);
        await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/DPT-3", new { disabled = true, source = "no deposits or exempt receipts" });

        var (_, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-20" });
        var keys = body!["created"]!.AsArray().Select(r => r.Text("calendarKey")).ToList();
        Assert.Contains("CSR-2", keys);
        Assert.DoesNotContain("DPT-3", keys);
        Assert.Equal("2027-03-31", body["created"]!.AsArray().Single(r => r.Text("calendarKey") == "CSR-2")!.Text("dueDate"));

        var (bad, problem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/MGT-7", new { rule = new { kind = "DAYS_AFTER_AGM", days = -5, month = 3 } });
        WorkflowApi.AssertFields(bad, problem, "rule.days", "rule.month", "source");
        var (newWithoutRule, newProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/FORM-X", new { source = "s" });
        WorkflowApi.AssertFields(newWithoutRule, newProblem, "form", "title", "rule");
        var (badSteps, stepsProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/MGT-7", new { source = "s", steps = new object[] { new { templateKey = "t" }, new { offsetDays = 1000, templateKey = "" }, new { offsetDays = int.MinValue, templateKey = "t" } } });
        WorkflowApi.AssertFields(badSteps, stepsProblem, "steps[0].offsetDays", "steps[1].offsetDays", "steps[1].templateKey", "steps[2].offsetDays");
        // Blank names (every such filing would be called ""), spaces for appliesTo, and a NUL PostgreSQL cannot store.
        var (blank, blankProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/MGT-7", new { source = "circular\u0000", form = "   ", title = "", appliesTo = "  " });
        WorkflowApi.AssertFields(blank, blankProblem, "source", "form", "title", "appliesTo");
        var (badKey, keyProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/compliance-calendar/mgt 7", new { source = "s", rule = new { kind = "WHENEVER" } });
        WorkflowApi.AssertFields(badKey, keyProblem, "key", "rule.kind", "form", "title");
    }
}
