using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OutboxComms.Core.Messages;
using OutboxComms.Tests.Infrastructure;
using static OutboxComms.Tests.Api.MessageTestData;

namespace OutboxComms.Tests.Api;

public sealed class ReplayAndAnalyticsTests(DatabaseFixture db) : ApiTests(db)
{
    [Fact]
    public async Task Replaying_a_failed_message_makes_it_pending_now_with_a_fresh_budget_keeps_its_attempts_and_wakes_the_workers()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer, channel: "SMS");
        await SetAsync(Db.DataSource, id, """
            status = 'FAILED', retry_count = 3, attempt_count = 4, error_message = 'Twilio 30003: Unreachable destination handset',
            failed_at = now() - interval '1 hour', next_attempt_at = now() - interval '1 hour'
            """);
        await using (var attempts = Db.DataSource.CreateCommand("""
            INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, outcome, error_message)
            SELECT $1, $2, n, 'SMS', 'TRANSIENT_FAILURE', 'Twilio 30003: Unreachable destination handset' FROM generate_series(1, 4) n
            """))
        {
            attempts.Parameters.AddWithValue(id);
            attempts.Parameters.AddWithValue(company);
            await attempts.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using var listener = await ListenAsync();
        var woken = 0;
        listener.Notification += (_, _) => Interlocked.Increment(ref woken);
        using var client = Api.As(key);
        var before = DateTimeOffset.UtcNow;

        var (response, view) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{id}/replay");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var row = await Outbox.GetAsync(Db.DataSource, id);
        Assert.Equal(("PENDING", 0, 4, null, "replayed by api-key:default"), (row.Status, row.RetryCount, row.AttemptCount, row.ErrorMessage, row.StatusReason));
        Assert.InRange(row.NextAttemptAt, before.AddSeconds(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT failed_at IS NULL FROM communication_logs WHERE id = $1", id));
        Assert.Equal(4, (await Outbox.AttemptsAsync(Db.DataSource, id)).Count);
        Assert.Equal(("PENDING", 4), (view!["status"]!.GetValue<string>(), view["attempts"]!.AsArray().Count));
        await PollNotificationsAsync(listener);
        Assert.True(woken >= 1, "replay sent no NOTIFY outbox_pending");
    }

    [Theory]
    [InlineData("BOUNCED", HttpStatusCode.OK)]
    [InlineData("SUPPRESSED", HttpStatusCode.OK)]
    [InlineData("PENDING", HttpStatusCode.Conflict)]
    [InlineData("SENT", HttpStatusCode.Conflict)]
    [InlineData("DELIVERED", HttpStatusCode.Conflict)]
    [InlineData("READ", HttpStatusCode.Conflict)]
    [InlineData("CANCELLED", HttpStatusCode.Conflict)]
    public async Task Only_failed_bounced_or_suppressed_messages_can_be_replayed(string status, HttpStatusCode expected)
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, id, "status = $2", status);
        using var client = Api.As(key);

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{id}/replay");

        Assert.Equal(expected, response.StatusCode);
        Assert.Equal(expected == HttpStatusCode.OK ? "PENDING" : status, (await Outbox.GetAsync(Db.DataSource, id)).Status);
        if (expected == HttpStatusCode.Conflict)
        {
            Assert.Contains(status, body!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Replay_by_filter_counts_in_a_dry_run_by_default_then_replays_only_the_matching_messages()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        async Task<long> Seed(string status, string channel, string type, string? error, int daysAgo = 0)
        {
            var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer, type: type, channel: channel);
            await SetAsync(Db.DataSource, id, "status = $2, error_message = $3, created_at = now() - make_interval(days => $4)", status, error, daysAgo);
            return id;
        }
        var outage1 = await Seed("FAILED", "SMS", "PAYMENT_REMINDER", "Twilio 20500: Internal server error");
        var outage2 = await Seed("FAILED", "SMS", "INVOICE", "twilio 20500: internal server error");
        var otherError = await Seed("FAILED", "SMS", "INVOICE", "Twilio 21211: invalid 'To' number");
        var email = await Seed("FAILED", "EMAIL", "INVOICE", "Twilio 20500 quoted in an email error");
        var old = await Seed("FAILED", "SMS", "INVOICE", "Twilio 20500: Internal server error", daysAgo: 10);
        var bounced = await Seed("BOUNCED", "SMS", "INVOICE", "Twilio 20500: Internal server error");
        using var client = Api.As(key);
        var filter = new { status = "FAILED", channel = "SMS", errorContains = "TWILIO 20500", createdFrom = DateTimeOffset.UtcNow.AddDays(-2) };

        var (dry, dryResult) = await client.PostAsync("/v1/messages/replay", filter);
        Assert.Equal(HttpStatusCode.OK, dry.StatusCode);
        Assert.Equal((true, 2, 0), (dryResult!["dryRun"]!.GetValue<bool>(), dryResult["matched"]!.GetValue<int>(), dryResult["replayed"]!.GetValue<int>()));
        Assert.Equal(5, await CountAsync(Db.DataSource, company, "status = 'FAILED'"));

        var (_, onlyInvoices) = await client.PostAsync("/v1/messages/replay", new { filter.status, filter.channel, filter.errorContains, type = "INVOICE", createdTo = DateTimeOffset.UtcNow.AddDays(-5) });
        Assert.Equal(1, onlyInvoices!["matched"]!.GetValue<int>());

        var (real, result) = await client.PostAsync("/v1/messages/replay", new { filter.status, filter.channel, filter.errorContains, filter.createdFrom, dryRun = false });
        Assert.Equal(HttpStatusCode.OK, real.StatusCode);
        Assert.Equal((false, 2, 2), (result!["dryRun"]!.GetValue<bool>(), result["matched"]!.GetValue<int>(), result["replayed"]!.GetValue<int>()));
        Assert.Equal(["PENDING", "PENDING", "FAILED", "FAILED", "FAILED", "BOUNCED"],
            await Task.WhenAll(new[] { outage1, outage2, otherError, email, old, bounced }.Select(async id => (await Outbox.GetAsync(Db.DataSource, id)).Status)));
    }

    [Fact]
    public async Task Replay_by_filter_requires_a_replayable_status_and_valid_fields()
    {
        var (_, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);

        var (missing, missingProblem) = await client.PostAsync("/v1/messages/replay", new { dryRun = true });
        var (sent, sentProblem) = await client.PostAsync("/v1/messages/replay", new { status = "SENT", channel = "TELEX", type = "SPAM", createdFrom = "2025-02-01T00:00:00Z", createdTo = "2025-01-01T00:00:00Z" });

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest), (missing.StatusCode, sent.StatusCode));
        Assert.Equal(["status"], ErrorFields(missingProblem));
        Assert.Equal(["channel", "createdTo", "status", "type"], ErrorFields(sentProblem));
    }

    [Fact]
    public async Task The_admin_replays_for_the_company_named_in_X_Company_Id_and_needs_one()
    {
        var (company, _) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, id, "status = 'SUPPRESSED', status_reason = 'customer has not opted in to WHATSAPP'");
        using var admin = Api.AsAdminFor(company);
        using var adminWithoutCompany = Api.As(TestKeys.Admin);

        var (noCompany, problem) = await adminWithoutCompany.PostAsync("/v1/messages/replay", new { status = "SUPPRESSED", dryRun = false });
        var (noCompanyAnalytics, _) = await adminWithoutCompany.SendJsonAsync(HttpMethod.Get, "/v1/analytics");
        var (replay, result) = await admin.PostAsync("/v1/messages/replay", new { status = "SUPPRESSED", dryRun = false });

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest), (noCompany.StatusCode, noCompanyAnalytics.StatusCode));
        Assert.Equal("Company required", problem!["title"]!.GetValue<string>());
        Assert.Equal((HttpStatusCode.OK, 1), (replay.StatusCode, result!["replayed"]!.GetValue<int>()));
        Assert.Equal(("PENDING", "replayed by admin"), ((await Outbox.GetAsync(Db.DataSource, id)).Status, (await Outbox.GetAsync(Db.DataSource, id)).StatusReason));
    }

    [Fact]
    public async Task Each_replay_is_recorded_with_who_did_it_and_what_the_message_was_and_the_message_shows_it()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var suppressed = await Outbox.EnqueueAsync(Db.DataSource, company, customer, channel: "WHATSAPP");
        var failed = await Outbox.EnqueueAsync(Db.DataSource, company, customer, channel: "SMS");
        await SetAsync(Db.DataSource, suppressed, "status = 'SUPPRESSED', status_reason = 'customer has not opted in to WHATSAPP'");
        await SetAsync(Db.DataSource, failed, "status = 'FAILED', error_message = 'customer has no phone number', status_reason = 'x'");
        using var client = Api.As(key);

        // A suppressed message's reason is what errorContains matches for it.
        var (_, byReason) = await client.PostAsync("/v1/messages/replay", new { status = "SUPPRESSED", errorContains = "NOT OPTED IN", dryRun = false });
        var (_, single) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{failed}/replay");
        await SetAsync(Db.DataSource, failed, "status = 'FAILED', error_message = 'Twilio 30003: Unreachable destination handset'");
        await new MessageReplay(Db.DataSource, TimeProvider.System, NullLogger<MessageReplay>.Instance)
            .ReplayAsync(new ReplayFilter { CompanyId = company, MessageId = failed }, "ops-cli", TestContext.Current.CancellationToken);
        var (_, view) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{failed}");

        Assert.Equal(1, byReason!["replayed"]!.GetValue<int>());
        Assert.Equal("SUPPRESSED/customer has not opted in to WHATSAPP/api-key:default", await TestData.ScalarAsync<string>(Db.DataSource,
            "SELECT previous_status || '/' || previous_error || '/' || replayed_by FROM message_replays WHERE company_id = $1 AND message_id = $2", company, suppressed));
        Assert.Single(single!["replays"]!.AsArray());
        var replays = view!["replays"]!.AsArray().Select(r => $"{r!["replayedBy"]}: {r["previousStatus"]}, {r["previousError"]}").ToList();
        Assert.Equal(["api-key:default: FAILED, customer has no phone number", "ops-cli: FAILED, Twilio 30003: Unreachable destination handset"], replays);
        Assert.All(view["replays"]!.AsArray(), r => Assert.InRange(r!["replayedAt"]!.GetValue<DateTimeOffset>(), DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddSeconds(1)));
    }

    [Fact]
    public async Task An_expired_message_is_neither_counted_nor_replayed_and_naming_it_says_why()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var expired = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        var current = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, expired, "status = 'FAILED', error_message = 'SMTP 421', expires_at = '2026-01-31T18:30:00Z'");
        await SetAsync(Db.DataSource, current, "status = 'FAILED', error_message = 'SMTP 421', expires_at = now() + interval '1 day'");
        using var client = Api.As(key);

        var (_, dry) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED" });
        var (refused, problem) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{expired}/replay");
        var (_, real) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED", dryRun = false });

        Assert.Equal((1, 1), (dry!["matched"]!.GetValue<int>(), real!["replayed"]!.GetValue<int>()));
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        Assert.Equal($"Message {expired} expired at 2026-01-31 18:30:00Z; an expired message is not replayed (send a new one).", problem!["detail"]!.GetValue<string>());
        Assert.Equal(("FAILED", "PENDING"), ((await Outbox.GetAsync(Db.DataSource, expired)).Status, (await Outbox.GetAsync(Db.DataSource, current)).Status));
        // One that was delivered before it expired is refused for what it is.
        await SetAsync(Db.DataSource, current, "status = 'DELIVERED', expires_at = '2026-01-31T18:30:00Z'");
        var (_, delivered) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{current}/replay");
        Assert.StartsWith($"Message {current} is DELIVERED; ", delivered!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Filter_dates_are_iso_only_and_a_plain_date_is_the_whole_day_in_the_companys_zone()
    {
        var (company, key) = await Api.NewCompanyAsync();   // Asia/Kolkata
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, id, "status = 'FAILED', created_at = '2026-11-24T17:45:00Z'");
        // 00:30 on 25 November in India, though still the 24th in UTC.
        var late = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, late, "status = 'FAILED', created_at = '2026-11-24T19:00:00Z'");
        using var client = Api.As(key);

        async Task<int> MatchedAsync(object filter) => (await client.PostAsync("/v1/messages/replay", filter)).Body!["matched"]!.GetValue<int>();
        Assert.Equal(1, await MatchedAsync(new { status = "FAILED", createdFrom = "2026-11-25", createdTo = "2026-11-25" }));
        var (listed, page) = await client.SendJsonAsync(HttpMethod.Get, "/v1/messages?createdFrom=2026-11-24&createdTo=2026-11-24");
        Assert.Equal(HttpStatusCode.OK, listed.StatusCode);
        Assert.Equal([id], page!["items"]!.AsArray().Select(m => m!["id"]!.GetValue<long>()));
        var (_, report) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=2026-11-25&to=2026-11-25");
        Assert.Equal(1, report!["total"]!.GetValue<int>());
        var (ambiguous, ambiguousProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=01/11/2026");
        Assert.Equal(HttpStatusCode.BadRequest, ambiguous.StatusCode);
        Assert.Equal(["from"], ErrorFields(ambiguousProblem));
        // A financial year is the longest window (each report reads every message in it).
        var (year, _) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=2025-04-01&to=2026-03-31");
        var (twoYears, twoYearsProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=2024-04-01&to=2026-03-31");
        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.BadRequest), (year.StatusCode, twoYears.StatusCode));
        Assert.Equal(["from"], ErrorFields(twoYearsProblem));
        await SetAsync(Db.DataSource, late, "status = 'SENT'");

        Assert.Equal(1, await MatchedAsync(new { status = "FAILED", createdFrom = "2026-11-24", createdTo = "2026-11-24" }));
        Assert.Equal(0, await MatchedAsync(new { status = "FAILED", createdTo = "2026-11-23" }));
        Assert.Equal(1, await MatchedAsync(new { status = "FAILED", createdFrom = "2026-11-24T17:45:00", createdTo = "2026-11-24T17:45:01" }));   // no offset: UTC
        Assert.Equal(0, await MatchedAsync(new { status = "FAILED", createdFrom = "2026-11-24T17:45:00+05:30", createdTo = "2026-11-24T18:00:00+05:30" }));
        var (bad, problem) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED", createdFrom = "yesterday", createdTo = "11/12/2026" });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(["createdFrom", "createdTo"], ErrorFields(problem));
        // The calendar's ends: 0001-01-01 in the practice's zone (+05:30) is before the first
        // instant .NET holds, and 9999-12-31 has no next midnight. 400s naming them, not 500s.
        var (ends, endsProblem) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED", createdFrom = "0001-01-01", createdTo = "9999-12-31" });
        Assert.Equal(HttpStatusCode.BadRequest, ends.StatusCode);
        Assert.Equal(["createdFrom", "createdTo"], ErrorFields(endsProblem));
        var (listedAll, listedAllProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/messages?createdFrom=0001-01-01&createdTo=9999-12-31");
        Assert.Equal(HttpStatusCode.BadRequest, listedAll.StatusCode);
        Assert.Equal(["createdFrom", "createdTo"], ErrorFields(listedAllProblem));
        // A NUL (PostgreSQL stores none) is named by its field.
        var (nul, nulProblem) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED", errorContains = "Twilio\u0000" });
        Assert.Equal(HttpStatusCode.BadRequest, nul.StatusCode);
        Assert.Equal(["errorContains"], ErrorFields(nulProblem));
        var (nulListed, nulListedProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/messages?customerExternalId=CL%00");
        Assert.Equal(HttpStatusCode.BadRequest, nulListed.StatusCode);
        Assert.Equal(["customerExternalId"], ErrorFields(nulListedProblem));
        var (analysed, analysedProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?to=9999-12-31");
        Assert.Equal(HttpStatusCode.BadRequest, analysed.StatusCode);
        Assert.Equal(["to"], ErrorFields(analysedProblem));
    }

    [Fact]
    public async Task The_core_replay_is_scoped_to_its_filter_and_refuses_statuses_that_are_not_replayable()
    {
        var (companyA, _) = await Api.NewCompanyAsync("A");
        var (companyB, _) = await Api.NewCompanyAsync("B");
        var a = await Outbox.EnqueueAsync(Db.DataSource, companyA, await TestData.CreateCustomerAsync(Db.DataSource, companyA), channel: "WHATSAPP");
        var b = await Outbox.EnqueueAsync(Db.DataSource, companyB, await TestData.CreateCustomerAsync(Db.DataSource, companyB), channel: "WHATSAPP");
        await SetAsync(Db.DataSource, a, "status = 'FAILED', error_message = 'WhatsApp 131026: Message undeliverable'");
        await SetAsync(Db.DataSource, b, "status = 'FAILED', error_message = 'WhatsApp 131026: Message undeliverable'");
        var replay = new MessageReplay(Db.DataSource, TimeProvider.System, NullLogger<MessageReplay>.Instance);

        var forA = new ReplayFilter { CompanyId = companyA, Status = DeliveryStatus.Failed, Channel = Channel.WhatsApp, ErrorContains = "131026" };
        Assert.Equal(1, await replay.CountAsync(forA, TestContext.Current.CancellationToken));
        Assert.Equal(1, await replay.ReplayAsync(forA, "ops-cli", TestContext.Current.CancellationToken));
        Assert.Equal(("PENDING", "FAILED"), ((await Outbox.GetAsync(Db.DataSource, a)).Status, (await Outbox.GetAsync(Db.DataSource, b)).Status));
        await Assert.ThrowsAsync<ArgumentException>(() => replay.CountAsync(forA with { Status = DeliveryStatus.Sent }, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_replay_by_filter_leaves_out_the_messages_of_a_resolved_reminder_and_naming_one_replays_it()
    {
        var (company, _) = await Api.NewCompanyAsync("Rao & Associates");
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var reminders = await TestData.ScalarAsync<long[]>(Db.DataSource, """
            WITH made AS (
                INSERT INTO reminders (company_id, customer_id, type, reference, due_date, time_zone, due_at, grace_ends_at, status)
                SELECT $1, $2, 'COMPLIANCE_REMINDER', r.reference, '2026-11-30', 'Asia/Kolkata', '2026-11-30T18:30:00Z', '2026-11-30T18:30:00Z', r.status
                  FROM (VALUES ('MGT-7 for FY 2025-26', 'RESOLVED'), ('AOC-4 for FY 2025-26', 'ACTIVE')) AS r(reference, status)
                RETURNING id, reference)
            SELECT array_agg(id ORDER BY reference DESC) FROM made
            """, company, customer);
        var filed = await Outbox.EnqueueAsync(Db.DataSource, company, customer, "COMPLIANCE_REMINDER");
        var open = await Outbox.EnqueueAsync(Db.DataSource, company, customer, "COMPLIANCE_REMINDER");
        var odd = await Outbox.EnqueueAsync(Db.DataSource, company, customer, "COMPLIANCE_REMINDER"); // a producer's own metadata, not a reminder id
        var producers = await Outbox.EnqueueAsync(Db.DataSource, company, customer, "PAYMENT_REMINDER"); // a producer's own reminderId that happens to be a number
        await SetAsync(Db.DataSource, filed, $"status = 'FAILED', metadata = '{{\"reminderId\": {reminders[0]}, \"reminderStepId\": 7}}'");
        await SetAsync(Db.DataSource, open, $"status = 'FAILED', metadata = '{{\"reminderId\": {reminders[1]}, \"reminderStepId\": 8}}'");
        await SetAsync(Db.DataSource, odd, "status = 'FAILED', metadata = '{\"reminderId\": \"MGT-7/2025\"}'");
        await SetAsync(Db.DataSource, producers, $"status = 'FAILED', metadata = '{{\"reminderId\": {reminders[0]}}}'");
        var replay = new MessageReplay(Db.DataSource, TimeProvider.System, NullLogger<MessageReplay>.Instance);

        var all = new ReplayFilter { CompanyId = company, Status = DeliveryStatus.Failed };
        Assert.Equal(3, await replay.CountAsync(all, TestContext.Current.CancellationToken));
        Assert.Equal(3, await replay.ReplayAsync(all, "ops-cli", TestContext.Current.CancellationToken));
        Assert.Equal(["FAILED", "PENDING", "PENDING", "PENDING"], new[] { filed, open, odd, producers }.Select(id => Outbox.GetAsync(Db.DataSource, id).Result.Status));
        Assert.Equal(1, await replay.ReplayAsync(new ReplayFilter { CompanyId = company, MessageId = filed }, "ops-cli", TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_replayed_preferred_messages_cost_is_counted_under_the_channel_it_went_on()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer, channel: "PREFERRED");
        // Sent by email for 0.05, bounced, replayed: the row waits as PREFERRED again, with the cost it has.
        await SetAsync(Db.DataSource, id, "status = 'PENDING', cost = 0.05, cost_currency = 'INR', replay_count = 1");
        await TestData.ScalarAsync<long>(Db.DataSource, """
            INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, provider_name, outcome, cost, cost_currency)
            VALUES ($1, $2, 1, 'EMAIL', 'SMTP', 'SENT', 0.05, 'INR') RETURNING id
            """, id, company);
        using var client = Api.As(key);

        var (_, report) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics");

        var costs = report!["costs"]!.AsArray().Select(c => (c!["channel"]!.GetValue<string>(), c["currency"]!.GetValue<string>(), c["amount"]!.GetValue<decimal>(), c["messages"]!.GetValue<int>()));
        Assert.Equal([("EMAIL", "INR", 0.05m, 1)], costs);
        Assert.Equal(1, report["byChannel"]!["PREFERRED"]!.GetValue<int>());
    }

    [Fact]
    public async Task Analytics_count_rates_costs_and_timing_percentiles_over_the_window()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var (other, _) = await Api.NewCompanyAsync("Other");
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var start = DateTimeOffset.UtcNow.AddDays(-3);
        async Task Seed(string status, string channel, string type, int? sentAfter = null, int? deliveredAfter = null, decimal? cost = null,
            string? currency = null, int daysAgo = 3, Guid? companyId = null)
        {
            var owner = companyId ?? company;
            var id = await Outbox.EnqueueAsync(Db.DataSource, owner, companyId is null ? customer : await TestData.CreateCustomerAsync(Db.DataSource, owner), type: type, channel: channel);
            var created = daysAgo == 3 ? start : DateTimeOffset.UtcNow.AddDays(-daysAgo);
            await SetAsync(Db.DataSource, id, "status = $2, created_at = $3, sent_at = $4, delivered_at = $5, cost = $6, cost_currency = $7",
                status, created, sentAfter is { } s ? created.AddSeconds(s) : null, deliveredAfter is { } d ? created.AddSeconds(d) : null, cost, currency);
        }
        await Seed("SENT", "EMAIL", "INVOICE", sentAfter: 10, cost: 0.05m, currency: "INR");
        await Seed("SENT", "EMAIL", "INVOICE", sentAfter: 20, cost: 0.05m, currency: "INR");
        await Seed("DELIVERED", "WHATSAPP", "PAYMENT_REMINDER", sentAfter: 30, deliveredAfter: 60, cost: 0.80m, currency: "INR");
        await Seed("DELIVERED", "WHATSAPP", "PAYMENT_REMINDER", sentAfter: 40, deliveredAfter: 100, cost: 0.80m, currency: "INR");
        await Seed("DELIVERED", "EMAIL", "INVOICE", deliveredAfter: 200, cost: 0.05m, currency: "INR");
        await Seed("READ", "WHATSAPP", "COMPLIANCE_REMINDER", cost: 0.80m, currency: "INR");
        await Seed("BOUNCED", "EMAIL", "INVOICE");
        await Seed("FAILED", "SMS", "GENERAL_UPDATE", sentAfter: 50, cost: 0.01m, currency: "USD");
        await Seed("FAILED", "SMS", "GENERAL_UPDATE");
        await Seed("PENDING", "PREFERRED", "GENERAL_UPDATE");
        await Seed("SUPPRESSED", "WHATSAPP", "GENERAL_UPDATE");
        await Seed("SENT", "EMAIL", "INVOICE", sentAfter: 1, daysAgo: 40);                     // outside the default window
        await Seed("DELIVERED", "EMAIL", "INVOICE", sentAfter: 1, deliveredAfter: 2, companyId: other);  // another company's
        using var client = Api.As(key);

        var (response, report) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(11, report!["total"]!.GetValue<int>());
        var byStatus = report["byStatus"]!;
        Assert.Equal((2, 3, 1, 2, 1, 1, 1, 0),
            (byStatus["SENT"]!.GetValue<int>(), byStatus["DELIVERED"]!.GetValue<int>(), byStatus["READ"]!.GetValue<int>(), byStatus["FAILED"]!.GetValue<int>(),
             byStatus["BOUNCED"]!.GetValue<int>(), byStatus["PENDING"]!.GetValue<int>(), byStatus["SUPPRESSED"]!.GetValue<int>(), byStatus["CANCELLED"]!.GetValue<int>()));
        Assert.Equal((4, 4, 2, 1), (report["byChannel"]!["EMAIL"]!.GetValue<int>(), report["byChannel"]!["WHATSAPP"]!.GetValue<int>(), report["byChannel"]!["SMS"]!.GetValue<int>(), report["byChannel"]!["PREFERRED"]!.GetValue<int>()));
        Assert.Equal((4, 2, 1, 4), (report["byType"]!["INVOICE"]!.GetValue<int>(), report["byType"]!["PAYMENT_REMINDER"]!.GetValue<int>(), report["byType"]!["COMPLIANCE_REMINDER"]!.GetValue<int>(), report["byType"]!["GENERAL_UPDATE"]!.GetValue<int>()));

        // Delivered 3 + read 1 over sent 2 + delivered 3 + read 1 + bounced 1 + failed-after-send 1 = 4/8; read 1 of 4 delivered.
        Assert.Equal(0.5, report["deliveryRate"]!.GetValue<double>());
        Assert.Equal(0.25, report["readRate"]!.GetValue<double>());
        Assert.Contains("DELIVERED + READ", report["definitions"]!["deliveryRate"]!.GetValue<string>(), StringComparison.Ordinal);

        var costs = report["costs"]!.AsArray().Select(c => (c!["channel"]!.GetValue<string>(), c["currency"]!.GetValue<string>(), c["amount"]!.GetValue<decimal>(), c["messages"]!.GetValue<int>()));
        Assert.Equal([("EMAIL", "INR", 0.15m, 3), ("WHATSAPP", "INR", 2.40m, 3), ("SMS", "USD", 0.01m, 1)], costs);

        // To SENT: 10, 20, 30, 40, 50 s → p50 30, p95 48 (linear interpolation). To DELIVERED: 60, 100, 200 → p50 100, p95 190.
        Assert.Equal((5, 30.0, 48.0), (report["toSent"]!["messages"]!.GetValue<int>(), report["toSent"]!["p50Seconds"]!.GetValue<double>(), report["toSent"]!["p95Seconds"]!.GetValue<double>()));
        Assert.Equal((3, 100.0, 190.0), (report["toDelivered"]!["messages"]!.GetValue<int>(), report["toDelivered"]!["p50Seconds"]!.GetValue<double>(), report["toDelivered"]!["p95Seconds"]!.GetValue<double>()));

        var window = $"from={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddDays(-60).ToString("O", CultureInfo.InvariantCulture))}&to={Uri.EscapeDataString(start.AddSeconds(-1).ToString("O", CultureInfo.InvariantCulture))}";
        var (_, older) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/analytics?{window}");
        Assert.Equal(1, older!["total"]!.GetValue<int>());
        Assert.Null(older["readRate"]);
        Assert.Equal(1.0, older["toSent"]!["p95Seconds"]!.GetValue<double>());
    }

    [Fact]
    public async Task Analytics_validate_the_window_and_the_admin_sees_the_company_it_names()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        using var client = Api.As(key);
        using var admin = Api.AsAdminFor(company);

        var (bad, problem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=last-week&to=2025-01-01T00:00:00Z");
        var (reversed, reversedProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z");
        var (asAdmin, report) = await admin.SendJsonAsync(HttpMethod.Get, "/v1/analytics");
        // A window ending in the calendar's first month: the default 30 days before it start at its beginning.
        var (ancient, ancientReport) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?to=0001-01-10T00:00:00Z");
        Assert.Equal((HttpStatusCode.OK, 0), (ancient.StatusCode, ancientReport!["total"]!.GetValue<int>()));

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest), (bad.StatusCode, reversed.StatusCode));
        Assert.Equal(["from"], ErrorFields(problem));
        Assert.Equal(["from"], ErrorFields(reversedProblem));
        Assert.Equal((HttpStatusCode.OK, 1, 1), (asAdmin.StatusCode, report!["total"]!.GetValue<int>(), report["byStatus"]!["PENDING"]!.GetValue<int>()));
        Assert.Null(report["deliveryRate"]);
    }

    private async Task<NpgsqlConnection> ListenAsync()
    {
        var connection = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var listen = new NpgsqlCommand("LISTEN outbox_pending", connection);
        await listen.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        return connection;
    }

    private static async Task PollNotificationsAsync(NpgsqlConnection listener)
    {
        await using (var poll = new NpgsqlCommand("SELECT 1", listener))
        {
            await poll.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await listener.WaitAsync(TimeSpan.FromMilliseconds(200), TestContext.Current.CancellationToken);
    }
}
