using System.Net;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Workflows;

/// <summary>
/// Reminders, calendar reminders and schedules name templates that are rendered weeks later: a
/// template that is missing, or has no version for the channel, is a 400 when the plan is saved.
/// </summary>
public sealed class TemplateCheckTests(DatabaseFixture db) : WorkflowApiTests(db)
{
    /// <summary>A company with no templates but an EMAIL <c>invoice-due</c>, and one customer.</summary>
    private async Task<(HttpClient Client, Guid Customer)> BarePracticeAsync()
    {
        var (company, key) = await Api.NewCompanyAsync();
        await TestData.ScalarAsync<int>(Db.DataSource,
            "INSERT INTO message_templates (company_id, key, channel, subject, body) VALUES ($1, 'invoice-due', 'EMAIL', 'Due', 'Dear {{ customer.name }}') RETURNING 1", company);
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        return (Api.As(key), customer);
    }

    private static object Reminder(Guid customer, params object[] steps) =>
        new { customerId = customer, type = "PAYMENT_REMINDER", reference = "Invoice INV-7", dueDate = "2026-03-10", templateKey = "invoice-due", steps };

    [Fact]
    public async Task A_reminder_step_whose_template_is_missing_or_lacks_its_channel_is_a_400_naming_the_step()
    {
        var (client, customer) = await BarePracticeAsync();

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", Reminder(customer,
            new { offsetDays = -7 },                                         // PREFERRED: any version will do
            new { offsetDays = -3, channel = "EMAIL" },
            new { offsetDays = -1, templateKey = "no-such-template" },
            new { offsetDays = 1, channel = "WHATSAPP" },
            new { offsetDays = 2, channel = "BOTH" }));

        WorkflowApi.AssertFields(response, problem, "steps[2].templateKey", "steps[3].templateKey", "steps[4].templateKey");
        var errors = problem!["errors"]!;
        Assert.Equal("No template 'no-such-template' exists in this company: create it with PUT /v1/templates/no-such-template.", errors["steps[2].templateKey"]![0]!.GetValue<string>());
        Assert.StartsWith("Template 'invoice-due' has no WHATSAPP version in the customer's languages (en) (the channel is WHATSAPP; it has EMAIL)", errors["steps[3].templateKey"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.StartsWith("Template 'invoice-due' has no WHATSAPP version in the customer's languages (en) (BOTH sends email and WhatsApp", errors["steps[4].templateKey"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM reminders WHERE customer_id = $1", customer));

        // A template only in Hindi never reaches this English-speaking client (the worker looks in
        // the customer's language, the company's, then English).
        await TestData.ScalarAsync<int>(Db.DataSource,
            "INSERT INTO message_templates (company_id, key, channel, language, subject, body) SELECT company_id, 'hindi-only', 'EMAIL', 'hi', 'देय', 'प्रिय' FROM customers WHERE id = $1 RETURNING 1", customer);
        var (hindi, hindiProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", Reminder(customer, new { offsetDays = -7, templateKey = "hindi-only" }));
        WorkflowApi.AssertFields(hindi, hindiProblem, "steps[0].templateKey");
        Assert.Equal("Template 'hindi-only' has no version in the customer's languages (en): add one with PUT /v1/templates/hindi-only.",
            hindiProblem!["errors"]!["steps[0].templateKey"]![0]!.GetValue<string>());

        var (created, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", Reminder(customer, new { offsetDays = -7 }, new { offsetDays = -3, channel = "EMAIL" }));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
    }

    [Fact]
    public async Task An_enabled_schedule_needs_its_template_and_a_disabled_one_may_wait_for_it()
    {
        var (client, _) = await BarePracticeAsync();
        object Schedule(string templateKey, string channel, bool enabled) =>
            new { cron = "0 9 * * MON", type = "GENERAL_UPDATE", channel, templateKey, audience = new { kind = "ALL_CUSTOMERS" }, enabled };

        var (missing, missingProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", Schedule("weekly-digest", "EMAIL", true));
        var (wrongChannel, wrongChannelProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", Schedule("invoice-due", "SMS", true));
        var (disabled, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", Schedule("weekly-digest", "EMAIL", false));
        var (enabled, enabledProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", Schedule("weekly-digest", "EMAIL", true));
        var (fine, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", Schedule("invoice-due", "EMAIL", true));

        WorkflowApi.AssertFields(missing, missingProblem, "templateKey");
        WorkflowApi.AssertFields(wrongChannel, wrongChannelProblem, "templateKey");
        Assert.StartsWith("Template 'invoice-due' has no SMS version", wrongChannelProblem!["errors"]!["templateKey"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Created, disabled.StatusCode);
        WorkflowApi.AssertFields(enabled, enabledProblem, "templateKey");
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }

    [Fact]
    public async Task Calendar_reminders_are_not_created_while_a_filings_step_template_is_missing_and_the_answer_names_the_filings()
    {
        var (client, customer) = await BarePracticeAsync();
        var request = new { customerId = customer, financialYear = "2025-26", agmDate = "2026-09-20", filings = new[] { "MGT-7", "AOC-4" }, channel = "EMAIL" };

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", request);

        WorkflowApi.AssertFields(response, problem, "filings");
        var messages = problem!["errors"]!["filings"]!.AsArray().Select(m => m!.GetValue<string>()).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(
        [
            "No template 'compliance-final-reminder' exists in this company: create it with PUT /v1/templates/compliance-final-reminder. The steps of MGT-7, AOC-4 use it; or correct their steps with PUT /v1/compliance-calendar/{key}.",
            "No template 'compliance-overdue' exists in this company: create it with PUT /v1/templates/compliance-overdue. The steps of MGT-7, AOC-4 use it; or correct their steps with PUT /v1/compliance-calendar/{key}.",
            "No template 'compliance-reminder' exists in this company: create it with PUT /v1/templates/compliance-reminder. The steps of MGT-7, AOC-4 use it; or correct their steps with PUT /v1/compliance-calendar/{key}.",
        ], messages);
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM reminders WHERE customer_id = $1", customer));

        // The practice points both filings' steps at its one template instead.
        foreach (var filing in request.filings)
        {
            await client.SendJsonAsync(HttpMethod.Put, $"/v1/compliance-calendar/{filing}", new { source = "our reading", steps = new[] { new { offsetDays = -7, templateKey = "invoice-due" } } });
        }
        var (created, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/compliance-calendar/reminders", request);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal(2, body!["created"]!.AsArray().Count);
    }
}
