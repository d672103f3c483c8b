using System.Net;
using System.Text.Json.Nodes;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Workflows;

public sealed class ReminderApiTests(DatabaseFixture db) : WorkflowApiTests(db)
{
    private static object PaymentReminder(Guid? customerId = null, string? externalId = null, string dueDate = "2026-03-10", string reference = "Invoice INV-1042") => new
    {
        customerId,
        customerExternalId = externalId,
        type = "PAYMENT_REMINDER",
        reference,
        dueDate,
        templateKey = "payment-reminder",
        templateData = new { amount = "₹11,800" },
        steps = new object[]
        {
            new { offsetDays = -3 },
            new { offsetDays = 1, sendAt = "09:30", templateKey = "payment-overdue", channel = "EMAIL", templateData = new { tone = "firm" } },
        },
    };

    [Fact]
    public async Task A_reminder_is_created_with_its_steps_at_the_customers_local_time_across_the_DST_change()
    {
        var (client, _, customer) = await PracticeAsync("America/New_York");

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(externalId: "CLIENT-77"));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(customer.ToString(), body.Text("customerId"));
        Assert.Equal(("PAYMENT_REMINDER", "ACTIVE", "2026-03-10", "America/New_York"), (body.Text("type"), body.Text("status"), body.Text("dueDate"), body.Text("timeZone")));
        // The deadline is the practice's (Kolkata): midnight IST after 10 March, not New York's.
        Assert.Equal(("2026-03-10T18:30:00+00:00", "2026-03-10T18:30:00+00:00"), (body.Text("dueAt"), body.Text("graceEndsAt")));
        var steps = body!["steps"]!.AsArray();
        // 10:00 EST on 7 March; 09:30 EDT on 11 March (New York moved its clocks on 8 March).
        Assert.Equal(["2026-03-07T15:00:00+00:00", "2026-03-11T13:30:00+00:00"], steps.Select(s => s.Text("scheduledFor")));
        Assert.Equal(["10:00", "09:30"], steps.Select(s => s.Text("sendAt")));
        Assert.Equal(["payment-reminder", "payment-overdue"], steps.Select(s => s.Text("templateKey")));
        Assert.Equal(["PREFERRED", "EMAIL"], steps.Select(s => s.Text("channel")));
        Assert.All(steps, s => Assert.Equal("SCHEDULED", s.Text("state")));
        Assert.Equal("₹11,800", body!["templateData"]!["amount"]!.GetValue<string>());

        var (get, fetched) = await client.SendJsonAsync(HttpMethod.Get, response.Headers.Location!.ToString());
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal(body.ToJsonString(), fetched!.ToJsonString());
    }

    [Fact]
    public async Task A_retried_create_answers_the_active_reminder_it_made_instead_of_starting_a_second_sequence()
    {
        var (client, company, _) = await PracticeAsync();

        var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(externalId: "CLIENT-77"))));
        var created = Assert.Single(answers, a => a.Response.StatusCode == HttpStatusCode.Created);
        Assert.All(answers.Where(a => a != created), a => Assert.Equal((HttpStatusCode.OK, created.Body!["id"]!.GetValue<long>()), (a.Response.StatusCode, a.Body!["id"]!.GetValue<long>())));
        Assert.Equal(1L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM reminders WHERE company_id = $1", company));

        // The same key with another plan is not a retry: a conflict, not a silent drop of the change.
        var changedRequest = System.Text.Json.Nodes.JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(PaymentReminder(externalId: "CLIENT-77")))!;
        changedRequest["graceDays"] = 3;
        var (changed, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", changedRequest.ToJsonString());
        Assert.Equal(HttpStatusCode.Conflict, changed.StatusCode);
        Assert.Contains("resolve it first", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        // Another due date is another reminder; once resolved, the same one may be created again.
        var later = PaymentReminder(externalId: "CLIENT-77", dueDate: "2026-04-10");
        Assert.Equal(HttpStatusCode.Created, (await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", later)).Response.StatusCode);
        await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{created.Body!["id"]!.GetValue<long>()}/resolve", new { note = "paid" });
        Assert.Equal(HttpStatusCode.Created, (await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(externalId: "CLIENT-77"))).Response.StatusCode);
    }

    [Fact]
    public async Task Invalid_fields_are_answered_400_naming_each_field()
    {
        var (client, _, customer) = await PracticeAsync();

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
        {
            customerId = customer,
            type = "INVOICE",
            reference = "MGT-7 for FY 2025-26",
            dueDate = "19/11/2026",
            graceDays = 400,
            steps = new object[]
            {
                new { offsetDays = -7, sendAt = "25:00" },
                new { templateKey = "x", channel = "FAX", templateData = new[] { 1 } },
            },
        });

        WorkflowApi.AssertFields(response, body, "type", "dueDate", "graceDays", "steps[0].sendAt", "steps[0].templateKey", "steps[1].offsetDays", "steps[1].channel", "steps[1].templateData");

        var (noCustomer, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new { type = "PAYMENT_REMINDER", reference = "x", dueDate = "2026-03-10", templateKey = "t", steps = new[] { new { offsetDays = 0 } } });
        WorkflowApi.AssertFields(noCustomer, problem, "customerId");

        var (noSteps, stepsProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new { customerId = customer, type = "PAYMENT_REMINDER", reference = "x", dueDate = "2026-03-10", steps = Array.Empty<object>() });
        WorkflowApi.AssertFields(noSteps, stepsProblem, "steps");

        // A date at the calendar's end (its steps and grace would run past it) and template data PostgreSQL cannot store: 400s, not 500s.
        var (endOfTime, endProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders",
            $$"""{"customerId":"{{customer}}","type":"PAYMENT_REMINDER","reference":"x","dueDate":"9999-12-31","templateKey":"t","templateData":{"invoice":"\ud800"},"steps":[{"offsetDays":0}]}""");
        WorkflowApi.AssertFields(endOfTime, endProblem, "dueDate", "templateData");

        // A NUL, which PostgreSQL cannot store, is named by its field (not "body"), in the reminder,
        // its step, a resolve's note and a schedule.
        var (nul, nulProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders",
            new { customerId = customer, type = "PAYMENT_REMINDER", reference = "INV\u0000", dueDate = "2026-03-10", templateKey = "t", steps = new[] { new { offsetDays = 0, templateKey = "t\u0000" } } });
        WorkflowApi.AssertFields(nul, nulProblem, "reference", "steps[0].templateKey");
        var (nulNote, nulNoteProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders/1/resolve", new { note = "paid\u0000" });
        WorkflowApi.AssertFields(nulNote, nulNoteProblem, "note");
        var (nulSchedule, nulScheduleProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/nul-key",
            new { cron = "0 9 * * MON", type = "GENERAL_UPDATE", channel = "EMAIL", templateKey = "digest\u0000", audience = new { kind = "ALL_CUSTOMERS" } });
        Assert.Contains("templateKey", nulScheduleProblem!["errors"]!.AsObject().Select(e => e.Key));
        Assert.Equal(HttpStatusCode.BadRequest, nulSchedule.StatusCode);

        // The most negative int has no positive counterpart (Math.Abs throws on it): a 400 too.
        var (minimum, minimumProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders",
            new { customerId = customer, type = "PAYMENT_REMINDER", reference = "x", dueDate = "2026-03-10", templateKey = "t", steps = new[] { new { offsetDays = int.MinValue } } });
        WorkflowApi.AssertFields(minimum, minimumProblem, "steps[0].offsetDays");
    }

    [Fact]
    public async Task A_reminder_whose_every_step_has_passed_is_refused_and_past_steps_of_a_live_one_are_skipped()
    {
        var (client, _, customer) = await PracticeAsync();

        var (refused, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
        {
            customerId = customer, type = "PAYMENT_REMINDER", reference = "Invoice INV-0999", dueDate = "2025-12-01", templateKey = "payment-reminder",
            steps = new[] { new { offsetDays = -3 }, new { offsetDays = 7 } },
        });
        WorkflowApi.AssertFields(refused, problem, "steps");

        var (created, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
        {
            customerId = customer, type = "PAYMENT_REMINDER", reference = "Invoice INV-1000", dueDate = "2026-01-01", templateKey = "payment-reminder",
            steps = new[] { new { offsetDays = -3 }, new { offsetDays = 7 } },
        });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal(["SKIPPED", "SCHEDULED"], body!["steps"]!.AsArray().Select(s => s.Text("state")));
        Assert.Contains("had passed when the reminder was created", body["steps"]![0].Text("reason"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_retry_after_the_last_steps_time_or_in_another_case_is_answered_with_the_reminder_it_created()
    {
        var (client, _, customer) = await PracticeAsync();
        object Request(string reference) => new
        {
            customerId = customer, type = "PAYMENT_REMINDER", reference, dueDate = "2026-01-10", templateKey = "payment-reminder",
            steps = new[] { new { offsetDays = -1 } },   // 9 January, 10:00 IST
        };
        var (created, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", Request("Invoice INV-2000"));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = body!["id"]!.GetValue<long>();

        // The answer was lost; the business app retries after the step's time, and writes the reference in capitals.
        Time.SetUtcNow(new DateTimeOffset(2026, 1, 9, 5, 0, 0, TimeSpan.Zero));
        var (retried, again) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", Request("Invoice INV-2000"));
        var (shouted, same) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", Request("INVOICE INV-2000"));

        Assert.Equal((HttpStatusCode.OK, id), (retried.StatusCode, again!["id"]!.GetValue<long>()));
        Assert.Equal((HttpStatusCode.OK, id), (shouted.StatusCode, same!["id"]!.GetValue<long>()));
        Assert.Equal(1, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM reminders WHERE customer_id = $1", customer));
    }

    [Fact]
    public async Task A_resolve_at_the_same_moment_as_another_waits_for_it_and_keeps_the_first_resolution()
    {
        var (client, _, customer) = await PracticeAsync();
        var (_, reminder) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(customer));
        var id = reminder!["id"]!.GetValue<long>();
        // Another resolve has changed the reminder and not committed yet.
        await using var connection = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var first = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var resolve = new Npgsql.NpgsqlCommand("UPDATE reminders SET status = 'RESOLVED', resolved_at = now(), resolution_note = 'Paid by NEFT' WHERE id = $1", connection, first) { Parameters = { new() { Value = id } } })
        {
            Assert.Equal(1, await resolve.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }

        var second = client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve", new { note = "Paid by cheque" });
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(second.IsCompleted);   // waiting for the first
        await first.CommitAsync(TestContext.Current.CancellationToken);
        var (response, body) = await second;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(("RESOLVED", "Paid by NEFT"), (body!.Text("status"), body.Text("resolutionNote")));
        Assert.Equal("Paid by NEFT", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT resolution_note FROM reminders WHERE id = $1", id));
    }

    [Fact]
    public async Task Resolving_cancels_every_step_not_yet_sent_and_resolving_again_changes_nothing()
    {
        var (client, _, customer) = await PracticeAsync();
        var (_, reminder) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(customer));
        var id = reminder!["id"]!.GetValue<long>();
        // A business app's own message whose metadata happens to carry the same number as its reminderId: not ours to cancel.
        var own = await TestData.ScalarAsync<long>(Db.DataSource, """
            INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, metadata)
            SELECT company_id, id, 'PAYMENT_REMINDER', 'EMAIL', 'Invoice', 'Due', jsonb_build_object('reminderId', $2::bigint) FROM customers WHERE id = $1
            RETURNING id
            """, customer, id);

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve", new { note = "Paid by NEFT, UTR 1234" });
        Assert.Equal("PENDING", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT status FROM communication_logs WHERE id = $1", own));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(("RESOLVED", "Paid by NEFT, UTR 1234"), (body.Text("status"), body.Text("resolutionNote")));
        Assert.All(body!["steps"]!.AsArray(), s => Assert.Equal("CANCELLED", s.Text("state")));
        Assert.Equal(Time.GetUtcNow(), body!["resolvedAt"]!.GetValue<DateTimeOffset>());

        Time.Advance(TimeSpan.FromHours(1));
        var (again, unchanged) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve");
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(body.ToJsonString(), unchanged!.ToJsonString());
    }

    [Fact]
    public async Task The_list_filters_by_customer_status_and_type_and_pages_by_id()
    {
        var (client, company, customer) = await PracticeAsync();
        var other = await TestData.CreateCustomerAsync(Db.DataSource, company, externalId: "CLIENT-78");
        var ids = new List<long>();
        foreach (var (who, invoice) in new[] { (customer, "INV-1"), (customer, "INV-2"), (other, "INV-3") })
        {
            var (_, created) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(who, reference: invoice));
            ids.Add(created!["id"]!.GetValue<long>());
        }
        await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{ids[0]}/resolve");

        var (_, active) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/reminders?customerId={customer}&status=ACTIVE&type=PAYMENT_REMINDER");
        Assert.Equal([ids[1]], active!["items"]!.AsArray().Select(r => r!["id"]!.GetValue<long>()));

        var (_, first) = await client.SendJsonAsync(HttpMethod.Get, "/v1/reminders?limit=2");
        Assert.Equal(ids[..2], first!["items"]!.AsArray().Select(r => r!["id"]!.GetValue<long>()));
        var (_, second) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/reminders?limit=2&after={first["nextAfter"]}");
        Assert.Equal([ids[2]], second!["items"]!.AsArray().Select(r => r!["id"]!.GetValue<long>()));
        Assert.Null(second["nextAfter"]);
        var (_, whole) = await client.SendJsonAsync(HttpMethod.Get, "/v1/reminders?limit=3");
        Assert.Equal((3, null), (whole!["items"]!.AsArray().Count, whole["nextAfter"]?.GetValue<long>()));   // a full last page has no next

        // The billing app's own ids find the reminder of a paid invoice, the reference in any case.
        var (_, paid) = await client.SendJsonAsync(HttpMethod.Get, "/v1/reminders?customerExternalId=CLIENT-78&reference=inv-3&status=ACTIVE");
        Assert.Equal([ids[2]], paid!["items"]!.AsArray().Select(r => r!["id"]!.GetValue<long>()));
        var (_, none) = await client.SendJsonAsync(HttpMethod.Get, "/v1/reminders?customerExternalId=CLIENT-78&reference=INV-1");
        Assert.Empty(none!["items"]!.AsArray());

        var (bad, problem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/reminders?status=DONE&limit=0");
        WorkflowApi.AssertFields(bad, problem, "status", "limit");
    }

    [Fact]
    public async Task Another_companys_reminders_and_customers_are_not_found()
    {
        var (clientA, _, customerA) = await PracticeAsync();
        var (clientB, _, _) = await PracticeAsync();
        var (_, reminder) = await clientA.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(customerA));
        var id = reminder!["id"]!.GetValue<long>();

        Assert.Equal(HttpStatusCode.NotFound, (await clientB.SendJsonAsync(HttpMethod.Get, $"/v1/reminders/{id}")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await clientB.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve")).Response.StatusCode);
        // Another company's customer is named as the request's mistake, as a message names it; nothing tells whether it exists.
        var (created, problem) = await clientB.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(customerA));
        WorkflowApi.AssertFields(created, problem, "customerId");
        var (byExternalId, externalProblem) = await clientB.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(externalId: "CLIENT-404"));
        WorkflowApi.AssertFields(byExternalId, externalProblem, "customerExternalId");
        // The company's own, written with spaces around it, is found as a message's is.
        Assert.Equal(HttpStatusCode.OK, (await clientA.SendJsonAsync(HttpMethod.Post, "/v1/reminders", PaymentReminder(externalId: " CLIENT-77 "))).Response.StatusCode);
        var (_, listB) = await clientB.SendJsonAsync(HttpMethod.Get, $"/v1/reminders?customerId={customerA}");
        Assert.Empty(listB!["items"]!.AsArray());
        var (_, stillActive) = await clientA.SendJsonAsync(HttpMethod.Get, $"/v1/reminders/{id}");
        Assert.Equal("ACTIVE", stillActive.Text("status"));

        using var admin = Api.As(TestKeys.Admin);
        Assert.Equal(HttpStatusCode.Forbidden, (await admin.SendJsonAsync(HttpMethod.Get, "/v1/reminders")).Response.StatusCode);
    }
}
