using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

/// <summary>
/// The decide step, driven one batch at a time on a fake clock against real PostgreSQL: every
/// outcome lands in the row with a reason, and the provider is called only when policy allows.
/// </summary>
public sealed class DispatchPolicyTests(PostgresServer server) : IAsyncLifetime
{
    // A database per test: the worker claims every due row, so tests must not see each other's.
    private readonly DatabaseFixture db = new(server);
    // Monday 5 January 2026, 11:30 IST: outside any quiet hours used here. Rows are enqueued due
    // on this clock (see EnqueueAsync), not the database's.
    private readonly FakeTimeProvider time = new(new DateTimeOffset(2026, 1, 5, 6, 0, 0, TimeSpan.Zero));
    private readonly CountingProvider email = WorkerHarness.Email();
    private readonly CountingProvider whatsApp = WorkerHarness.WhatsApp();
    private readonly CountingProvider sms = WorkerHarness.Sms();
    private WorkerHarness worker = null!;

    public async ValueTask InitializeAsync()
    {
        await db.InitializeAsync();
        worker = new WorkerHarness(db.ConnectionString, [email, whatsApp, sms], time);
    }

    public async ValueTask DisposeAsync()
    {
        await worker.DisposeAsync();
        await db.DisposeAsync();
    }

    private Task<long> EnqueueAsync(Guid company, Guid customer, string type = "INVOICE", string channel = "EMAIL", string? content = "Your invoice is attached.",
        string? templateKey = null, string templateData = "{}", DateTimeOffset? notBefore = null, int maxRetries = 3) =>
        Outbox.EnqueueAsync(db.DataSource, company, customer, type, channel, content, templateKey, templateData, notBefore ?? time.GetUtcNow().AddMinutes(-1), maxRetries);

    private async Task<(Guid Company, Guid Customer)> CustomerAsync(string? preferences = null, string timeZone = "Asia/Kolkata", string? email = "client@example.com", string? whatsApp = "98765 43210")
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, email, whatsApp, timeZone);
        if (preferences is not null)
        {
            await Outbox.SetPreferencesAsync(db.DataSource, customer, preferences);
        }
        return (company, customer);
    }

    [Fact]
    public async Task A_plain_email_is_sent_and_recorded_with_provider_id_time_cost_and_attempt()
    {
        var (company, customer) = await CustomerAsync();
        var id = await EnqueueAsync(company, customer, content: "Invoice INV-1042 attached.");

        Assert.Equal(1, await worker.RunOnceAsync());

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("SENT", row.Status);
        Assert.Equal("SMTP", row.ProviderName);
        Assert.Equal($"SMTP-{id}", row.ProviderMessageId);
        Assert.Equal(time.GetUtcNow(), row.SentAt);
        Assert.Equal(0.05m, row.Cost);
        Assert.Equal("INR", row.CostCurrency);
        Assert.Null(row.LockedBy);
        var sent = Assert.Single(email.Sent);
        Assert.Equal("client@example.com", sent.To);
        Assert.Equal("Invoice INV-1042 attached.", sent.Body);
        var attempt = Assert.Single(await Outbox.AttemptsAsync(db.DataSource, id));
        Assert.Equal((1, "SENT"), (attempt.AttemptNo, attempt.Outcome));
    }

    [Fact]
    public async Task The_claim_brings_each_rows_own_customer_and_only_its_own_attachments()
    {
        var (company, customer) = await CustomerAsync();
        var (_, otherCompanysCustomer) = await CustomerAsync(email: "someone.else@example.com");
        var withFile = await EnqueueAsync(company, customer, content: "Invoice attached.");
        var withoutFile = await EnqueueAsync(company, customer, content: "No attachment.");
        var foreign = await EnqueueAsync(company, otherCompanysCustomer, content: "Wrong tenant.");
        var pdf = "%PDF-1.7 invoice"u8.ToArray();
        await using (var attach = db.DataSource.CreateCommand(
            "INSERT INTO communication_attachments (message_id, file_name, content_type, content, size_bytes) VALUES ($1, 'INV-1.pdf', 'application/pdf', $2, $3)"))
        {
            attach.Parameters.AddWithValue(withFile);
            attach.Parameters.AddWithValue(pdf);
            attach.Parameters.AddWithValue((long)pdf.Length);
            await attach.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        Assert.Equal(3, await worker.RunOnceAsync());

        var sent = email.Sent.ToDictionary(m => m.MessageId);
        Assert.Equal(["INV-1.pdf"], sent[withFile].Attachments.Select(a => a.FileName));
        Assert.Equal(pdf, sent[withFile].Attachments[0].Content);
        Assert.Empty(sent[withoutFile].Attachments);
        Assert.Equal("client@example.com", sent[withoutFile].To);
        Assert.False(sent.ContainsKey(foreign));
        var row = await Outbox.GetAsync(db.DataSource, foreign);
        Assert.Equal("FAILED", row.Status);
        Assert.Equal($"customer {otherCompanysCustomer} does not exist in this company", row.ErrorMessage);
    }

    [Fact]
    public async Task A_replayed_message_costs_both_sends()
    {
        var (company, customer) = await CustomerAsync();
        var id = await EnqueueAsync(company, customer);
        await worker.RunOnceAsync();
        // Bounced after it went (a mailbox full, say), fixed, and replayed: the second send is paid for too.
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET status = 'BOUNCED' WHERE id = $1 RETURNING 1", id));
        Assert.Equal(1, await new OutboxComms.Core.Messages.MessageReplay(db.DataSource, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<OutboxComms.Core.Messages.MessageReplay>.Instance)
            .ReplayAsync(new OutboxComms.Core.Messages.ReplayFilter { CompanyId = company, MessageId = id }, "ops", CancellationToken.None));

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", 0.10m, "INR"), (row.Status, row.Cost, row.CostCurrency));
        Assert.Equal(2, email.Calls);
        // Each send's own cost is in the attempt history.
        Assert.Equal("1 SENT 0.050000 INR, 2 SENT 0.050000 INR", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(attempt_no || ' ' || outcome || ' ' || cost || ' ' || cost_currency, ', ' ORDER BY attempt_no) FROM communication_attempts WHERE message_id = $1", id));
    }

    [Fact]
    public async Task A_digest_leaves_out_reminders_resolved_since_it_was_written_and_one_for_reminders_due_with_none_left_is_cancelled()
    {
        var (company, first) = await CustomerAsync();
        var second = await TestData.CreateCustomerAsync(db.DataSource, company);
        var third = await TestData.CreateCustomerAsync(db.DataSource, company);
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO message_templates (company_id, key, channel, subject, body)
            VALUES ($1, 'digest', 'EMAIL', 'Due this week', 'Due: {{ for r in dueReminders }}{{ r.reference }}; {{ end }}') RETURNING 1
            """, company));
        async Task<long> ReminderAsync(Guid customer, string reference, string status, Guid? of = null) => await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO reminders (company_id, customer_id, type, reference, due_date, time_zone, due_at, grace_ends_at, status)
            VALUES ($1, $2, 'COMPLIANCE_REMINDER', $3, '2026-03-12', 'Asia/Kolkata', now(), now(), $4) RETURNING id
            """, of ?? company, customer, reference, status);
        // Written as the scheduler writes them; the MGT-7 was filed (resolved, here by the practice's own SQL) before they went.
        var filed = await ReminderAsync(first, "MGT-7 FY 2025-26", "RESOLVED");
        var open = await ReminderAsync(first, "Invoice INV-1042", "ACTIVE");
        var filedToo = await ReminderAsync(second, "AOC-4 FY 2025-26", "RESOLVED");
        var filedAlso = await ReminderAsync(third, "DPT-3 FY 2025-26", "RESOLVED");
        string Digest(string audience, params (long Id, string Reference)[] due) => System.Text.Json.JsonSerializer.Serialize(new
        {
            schedule = new { key = "monday", audience },
            dueReminders = due.Select(d => new { reminderId = d.Id, reference = d.Reference, type = "COMPLIANCE_REMINDER", dueDate = "2026-03-12" }),
        });
        var both = await EnqueueAsync(company, first, type: "COMPLIANCE_REMINDER", content: null, templateKey: "digest",
            templateData: Digest("REMINDERS_DUE", (filed, "MGT-7 FY 2025-26"), (open, "Invoice INV-1042")));
        var emptied = await EnqueueAsync(company, second, type: "COMPLIANCE_REMINDER", content: null, templateKey: "digest",
            templateData: Digest("REMINDERS_DUE", (filedToo, "AOC-4 FY 2025-26")));
        var everyone = await EnqueueAsync(company, third, type: "COMPLIANCE_REMINDER", content: null, templateKey: "digest",
            templateData: Digest("ALL_CUSTOMERS", (filedAlso, "DPT-3 FY 2025-26")));

        // Another company's resolved reminder is not looked at (its id listed by this company's row stays listed);
        // a list a producer wrote with ids that are not numbers is sent as it is, and does not hold up the batch.
        var (otherCompany, otherCustomer) = await CustomerAsync();
        var othersFiled = await ReminderAsync(otherCustomer, "theirs", "RESOLVED", of: otherCompany);
        var fourth = await TestData.CreateCustomerAsync(db.DataSource, company);
        var foreign = await EnqueueAsync(company, fourth, type: "COMPLIANCE_REMINDER", content: null, templateKey: "digest",
            templateData: Digest("REMINDERS_DUE", (othersFiled, "GST-1")));
        var fifth = await TestData.CreateCustomerAsync(db.DataSource, company);
        var odd = await EnqueueAsync(company, fifth, type: "COMPLIANCE_REMINDER", content: null, templateKey: "digest",
            templateData: """{"dueReminders": [{"reminderId": "42", "reference": "A"}, {"reminderId": null, "reference": "B"}, {"reminderId": true, "reference": "C"}, "D"]}""");

        await worker.RunOnceAsync();

        var sent = email.Sent.ToDictionary(m => m.MessageId);
        Assert.Equal("Due: GST-1; ", sent[foreign].Body);
        Assert.Equal("Due: A; B; C; ; ", sent[odd].Body);
        Assert.Equal("Due: Invoice INV-1042; ", sent[both].Body);
        Assert.Equal("Due: ", sent[everyone].Body);    // an ALL_CUSTOMERS digest goes to everyone, with what is still due
        Assert.False(sent.ContainsKey(emptied));
        var row = await Outbox.GetAsync(db.DataSource, emptied);
        Assert.Equal(("CANCELLED", "every reminder this digest listed was resolved before it could be sent"), (row.Status, row.StatusReason));
    }

    [Fact]
    public async Task An_email_to_an_internationalised_domain_goes_to_the_provider_with_the_domain_in_ascii()
    {
        var (company, customer) = await CustomerAsync(email: "accounts@rao-associates.भारत");
        var id = await EnqueueAsync(company, customer);

        await worker.RunOnceAsync();

        Assert.Equal("accounts@rao-associates.xn--h2brj9c", Assert.Single(email.Sent).To);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, id)).Status);
        Assert.Equal("accounts@rao-associates.भारत", await TestData.ScalarAsync<string>(db.DataSource, "SELECT email FROM customers WHERE id = $1", customer));
    }

    [Theory]
    [InlineData(160, "", 0.25)]          // one SMS of GSM characters
    [InlineData(161, "", 0.50)]          // split, 153 per part
    [InlineData(307, "", 0.75)]
    [InlineData(160, "€", 0.50)]         // € is GSM, but takes two of the 160
    [InlineData(70, "₹", 0.25)]          // Unicode: 70 in one SMS
    [InlineData(135, "₹", 0.75)]         // 67 per part
    [InlineData(305, "€", 0.75, 152)]    // 306 of 153 × 2, but the € does not fit in the first part's last place
    [InlineData(134, "😀", 0.75, 66)]    // 134 UTF-16 units of 67 × 2, but the emoji's pair is not split either
    public async Task The_rate_card_prices_an_sms_per_part_it_goes_as(int length, string symbol, decimal cost, int at = 0)
    {
        var (company, customer) = await CustomerAsync("sms_opt_in = true");
        var content = new string('x', at) + symbol + new string('x', length - at - symbol.Length);
        var id = await EnqueueAsync(company, customer, channel: "SMS", content: content);

        await worker.RunOnceAsync();

        Assert.Equal(content, Assert.Single(sms.Sent).Body);
        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", cost, "INR"), (row.Status, row.Cost, row.CostCurrency));
    }

    [Fact]
    public async Task A_provider_reported_price_wins_over_the_rate_card()
    {
        var (company, customer) = await CustomerAsync("sms_opt_in = true");
        sms.Behaviour = m => SendResult.Sent("SM123", 0.0075m, "USD");
        var id = await EnqueueAsync(company, customer, channel: "SMS");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal((0.0075m, "USD"), (row.Cost, row.CostCurrency));
        Assert.Equal("+919876543210", Assert.Single(sms.Sent).To);
        Assert.Equal("0.007500 USD", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT cost || ' ' || cost_currency FROM communication_attempts WHERE message_id = $1", id));
    }

    [Fact]
    public async Task A_send_the_provider_says_an_earlier_attempt_made_is_sent_with_the_providers_note_and_no_provider_id()
    {
        var (company, customer) = await CustomerAsync("sms_opt_in = true");
        sms.Behaviour = m => SendResult.SentEarlier("sent by an earlier attempt whose answer was lost");
        var id = await EnqueueAsync(company, customer, channel: "SMS");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", null, "sent by an earlier attempt whose answer was lost"), (row.Status, row.ProviderMessageId, row.StatusReason));
    }

    [Fact]
    public async Task Opted_out_channel_is_suppressed_with_a_reason_and_no_provider_call()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = false");
        var id = await EnqueueAsync(company, customer, channel: "WHATSAPP");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("SUPPRESSED", row.Status);
        Assert.Equal("customer has not opted in to WHATSAPP", row.StatusReason);
        Assert.Equal(0, whatsApp.Calls);
        Assert.Empty(await Outbox.AttemptsAsync(db.DataSource, id));
    }

    [Fact]
    public async Task A_provider_opt_out_withdraws_the_customers_opt_in_for_that_channel_once_and_later_messages_are_suppressed()
    {
        var (company, customer) = await CustomerAsync("sms_opt_in = true, whatsapp_opt_in = true, payment_reminder_channel = 'SMS'");
        sms.Behaviour = _ => SendResult.OptedOut("Twilio 21610: Attempt to send to unsubscribed recipient");
        var reminder = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", channel: "PREFERRED");
        var invoice = await EnqueueAsync(company, customer, channel: "SMS");
        var chat = await EnqueueAsync(company, customer, channel: "WHATSAPP");

        Assert.Equal(3, await worker.RunOnceAsync());

        Assert.Equal(("FAILED", "SMS"), ((await Outbox.GetAsync(db.DataSource, reminder)).Status, (await Outbox.GetAsync(db.DataSource, reminder)).Channel));
        Assert.Equal("Twilio 21610: Attempt to send to unsubscribed recipient", (await Outbox.GetAsync(db.DataSource, invoice)).ErrorMessage);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, chat)).Status);
        Assert.Equal("false/true", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT sms_opt_in || '/' || whatsapp_opt_in FROM communication_preferences WHERE customer_id = $1", customer));
        // Two signals in one batch are one withdrawal, recorded as consent with where it came from.
        Assert.Equal("CHANNEL/SMS/false/provider opt-out/TWILIO", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(scope || '/' || channel || '/' || opted_in || '/' || source || '/' || recorded_by, ',') FROM consent_records WHERE customer_id = $1", customer));

        var later = await EnqueueAsync(company, customer, channel: "SMS");
        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, later);
        Assert.Equal(("SUPPRESSED", "customer has not opted in to SMS"), (row.Status, row.StatusReason));
        Assert.Equal(2, sms.Calls);
    }

    [Fact]
    public async Task A_provider_opt_out_dates_from_the_providers_answer_so_an_opt_in_recorded_before_its_batch_commits_stands()
    {
        var (company, restarted) = await CustomerAsync("sms_opt_in = true");
        var stopped = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543298");
        await Outbox.SetPreferencesAsync(db.DataSource, stopped, "sms_opt_in = true");
        await EnqueueAsync(company, restarted, channel: "SMS");
        await EnqueueAsync(company, stopped, channel: "SMS");
        var answered = time.GetUtcNow();
        var store = new OutboxStore(db.DataSource);
        var claimed = await store.ClaimAsync("opt-out-test#1", 10, answered, TimeSpan.FromMinutes(5), TestContext.Current.CancellationToken);
        // Twilio answered 21610 for both; one customer replied START and the practice recorded it a
        // minute later, while the batch still sent; the other's opt-in was recorded before the answer.
        foreach (var (customer, at) in new[] { (restarted, answered.AddMinutes(1)), (stopped, answered.AddMinutes(-1)) })
        {
            await TestData.ScalarAsync<long>(db.DataSource, """
                INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
                VALUES ($1, $2, 'CHANNEL', 'SMS', true, 'replied START', 'api-key:default', $3) RETURNING id
                """, company, customer, at);
        }
        var committed = answered.AddMinutes(2);

        await store.CompleteAsync("opt-out-test#1", [.. claimed.Select(m => new Completion(m.Id, company, DeliveryStatus.Failed, Channel.Sms)
        {
            NextAttemptAt = committed, FailedAt = answered, ProviderName = "TWILIO", ErrorMessage = "Twilio 21610", AttemptCount = 1, RecipientOptedOut = true,
            Attempt = new AttemptRecord(company, 1, answered, Channel.Sms, "TWILIO", AttemptOutcome.PermanentFailure, "Twilio 21610", 40),
        })], committed, TestContext.Current.CancellationToken);

        Assert.Equal(2, claimed.Count);
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT sms_opt_in FROM communication_preferences WHERE customer_id = $1", restarted));
        Assert.False(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT sms_opt_in FROM communication_preferences WHERE customer_id = $1", stopped));
        Assert.Equal(committed.UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource,
            "SELECT recorded_at FROM consent_records WHERE customer_id = $1 AND NOT opted_in AND source = 'provider opt-out'", stopped));
    }

    [Fact]
    public async Task Rows_of_two_companies_sharing_an_id_and_a_row_with_blank_content_fail_with_the_reason_and_the_batch_goes_on()
    {
        var (company, customer) = await CustomerAsync();
        var (other, otherCustomer) = await CustomerAsync();
        var first = await EnqueueAsync(company, customer);
        // COPY writes the ids it is given, whatever GENERATED ALWAYS says, as an INSERT … OVERRIDING SYSTEM VALUE does.
        await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_logs (id, company_id, customer_id, type, channel, subject, content, next_attempt_at)
            OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, 'INVOICE', 'EMAIL', 'Invoice', 'Imported', $4) RETURNING id
            """, first, other, otherCustomer, time.GetUtcNow().AddMinutes(-1));
        var blank = await EnqueueAsync(company, customer, content: " ");
        var fine = await EnqueueAsync(company, customer);

        await worker.RunOnceAsync();

        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE id = $1 AND status = 'FAILED' AND error_message LIKE 'another company''s message has the same id%' AND locked_by IS NULL", first));
        Assert.Equal(("FAILED", "the message has no text (the row's content is blank and it names no template)"),
            ((await Outbox.GetAsync(db.DataSource, blank)).Status, (await Outbox.GetAsync(db.DataSource, blank)).ErrorMessage));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, fine)).Status);
        Assert.Equal(1, email.Calls);
    }

    [Fact]
    public async Task A_render_that_runs_out_of_its_time_is_retried_not_failed()
    {
        var (company, customer) = await CustomerAsync();
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO message_templates (company_id, key, channel, subject, body)
            VALUES ($1, 'statement', 'EMAIL', 'Statement', repeat('{{ for i in 1..300 }}{{ for j in 1..300 }}{{ x = i * j }}{{ end }}{{ end }}', 20) || 'Your statement.') RETURNING 1
            """, company);   // 1.8 million steps: far longer than the limit and than a timer's lateness on a busy host
        var id = await EnqueueAsync(company, customer, content: null, templateKey: "statement");
        // A limit the process itself can exhaust (a GC pause, a starved CPU): here 1 ms.
        await using var hurried = new WorkerHarness(db.ConnectionString, [email, whatsApp, sms], time, new() { ["Dispatch:RenderTimeout"] = "00:00:00.001" });

        await hurried.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("PENDING", 1), (row.Status, row.RetryCount));
        Assert.Contains("rendering took longer than", row.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_message_replayed_after_retention_cleared_its_file_fails_with_that_reason_unsent()
    {
        var (company, customer) = await CustomerAsync();
        var invoice = await EnqueueAsync(company, customer);
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, size_bytes, purged_at)
            VALUES ($1, $2, 'INV-1042.pdf', 'application/pdf', 4, '2026-09-01T00:00:00Z') RETURNING 1
            """, company, invoice);

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, invoice);
        Assert.Equal(("FAILED", "attachment 'INV-1042.pdf' was cleared on 2026-09-01 by attachment retention (Attachments:RetentionDays): send the message again with the file"),
            (row.Status, row.ErrorMessage));
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_message_for_both_channels_whose_file_retention_cleared_fails_on_each_channel_instead_of_waiting_forever()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        var invoice = await EnqueueAsync(company, customer, channel: "BOTH");
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, size_bytes, purged_at)
            VALUES ($1, $2, 'INV-1042.pdf', 'application/pdf', 4, '2026-09-01T00:00:00Z') RETURNING 1
            """, company, invoice);

        await worker.RunOnceAsync();
        await worker.RunOnceAsync();

        // The split's copy of the cleared file is cleared too (a copy without purged_at broke the
        // files' check, so the outcome was refused and the row claimed again at every lease).
        Assert.Equal("EMAIL:FAILED,WHATSAPP:FAILED", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(channel || ':' || status, ',' ORDER BY channel) FROM communication_logs WHERE company_id = $1", company));
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND error_message LIKE 'attachment ''INV-1042.pdf'' was cleared on 2026-09-01%'", company));
        Assert.Equal(0, email.Calls + whatsApp.Calls);
    }

    [Fact]
    public async Task A_row_given_another_companys_id_does_not_carry_that_companys_files()
    {
        var (company, customer) = await CustomerAsync();
        var (other, otherCustomer) = await CustomerAsync();
        // The practice's invoice went out long ago with its PDF, the attachment naming its company (as the API writes it).
        var invoice = await EnqueueAsync(company, customer);
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH a AS (INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content)
                       VALUES ($2, $1, 'INV-1042.pdf', 'application/pdf', '\x25504446') RETURNING 1),
                 s AS (UPDATE communication_logs SET status = 'SENT' WHERE id = $1 RETURNING 1)
            SELECT count(*)::int FROM a, s
            """, invoice, company);
        // Another company's import COPYs its rows with their ids, one of them the invoice's.
        await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_logs (id, company_id, customer_id, type, channel, subject, content, next_attempt_at)
            OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, 'GENERAL_UPDATE', 'EMAIL', 'Update', 'Imported', $4) RETURNING id
            """, invoice, other, otherCustomer, time.GetUtcNow().AddMinutes(-1));

        await worker.RunOnceAsync();

        var sent = Assert.Single(email.Sent);
        Assert.Equal(other, sent.CompanyId);
        Assert.Contains("Imported", sent.Body, StringComparison.Ordinal);
        Assert.Empty(sent.Attachments);
    }

    [Fact]
    public async Task Stored_attachments_larger_together_than_a_message_may_carry_fail_it_unread_and_unsent()
    {
        var (company, customer) = await CustomerAsync();
        var invoice = await EnqueueAsync(company, customer);
        // A producer's SQL may store any size; two files of 13 MB pass no API limit check on the way in.
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH a AS (INSERT INTO communication_attachments (message_id, file_name, content_type, content)
                       SELECT $1, 'part-' || g || '.pdf', 'application/pdf', convert_to(repeat('x', 13 * 1024 * 1024), 'UTF8') FROM generate_series(1, 2) g RETURNING 1)
            SELECT count(*)::int FROM a
            """, invoice);

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, invoice);
        Assert.Equal(("FAILED", "the message's stored attachments are 26 MB together, more than the 25 MB a message may carry"), (row.Status, row.ErrorMessage));
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_voice_row_a_producer_wrote_fails_because_no_provider_serves_the_channel_not_as_a_consent_problem()
    {
        var (company, customer) = await CustomerAsync();
        var id = await EnqueueAsync(company, customer, channel: "VOICE");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("FAILED", "the VOICE channel has no provider"), (row.Status, row.ErrorMessage));
        Assert.Equal(0, email.Calls + whatsApp.Calls + sms.Calls);
    }

    [Fact]
    public async Task Preferred_takes_the_customers_channel_for_each_message_type()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true, payment_reminder_channel = 'WHATSAPP', invoice_delivery_channel = 'EMAIL'");
        var reminder = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", channel: "PREFERRED");
        var invoice = await EnqueueAsync(company, customer, type: "INVOICE", channel: "PREFERRED");

        await worker.RunOnceAsync();

        var reminderRow = await Outbox.GetAsync(db.DataSource, reminder);
        var invoiceRow = await Outbox.GetAsync(db.DataSource, invoice);
        Assert.Equal(("SENT", "WHATSAPP", "PREFERRED"), (reminderRow.Status, reminderRow.Channel, reminderRow.RequestedChannel));
        Assert.Equal(("SENT", "EMAIL", "PREFERRED"), (invoiceRow.Status, invoiceRow.Channel, invoiceRow.RequestedChannel));
        Assert.Equal(reminder, Assert.Single(whatsApp.Sent).MessageId);
        Assert.Equal(invoice, Assert.Single(email.Sent).MessageId);
    }

    [Fact]
    public async Task A_preferred_invoice_with_two_documents_for_a_whatsapp_client_goes_by_email_as_whatsapp_carries_one()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true, invoice_delivery_channel = 'WHATSAPP'");
        await TestData.CreateTemplatesAsync(db.DataSource, company, "mgt7-reminder");
        var invoice = await EnqueueAsync(company, customer, channel: "PREFERRED", content: null, templateKey: "mgt7-reminder");
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH a AS (INSERT INTO communication_attachments (message_id, file_name, content_type, content)
                       VALUES ($1, 'INV-11.pdf', 'application/pdf', '\x25504446'), ($1, 'SOA-11.pdf', 'application/pdf', '\x25504446') RETURNING 1)
            SELECT count(*)::int FROM a
            """, invoice);

        await worker.RunOnceAsync();

        Assert.Equal("SENT/EMAIL/PREFERRED/on EMAIL instead of the preferred WHATSAPP: a WhatsApp message carries one document, this one has 2 (INV-11.pdf, SOA-11.pdf)", await RowAsync(invoice));
        Assert.Equal(0, whatsApp.Calls);
    }

    [Fact]
    public async Task A_preferred_invoice_or_reminder_goes_on_another_consented_channel_when_the_preferred_one_cannot_carry_it_but_a_general_update_does_not()
    {
        // Reminders and updates on WhatsApp, never opted in to (or replied STOP); invoices on SMS.
        var (company, customer) = await CustomerAsync("sms_opt_in = true, compliance_reminder_channel = 'WHATSAPP', general_updates_channel = 'WHATSAPP', invoice_delivery_channel = 'SMS'");
        var reminder = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", channel: "PREFERRED", content: "MGT-7 is due on 29 November.");
        var update = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "PREFERRED");
        var invoice = await EnqueueAsync(company, customer, channel: "PREFERRED");
        await TestData.ScalarAsync<int>(db.DataSource,
            "WITH a AS (INSERT INTO communication_attachments (message_id, file_name, content_type, content) VALUES ($1, 'INV-9.pdf', 'application/pdf', '\\x25504446') RETURNING 1) SELECT count(*)::int FROM a", invoice);
        // A customer with no email address: the reminder goes by the next channel they consented to.
        var noEmail = await TestData.CreateCustomerAsync(db.DataSource, company, email: null, whatsApp: "98765 43211");
        await Outbox.SetPreferencesAsync(db.DataSource, noEmail, "sms_opt_in = true, compliance_reminder_channel = 'WHATSAPP'");
        await TestData.CreateTemplatesAsync(db.DataSource, company, "mgt7-reminder");
        var bySms = await EnqueueAsync(company, noEmail, type: "COMPLIANCE_REMINDER", channel: "PREFERRED", content: null, templateKey: "mgt7-reminder");
        // Plain content has no text for SMS or WhatsApp (DLT, the 24-hour window): email or nothing.
        var plain = await EnqueueAsync(company, noEmail, type: "COMPLIANCE_REMINDER", channel: "PREFERRED");

        await worker.RunOnceAsync();

        Assert.Equal("SENT/EMAIL/PREFERRED/on EMAIL instead of the preferred WHATSAPP: customer has not opted in to WHATSAPP", await RowAsync(reminder));
        Assert.Equal("SUPPRESSED/WHATSAPP/PREFERRED/customer has not opted in to WHATSAPP", await RowAsync(update));
        Assert.Equal("SENT/EMAIL/PREFERRED/on EMAIL instead of the preferred SMS: SMS cannot carry attachments (INV-9.pdf)", await RowAsync(invoice));
        Assert.Equal("SENT/SMS/PREFERRED/on SMS instead of the preferred WHATSAPP: customer has not opted in to WHATSAPP", await RowAsync(bySms));
        Assert.Equal("SUPPRESSED/WHATSAPP/PREFERRED/customer has not opted in to WHATSAPP (without a template it could go by EMAIL only, and not there either: customer has no email address)",
            await RowAsync(plain));
        Assert.Equal([reminder, invoice], email.Sent.Select(m => m.MessageId).Order());
        Assert.Equal(["INV-9.pdf"], email.Sent.Single(m => m.MessageId == invoice).Attachments.Select(a => a.FileName));
        Assert.Equal(bySms, Assert.Single(sms.Sent).MessageId);
        Assert.Equal(0, whatsApp.Calls);
    }

    /// <summary>status/channel/requested_channel/status_reason of a row.</summary>
    private Task<string> RowAsync(long id) => TestData.ScalarAsync<string>(db.DataSource,
        "SELECT status || '/' || channel || '/' || requested_channel || '/' || coalesce(status_reason, '') FROM communication_logs WHERE id = $1", id);

    [Fact]
    public async Task Both_becomes_one_row_per_channel_and_each_is_sent_once()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        var id = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "BOTH");

        await worker.RunOnceAsync();
        await worker.RunOnceAsync();

        var rows = await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(channel || ':' || status || ':' || requested_channel, ',' ORDER BY channel) FROM communication_logs WHERE company_id = $1", company);
        Assert.Equal("EMAIL:SENT:BOTH,WHATSAPP:SENT:BOTH", rows);
        Assert.Equal(id, Assert.Single(email.Sent).MessageId);
        Assert.NotEqual(id, Assert.Single(whatsApp.Sent).MessageId);
    }

    [Fact]
    public async Task A_preferred_message_that_waits_stays_preferred_and_is_resolved_again_with_the_consent_of_then()
    {
        // Quiet hours 11:00–12:00 IST; the clock shows 11:30.
        var (company, customer) = await CustomerAsync("sms_opt_in = true, compliance_reminder_channel = 'WHATSAPP', invoice_delivery_channel = 'SMS', quiet_hours_start = '11:00', quiet_hours_end = '12:00'");
        var reminder = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", channel: "PREFERRED");
        var invoice = await EnqueueAsync(company, customer, channel: "PREFERRED");
        await TestData.ScalarAsync<int>(db.DataSource,
            "WITH a AS (INSERT INTO communication_attachments (message_id, file_name, content_type, content) VALUES ($1, 'INV-5.pdf', 'application/pdf', '\\x25504446') RETURNING 1) SELECT count(*)::int FROM a", invoice);

        await worker.RunOnceAsync();

        Assert.StartsWith("PENDING/PREFERRED/PREFERRED/quiet hours 11:00–12:00", await RowAsync(reminder));
        Assert.EndsWith("(on EMAIL instead of the preferred WHATSAPP: customer has not opted in to WHATSAPP)", await RowAsync(reminder));
        // The client opts in to WhatsApp before the quiet hours end.
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "whatsapp_opt_in = true");
        time.Advance(TimeSpan.FromHours(1));
        await worker.RunOnceAsync();

        Assert.Equal("SENT/WHATSAPP/PREFERRED/", await RowAsync(reminder));
        Assert.Equal("SENT/EMAIL/PREFERRED/on EMAIL instead of the preferred SMS: SMS cannot carry attachments (INV-5.pdf)", await RowAsync(invoice));
        Assert.Equal([invoice], email.Sent.Select(m => m.MessageId));

        Task<string> RowAsync(long id) => TestData.ScalarAsync<string>(db.DataSource,
            "SELECT status || '/' || channel || '/' || requested_channel || '/' || coalesce(status_reason, '') FROM communication_logs WHERE id = $1", id);
    }

    [Fact]
    public async Task An_sms_to_a_landline_fails_saying_so_and_a_preferred_one_goes_by_email()
    {
        var (company, customer) = await CustomerAsync("sms_opt_in = true, payment_reminder_channel = 'SMS'", whatsApp: "011 2345 6789");
        var sms = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", channel: "SMS");
        var preferred = await EnqueueAsync(company, customer, channel: "PREFERRED");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "invoice_delivery_channel = 'SMS'");

        await worker.RunOnceAsync();

        Assert.Equal(("FAILED", "customer's phone number '011 2345 6789' is a landline, which cannot receive SMS"),
            ((await Outbox.GetAsync(db.DataSource, sms)).Status, (await Outbox.GetAsync(db.DataSource, sms)).ErrorMessage));
        Assert.Equal("SENT/EMAIL", await TestData.ScalarAsync<string>(db.DataSource, "SELECT status || '/' || channel FROM communication_logs WHERE id = $1", preferred));
        Assert.Equal(0, this.sms.Calls);
    }

    [Fact]
    public async Task A_preferred_row_without_a_subject_falls_back_past_email()
    {
        var (company, customer) = await CustomerAsync("sms_opt_in = true, payment_reminder_channel = 'WHATSAPP'");
        await TestData.CreateTemplatesAsync(db.DataSource, company, "fee-due");
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE message_templates SET subject = NULL WHERE company_id = $1 AND channel = 'EMAIL' RETURNING 1", company);
        var id = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", channel: "PREFERRED", content: null, templateKey: "fee-due");
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, id, "subject = '  '");

        await worker.RunOnceAsync();

        // Email, first in the fallback order, needs a subject: SMS is next.
        Assert.Equal("SENT/SMS/on SMS instead of the preferred WHATSAPP: customer has not opted in to WHATSAPP",
            await TestData.ScalarAsync<string>(db.DataSource, "SELECT status || '/' || channel || '/' || status_reason FROM communication_logs WHERE id = $1", id));
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_both_message_whose_email_hits_an_internal_error_is_still_split_and_its_whatsapp_goes_out()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        email.Behaviour = _ => throw new InvalidOperationException("a bug of ours");
        var id = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "BOTH");

        await worker.RunOnceAsync();   // the email: an internal error, retried; the split adds the WhatsApp row
        await worker.RunOnceAsync();   // the WhatsApp row

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("PENDING", "EMAIL", "BOTH", 1), (row.Status, row.Channel, row.RequestedChannel, row.RetryCount));
        Assert.Equal("internal error: InvalidOperationException: a bug of ours", row.ErrorMessage);
        Assert.Equal("WHATSAPP:SENT:BOTH", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT channel || ':' || status || ':' || requested_channel FROM communication_logs WHERE company_id = $1 AND split_from = $2 AND id <> $2", company, id));
        Assert.Equal(1, whatsApp.Calls);
    }

    [Fact]
    public async Task A_replayed_preferred_message_goes_to_the_customers_channel_as_it_is_now_unless_it_was_split()
    {
        // The customer wanted invoices on WhatsApp, but never opted in to it, and opted out of email: suppressed.
        var (company, customer) = await CustomerAsync("invoice_delivery_channel = 'WHATSAPP', email_opt_in = false");
        var single = await EnqueueAsync(company, customer, channel: "PREFERRED");
        // The same, created before migration 0022 marked split rows: a replay cannot tell whether it was split.
        var older = await EnqueueAsync(company, customer, channel: "PREFERRED");
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, older, "created_at = (SELECT applied_at FROM schema_migrations WHERE version = 22) - interval '1 day'");
        await worker.RunOnceAsync();
        // On both: the email goes (and later bounces), the WhatsApp sibling is suppressed.
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "invoice_delivery_channel = 'BOTH', email_opt_in = true");
        var both = await EnqueueAsync(company, customer, channel: "PREFERRED");
        await worker.RunOnceAsync();
        await worker.RunOnceAsync();
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, both, "status = 'BOUNCED'");
        var sibling = await TestData.ScalarAsync<long>(db.DataSource, "SELECT id FROM communication_logs WHERE company_id = $1 AND split_from = $2 AND id <> $2", company, both);
        Assert.Equal("SUPPRESSED/WHATSAPP/BOTH", await RowAsync(sibling));
        Assert.Equal(both, await TestData.ScalarAsync<long>(db.DataSource, "SELECT split_from FROM communication_logs WHERE company_id = $1 AND id = $2", company, both));

        // The practice sets the preference to SMS, then replays what did not arrive.
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "invoice_delivery_channel = 'SMS', sms_opt_in = true");
        Assert.Equal(4, await new OutboxComms.Core.Messages.MessageReplay(db.DataSource, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<OutboxComms.Core.Messages.MessageReplay>.Instance)
            .ReplayAsync(new OutboxComms.Core.Messages.ReplayFilter { CompanyId = company }, "ops", CancellationToken.None));
        await worker.RunOnceAsync();

        // The unsplit one follows the new preference; the split one's rows keep their channels, or
        // both would follow it and the customer would get that invoice twice.
        Assert.Equal("SENT/SMS/PREFERRED", await RowAsync(single));
        Assert.Equal("SUPPRESSED/WHATSAPP/PREFERRED", await RowAsync(older));
        Assert.Equal("SENT/EMAIL/PREFERRED", await RowAsync(both));
        Assert.Equal("SUPPRESSED/WHATSAPP/BOTH", await RowAsync(sibling));
        Assert.Equal([single], sms.Sent.Select(m => m.MessageId));
        Assert.Equal([both, both], email.Sent.Select(m => m.MessageId));

        Task<string> RowAsync(long id) => TestData.ScalarAsync<string>(db.DataSource,
            "SELECT status || '/' || channel || '/' || requested_channel FROM communication_logs WHERE company_id = $1 AND id = $2", company, id);
    }

    [Fact]
    public async Task General_updates_stopped_on_whatsapp_go_out_by_email_only_and_invoices_still_reach_whatsapp()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true, general_updates_opt_out_channels = '{WHATSAPP}'");
        var update = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "BOTH");
        var invoice = await EnqueueAsync(company, customer, channel: "WHATSAPP");

        await worker.RunOnceAsync();
        await worker.RunOnceAsync();

        Assert.Equal("EMAIL:GENERAL_UPDATE:SENT:,WHATSAPP:GENERAL_UPDATE:SUPPRESSED:customer stopped general updates on WHATSAPP,WHATSAPP:INVOICE:SENT:",
            await TestData.ScalarAsync<string>(db.DataSource,
                "SELECT string_agg(channel || ':' || type || ':' || status || ':' || coalesce(status_reason, ''), ',' ORDER BY channel, type) FROM communication_logs WHERE company_id = $1", company));
        Assert.Equal(update, Assert.Single(email.Sent).MessageId);
        Assert.Equal(invoice, Assert.Single(whatsApp.Sent).MessageId);
    }

    [Fact]
    public async Task A_send_refused_because_the_user_stopped_marketing_messages_stops_general_updates_on_that_channel_once()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        whatsApp.Behaviour = _ => SendResult.Permanent("WhatsApp 131050: stopped marketing messages") with { MarketingStopped = true };
        var first = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "WHATSAPP");
        var second = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "WHATSAPP");

        Assert.Equal(2, await worker.RunOnceAsync());

        Assert.Equal("FAILED/FAILED", $"{(await Outbox.GetAsync(db.DataSource, first)).Status}/{(await Outbox.GetAsync(db.DataSource, second)).Status}");
        Assert.Equal("{WHATSAPP}/false/true", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT general_updates_opt_out_channels::text || '/' || general_updates_opt_out || '/' || whatsapp_opt_in FROM communication_preferences WHERE customer_id = $1", customer));
        Assert.Equal("GENERAL_UPDATES/WHATSAPP/false/WHATSAPP_BUSINESS_API", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(scope || '/' || channel || '/' || opted_in || '/' || recorded_by, ',') FROM consent_records WHERE customer_id = $1", customer));

        var later = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "WHATSAPP");
        await worker.RunOnceAsync();

        Assert.Equal("SUPPRESSED", (await Outbox.GetAsync(db.DataSource, later)).Status);
        Assert.Equal(2, whatsApp.Calls);
    }

    [Fact]
    public async Task One_batch_applies_both_an_sms_opt_out_and_a_whatsapp_marketing_stop()
    {
        var (company, texter) = await CustomerAsync("sms_opt_in = true");
        var chatter = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543299");
        await Outbox.SetPreferencesAsync(db.DataSource, chatter, "whatsapp_opt_in = true");
        sms.Behaviour = _ => SendResult.OptedOut("Twilio 21610: Attempt to send to unsubscribed recipient");
        whatsApp.Behaviour = _ => SendResult.Permanent("WhatsApp 131050: stopped marketing messages") with { MarketingStopped = true };
        await EnqueueAsync(company, texter, channel: "SMS");
        await EnqueueAsync(company, chatter, type: "GENERAL_UPDATE", channel: "WHATSAPP");

        Assert.Equal(2, await worker.RunOnceAsync());

        Assert.False(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT sms_opt_in FROM communication_preferences WHERE customer_id = $1", texter));
        Assert.Equal("{WHATSAPP}", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT general_updates_opt_out_channels::text FROM communication_preferences WHERE customer_id = $1", chatter));
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM consent_records WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_channel_the_company_has_not_enabled_fails_with_a_clear_reason()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company, sms: false);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543210");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "sms_opt_in = true");
        var id = await EnqueueAsync(company, customer, channel: "SMS");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("FAILED", "the company has not enabled SMS"), (row.Status, row.ErrorMessage));
        Assert.Equal(0, sms.Calls);
    }

    [Theory]
    [InlineData("EMAIL", "reply_to_email = 'accounts at practice'", "the company's replyTo 'accounts at practice' is not an email address: correct it in settings")]
    [InlineData("EMAIL", "from_email = 'accounts@'", "the company's fromEmail 'accounts@' is not an email address: correct it in settings")]
    [InlineData("WHATSAPP", "whatsapp_base_url = 'graph.facebook.com/v25.0'", "the company's whatsApp baseUrl 'graph.facebook.com/v25.0' is not an absolute http(s) URL: correct it in settings")]
    // A password written into the URL is not quoted back (status_reason and error are shown to the API's callers).
    [InlineData("WHATSAPP", "whatsapp_base_url = 'https://meta-user:s3cr@t-pw@graph facebook.com/v25.0'", "the company's whatsApp baseUrl 'https://graph facebook.com/v25.0' is not an absolute http(s) URL: correct it in settings")]
    [InlineData("WHATSAPP", "whatsapp_base_url = 'ftp://meta-user:s3cret@graph.facebook.com/v25.0'", "the company's whatsApp baseUrl 'ftp://graph.facebook.com/v25.0' is not an absolute http(s) URL: correct it in settings")]
    public async Task A_provider_setting_written_by_sql_that_cannot_be_used_fails_the_message_naming_it_without_a_send(string channel, string assignment, string reason)
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, $"UPDATE company_settings SET {assignment} WHERE company_id = $1 RETURNING 1", company));
        var id = await EnqueueAsync(company, customer, channel: channel);

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("FAILED", reason, 0), (row.Status, row.ErrorMessage, row.RetryCount));
        Assert.Equal(0, email.Calls + whatsApp.Calls);
    }

    [Fact]
    public async Task Credentials_under_a_key_this_worker_lacks_wait_as_an_outage_and_credentials_copied_from_another_company_fail()
    {
        var (company, customer) = await CustomerAsync();
        var (otherCompany, otherCustomer) = await CustomerAsync();
        // Company 1's key under a key only the API has so far (put first elsewhere); company 2's copied from company 1's row by SQL.
        var newer = new SecretProtector(Microsoft.Extensions.Options.Options.Create(new EncryptionKeyOptions { Keys = TestKeys.RotatedEncryption }));
        var current = new SecretProtector(Microsoft.Extensions.Options.Options.Create(new EncryptionKeyOptions { Keys = TestKeys.Encryption }));
        await SetSmtpPasswordAsync(company, newer.Protect("smtp-password", TestKeys.Slot(company, "smtp_password_encrypted")));
        await SetSmtpPasswordAsync(otherCompany, current.Protect("smtp-password", TestKeys.Slot(company, "smtp_password_encrypted")));
        var waiting = await EnqueueAsync(company, customer);
        var copied = await EnqueueAsync(otherCompany, otherCustomer);

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, waiting);
        Assert.Equal(("PENDING", 0), (row.Status, row.RetryCount));
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "SELECT outage_attempts FROM communication_logs WHERE id = $1", waiting));
        // No provider was called: nothing in the attempt history, no attempt counted.
        Assert.Equal((0L, 0), (await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_attempts WHERE message_id = $1", waiting), row.AttemptCount));
        Assert.StartsWith("cannot read the company's EMAIL credentials on this worker: secret was encrypted with key 'test2'", row.ErrorMessage, StringComparison.Ordinal);
        var failed = await Outbox.GetAsync(db.DataSource, copied);
        Assert.Equal("FAILED", failed.Status);
        Assert.Contains("was not encrypted for this company and setting", failed.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0, email.Calls);

        async Task SetSmtpPasswordAsync(Guid id, byte[] envelope) =>
            Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "UPDATE company_settings SET smtp_password_encrypted = $2 WHERE company_id = $1 RETURNING 1", id, envelope));
    }

    [Theory]
    [InlineData("EMAIL", null, "customer has no email address")]
    [InlineData("EMAIL", "not-an-email", "customer's email address 'not-an-email' is not valid")]
    [InlineData("WHATSAPP", "12345", "customer's WhatsApp number '12345' is not valid")]
    public async Task A_missing_or_invalid_address_fails_without_retry(string channel, string? address, string reason)
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true",
            email: channel == "EMAIL" ? address : "client@example.com", whatsApp: channel == "WHATSAPP" ? address : null);
        var id = await EnqueueAsync(company, customer, channel: channel);

        await worker.RunOnceAsync();
        time.Advance(TimeSpan.FromHours(1));
        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("FAILED", reason, 0), (row.Status, row.ErrorMessage, row.RetryCount));
        Assert.Equal(0, email.Calls + whatsApp.Calls);
    }

    [Fact]
    public async Task Attachments_a_producer_wrote_that_no_provider_can_carry_fail_their_message_with_the_reason()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true, sms_opt_in = true, invoice_delivery_channel = 'SMS'");
        var notAMediaType = await EnqueueAsync(company, customer, channel: "BOTH");
        var relativeLink = await EnqueueAsync(company, customer);
        var toSms = await EnqueueAsync(company, customer, channel: "SMS");
        var fine = await EnqueueAsync(company, customer);
        var empty = await EnqueueAsync(company, customer);
        var plainHttp = await EnqueueAsync(company, customer);
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH a AS (
                INSERT INTO communication_attachments (message_id, file_name, content_type, content, url)
                VALUES ($1, 'INV-1.pdf', 'pdf', '\x25504446', NULL), ($2, 'INV-2.pdf', 'application/pdf', NULL, 'invoices/INV-2.pdf'),
                       ($3, 'INV-3.pdf', 'application/pdf', '\x25504446', NULL), ($4, 'INV-4.pdf', 'application/pdf', '\x25504446', NULL),
                       ($5, 'INV-5.pdf', 'application/pdf', '', NULL), ($6, 'INV-6.pdf', 'application/pdf', NULL, 'http://files.erp.example/INV-6.pdf')
                RETURNING 1)
            SELECT count(*)::int FROM a
            """, notAMediaType, relativeLink, toSms, fine, empty, plainHttp);

        await worker.RunOnceAsync();
        await worker.RunOnceAsync(); // the BOTH message's WhatsApp sibling, split off although its email failed

        Assert.Equal("attachment 'INV-1.pdf': content type 'pdf' is not a media type such as application/pdf", (await Outbox.GetAsync(db.DataSource, notAMediaType)).ErrorMessage);
        Assert.Equal("FAILED/attachment 'INV-1.pdf': content type 'pdf' is not a media type such as application/pdf", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT status || '/' || error_message FROM communication_logs WHERE split_from = $1 AND id <> $1", notAMediaType));
        Assert.Equal("attachment 'INV-2.pdf': url 'invoices/INV-2.pdf' is not an absolute https URL (http only for localhost)", (await Outbox.GetAsync(db.DataSource, relativeLink)).ErrorMessage);
        // A PDF generator that returned nothing, and a link anyone on the way could swap.
        Assert.Equal("attachment 'INV-5.pdf' is empty (0 bytes)", (await Outbox.GetAsync(db.DataSource, empty)).ErrorMessage);
        Assert.Equal("attachment 'INV-6.pdf': url 'http://files.erp.example/INV-6.pdf' is not an absolute https URL (http only for localhost)", (await Outbox.GetAsync(db.DataSource, plainHttp)).ErrorMessage);
        var onSms = await Outbox.GetAsync(db.DataSource, toSms);
        Assert.Equal(("FAILED", "SMS", "SMS cannot carry attachments (INV-3.pdf)"), (onSms.Status, onSms.Channel, onSms.ErrorMessage));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, fine)).Status);
        Assert.Equal((1, 0, 0), (email.Calls, whatsApp.Calls, sms.Calls));
    }

    [Fact]
    public async Task A_failed_message_keeps_the_customers_address_in_its_error_but_the_log_masks_it()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true", email: "meera.iyer@example.co.in", whatsApp: "+91 98765 432101");
        var badNumber = await EnqueueAsync(company, customer, channel: "WHATSAPP");
        var rejected = await EnqueueAsync(company, customer);
        email.Behaviour = _ => SendResult.Permanent("SMTP 550 5.1.1 <meera.iyer@example.co.in>: Recipient address rejected", bounced: true);

        await worker.RunOnceAsync();

        Assert.Equal("customer's WhatsApp number '+91 98765 432101' is not valid", (await Outbox.GetAsync(db.DataSource, badNumber)).ErrorMessage);
        Assert.Contains("<meera.iyer@example.co.in>", (await Outbox.GetAsync(db.DataSource, rejected)).ErrorMessage, StringComparison.Ordinal);
        var failures = worker.Logs.GetSnapshot().Where(r => r.Message.Contains("failed:", StringComparison.Ordinal)).Select(r => r.Message).ToList();
        Assert.Equal(2, failures.Count);
        Assert.All(failures, logged => Assert.DoesNotContain("98765", logged, StringComparison.Ordinal));
        Assert.All(failures, logged => Assert.DoesNotContain("meera", logged, StringComparison.Ordinal));
        Assert.Contains(failures, logged => logged.Contains("'+** ***** ****01' is not valid", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Quiet_hours_across_midnight_defer_the_message_to_the_windows_end_without_an_attempt()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 24, 18, 0, 0, TimeSpan.Zero)); // 23:30 IST
        var (company, customer) = await CustomerAsync("quiet_hours_start = '22:00', quiet_hours_end = '09:00'");
        var id = await EnqueueAsync(company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));

        await worker.RunOnceAsync();

        var deferred = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("PENDING", deferred.Status);
        Assert.Equal(new DateTimeOffset(2026, 11, 25, 3, 30, 0, TimeSpan.Zero), deferred.NextAttemptAt); // 09:00 IST
        Assert.StartsWith("quiet hours 22:00–09:00 (Asia/Kolkata)", deferred.StatusReason, StringComparison.Ordinal);
        Assert.Equal((0, 0), (deferred.AttemptCount, deferred.RetryCount));
        Assert.Null(deferred.LockedBy);

        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 3, 29, 0, TimeSpan.Zero));
        Assert.Equal(0, await worker.RunOnceAsync());
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 3, 30, 0, TimeSpan.Zero));
        Assert.Equal(1, await worker.RunOnceAsync());

        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, id)).Status);
        Assert.Equal(1, email.Calls);
    }

    [Fact]
    public async Task Quiet_hours_of_the_whole_day_suppress_the_message_rather_than_defer_it_from_day_to_day()
    {
        // 00:00–24:00 ("never contact"), stored by migration 0026's rule as 00:00–23:59:59.999999.
        var (company, customer) = await CustomerAsync("quiet_hours_start = '00:00', quiet_hours_end = '23:59:59.999999'");
        var id = await EnqueueAsync(company, customer, type: "INVOICE");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("SUPPRESSED", row.Status);
        Assert.StartsWith("the customer's quiet hours cover the whole day (00:00–24:00)", row.StatusReason, StringComparison.Ordinal);
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_message_that_would_expire_before_its_deferral_ends_is_cancelled_at_once_with_the_reason()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 24, 18, 0, 0, TimeSpan.Zero)); // 23:30 IST
        var (company, customer) = await CustomerAsync("quiet_hours_start = '22:00', quiet_hours_end = '09:00'");
        var tonight = await EnqueueAsync(company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));
        var tomorrow = await EnqueueAsync(company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));
        await using (var expiry = db.DataSource.CreateCommand("UPDATE communication_logs SET expires_at = CASE id WHEN $1 THEN $3 ELSE $4 END WHERE id IN ($1, $2)"))
        {
            expiry.Parameters.AddWithValue(tonight);
            expiry.Parameters.AddWithValue(tomorrow);
            expiry.Parameters.AddWithValue(new DateTimeOffset(2026, 11, 25, 0, 30, 0, TimeSpan.Zero));   // 06:00 IST, inside the window
            expiry.Parameters.AddWithValue(new DateTimeOffset(2026, 11, 25, 6, 30, 0, TimeSpan.Zero));   // 12:00 IST
            await expiry.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await worker.RunOnceAsync();

        var cancelled = await Outbox.GetAsync(db.DataSource, tonight);
        Assert.Equal(("CANCELLED", "expires at 2026-11-25 00:30:00Z, before it could be sent: quiet hours 22:00–09:00 (Asia/Kolkata); deferred until 2026-11-25 03:30:00Z"),
            (cancelled.Status, cancelled.StatusReason));
        Assert.Equal(("PENDING", new DateTimeOffset(2026, 11, 25, 3, 30, 0, TimeSpan.Zero)), ((await Outbox.GetAsync(db.DataSource, tomorrow)).Status, (await Outbox.GetAsync(db.DataSource, tomorrow)).NextAttemptAt));
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task Quiet_hours_survive_the_DST_change_in_the_customers_zone()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 1, 3, 0, 0, TimeSpan.Zero)); // 23:00 EDT, the night clocks fall back
        var (company, customer) = await CustomerAsync("quiet_hours_start = '22:00', quiet_hours_end = '09:00'", timeZone: "America/New_York");
        var id = await EnqueueAsync(company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));

        await worker.RunOnceAsync();

        Assert.Equal(new DateTimeOffset(2026, 11, 1, 14, 0, 0, TimeSpan.Zero), (await Outbox.GetAsync(db.DataSource, id)).NextAttemptAt); // 09:00 EST
        time.SetUtcNow(new DateTimeOffset(2026, 11, 1, 13, 0, 0, TimeSpan.Zero)); // 08:00 EST: a naive +10 h would have sent already
        Assert.Equal(0, await worker.RunOnceAsync());
        time.SetUtcNow(new DateTimeOffset(2026, 11, 1, 14, 0, 0, TimeSpan.Zero));
        await worker.RunOnceAsync();
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, id)).Status);
    }

    [Fact]
    public async Task A_weekly_reminder_limit_defers_the_second_reminder_of_a_type_to_next_monday()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var past = time.GetUtcNow().AddMinutes(-1);
        var first = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        var second = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        var payment = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: past);
        var invoice = await EnqueueAsync(company, customer, type: "INVOICE", notBefore: past);

        await worker.RunOnceAsync();
        var third = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        await worker.RunOnceAsync();

        var monday = new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero); // Monday 00:00 IST
        var statuses = new[] { first, second, payment, invoice, third }.Select(id => Outbox.GetAsync(db.DataSource, id).Result).ToList();
        Assert.Equal(["SENT", "PENDING", "SENT", "SENT", "PENDING"], statuses.Select(s => s.Status));
        // The second was behind the first in the same batch: looked at again once the first was recorded (a lease later)…
        Assert.Equal(time.GetUtcNow().AddMinutes(2), statuses[1].NextAttemptAt);
        Assert.StartsWith("reminder frequency WEEKLY: another COMPLIANCE_REMINDER", statuses[1].StatusReason, StringComparison.Ordinal);
        // …the third came after the first went out: next Monday.
        Assert.Equal(monday, statuses[4].NextAttemptAt);
        Assert.StartsWith("reminder frequency WEEKLY", statuses[4].StatusReason, StringComparison.Ordinal);
        time.Advance(TimeSpan.FromMinutes(2));
        await worker.RunOnceAsync();
        Assert.Equal(monday, (await Outbox.GetAsync(db.DataSource, second)).NextAttemptAt);

        time.SetUtcNow(monday);
        await worker.RunOnceAsync();
        var afterMonday = new[] { second, third }.Select(id => Outbox.GetAsync(db.DataSource, id).Result.Status).Order().ToList();
        Assert.Equal(["PENDING", "SENT"], afterMonday); // one per week, still
    }

    /// <summary>A sent message due again, as the delivery report recorder leaves one whose provider reported a passing failure.</summary>
    private Task<int> DueAgainAfterReportedFailureAsync(long id) => TestData.ScalarAsync<int>(db.DataSource,
        "UPDATE communication_logs SET status = 'PENDING', retry_count = 1, provider_message_id = NULL, next_attempt_at = $2 WHERE id = $1 RETURNING 1",
        id, time.GetUtcNow().AddMinutes(-1));

    [Fact]
    public async Task A_reminder_sent_again_after_its_send_failed_is_not_held_by_its_own_earlier_send()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var reminder = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-1));
        await worker.RunOnceAsync();
        // The provider then reports the send failed for a passing reason (a throughput limit), and
        // the message is due again (as the delivery report recorder, or a replay, puts it).
        time.Advance(TimeSpan.FromMinutes(10));
        await DueAgainAfterReportedFailureAsync(reminder);

        await worker.RunOnceAsync();

        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, reminder)).Status);
        Assert.Equal(2, email.Calls);
        // Another reminder of its type is still held to the week.
        var next = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-1));
        await worker.RunOnceAsync();
        Assert.Equal("PENDING", (await Outbox.GetAsync(db.DataSource, next)).Status);
    }

    [Fact]
    public async Task A_reminder_sent_again_behind_another_of_its_type_in_the_same_batch_still_waits_its_turn()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'DAILY'");
        var first = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-1));
        await worker.RunOnceAsync();
        // The next day: the first reminder is due again (its provider reported a passing failure),
        // and a second one of its type is due too, ahead of it in the claim's order.
        time.Advance(TimeSpan.FromDays(1));
        var second = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-2));
        await DueAgainAfterReportedFailureAsync(first);

        await worker.RunOnceAsync();

        // One reminder a day: the second went, the first waits behind it (looked at again a lease later).
        Assert.Equal(("SENT", "PENDING"), ((await Outbox.GetAsync(db.DataSource, second)).Status, (await Outbox.GetAsync(db.DataSource, first)).Status));
        Assert.Equal(2, email.Calls);
    }

    [Fact]
    public async Task A_reminder_the_frequency_limit_would_hold_past_its_expiry_goes_now_instead_of_being_cancelled()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var past = time.GetUtcNow().AddMinutes(-1);
        var digest = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        await worker.RunOnceAsync();
        // A sequence's "due tomorrow" that expires when the due date ends (Thursday), and an undated one.
        var dueTomorrow = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, dueTomorrow,
            "expires_at = '2026-11-26 18:30:00+00', metadata = '{\"reminderId\": 7, \"reminderStepId\": 21}'");
        var undated = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        // A producer's own reminder with an expiry: the limit holds, and it is cancelled as before.
        var producers = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: past);
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, producers, "expires_at = '2026-11-26 18:30:00+00'");

        await worker.RunOnceAsync();
        time.Advance(TimeSpan.FromMinutes(3));
        await worker.RunOnceAsync();

        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, digest)).Status);
        var sent = await Outbox.GetAsync(db.DataSource, dueTomorrow);
        Assert.Equal("SENT", sent.Status);
        Assert.StartsWith("sent although a COMPLIANCE_REMINDER already went out this period: reminder frequency WEEKLY would have held it until 2026-11-29 18:30:00Z", sent.StatusReason, StringComparison.Ordinal);
        var held = await Outbox.GetAsync(db.DataSource, undated);
        Assert.Equal(("PENDING", new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero)), (held.Status, held.NextAttemptAt));
        Assert.Equal("CANCELLED", (await Outbox.GetAsync(db.DataSource, producers)).Status);
    }

    /// <summary>
    /// A worker taking one row per batch (so two reminders land in two batches, as with concurrent
    /// batches), and its first batch, running, its email send held until <paramref name="release"/>.
    /// </summary>
    private async Task<(WorkerHarness Lanes, Task<int> FirstBatch)> StartHeldReminderBatchAsync(ManualResetEventSlim release)
    {
        var inSend = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        email.Behaviour = m =>
        {
            inSend.TrySetResult();
            release.Wait(TimeSpan.FromMinutes(2)); // long: the test must not go on as if the send had been held
            return SendResult.Sent($"SMTP-{m.MessageId}");
        };
        var lanes = new WorkerHarness(db.ConnectionString, [email, whatsApp, sms], time, new() { ["Dispatch:BatchSize"] = "1" });
        var firstBatch = Task.Run(lanes.RunOnceAsync, TestContext.Current.CancellationToken);
        await inSend.Task.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken); // the first reminder's send has started
        return (lanes, firstBatch);
    }

    /// <summary>
    /// Runs a batch of <paramref name="worker"/> with message_templates locked: a batch rendering a
    /// template stops there, after its claim read the customers' reminder times and before it enters
    /// the reminder gate and takes their entries. Once it waits, runs <paramref name="meanwhile"/>,
    /// then lets it go on; answers how many rows it claimed.
    /// </summary>
    private async Task<int> RunWithTemplatesLockedAsync(WorkerHarness worker, Func<Task> meanwhile)
    {
        await using var holder = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var hold = await holder.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var lockTemplates = new Npgsql.NpgsqlCommand("LOCK TABLE message_templates IN ACCESS EXCLUSIVE MODE", holder, hold))
        {
            await lockTemplates.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var running = Task.Run(worker.RunOnceAsync, TestContext.Current.CancellationToken);
        for (var waited = 0; await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM pg_locks WHERE relation = 'message_templates'::regclass AND NOT granted") == 0; waited++)
        {
            Assert.True(waited < 200, "the batch never reached the templates");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
        await meanwhile();
        await hold.CommitAsync(TestContext.Current.CancellationToken);
        return await running;
    }

    [Fact]
    public async Task Two_batches_of_one_worker_at_once_send_one_reminder_of_a_type_to_a_customer()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var first = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-2));
        var second = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-1));
        using var release = new ManualResetEventSlim();
        var (oneRowBatches, slow) = await StartHeldReminderBatchAsync(release);
        await using var lanes = oneRowBatches;
        Assert.Equal(1, await lanes.RunOnceAsync()); // the second reminder, while the first is being sent
        release.Set();
        Assert.Equal(1, await slow);

        Assert.Equal([first], email.Sent.Select(m => m.MessageId));
        var deferred = await Outbox.GetAsync(db.DataSource, second);
        Assert.Equal(("PENDING", time.GetUtcNow().AddMinutes(2)), (deferred.Status, deferred.NextAttemptAt)); // looked at again once the first is recorded
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, await lanes.RunOnceAsync());
        deferred = await Outbox.GetAsync(db.DataSource, second);
        Assert.StartsWith("reminder frequency WEEKLY", deferred.StatusReason, StringComparison.Ordinal);
        Assert.Equal(new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero), deferred.NextAttemptAt); // Monday 00:00 IST
        Assert.Equal([first], email.Sent.Select(m => m.MessageId));
    }

    [Fact]
    public async Task Two_worker_processes_at_once_send_one_reminder_of_a_type_to_a_customer_and_a_dead_workers_hold_runs_out_with_its_lease()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var first = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-2));
        var second = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-1));
        using var release = new ManualResetEventSlim();
        var (oneProcess, sending) = await StartHeldReminderBatchAsync(release);
        await using var firstProcess = oneProcess;
        // Another process: its own reminder gate, the same database.
        await using var otherProcess = new WorkerHarness(db.ConnectionString, [email, whatsApp, sms], time, new() { ["Dispatch:BatchSize"] = "1" });

        Assert.Equal(1, await otherProcess.RunOnceAsync()); // the second reminder, while the first process sends the first
        release.Set();
        Assert.Equal(1, await sending);

        Assert.Equal([first], email.Sent.Select(m => m.MessageId));
        var deferred = await Outbox.GetAsync(db.DataSource, second);
        Assert.Equal(("PENDING", time.GetUtcNow().AddMinutes(2)), (deferred.Status, deferred.NextAttemptAt));
        Assert.StartsWith("reminder frequency WEEKLY: another PAYMENT_REMINDER to this customer is being sent", deferred.StatusReason, StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM reminder_frequency_state WHERE held_until > '-infinity'")); // given back once recorded
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, await otherProcess.RunOnceAsync());
        deferred = await Outbox.GetAsync(db.DataSource, second);
        Assert.Equal(("PENDING", new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero)), (deferred.Status, deferred.NextAttemptAt)); // Monday 00:00 IST
        Assert.StartsWith("reminder frequency WEEKLY: a PAYMENT_REMINDER already went out", deferred.StatusReason, StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM reminder_frequency_state WHERE held_until > '-infinity'")); // a hold whose reminder waits is given back too

        // A worker that died holding a customer's reminder: held until its lease's end, then taken over.
        var (orphanedCompany, orphaned) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO reminder_frequency_state (customer_id, type, held_by, held_until)
            VALUES ($1, 'COMPLIANCE_REMINDER', 'dead-worker#1.1', $2::timestamptz + interval '1 minute') RETURNING 1
            """, orphaned, time.GetUtcNow());
        var waiting = await EnqueueAsync(orphanedCompany, orphaned, type: "COMPLIANCE_REMINDER");
        Assert.Equal(1, await otherProcess.RunOnceAsync());
        var held = await Outbox.GetAsync(db.DataSource, waiting);
        Assert.Equal("PENDING", held.Status);
        Assert.StartsWith("reminder frequency WEEKLY: another COMPLIANCE_REMINDER to this customer is being sent", held.StatusReason, StringComparison.Ordinal);
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, await otherProcess.RunOnceAsync());
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, waiting)).Status);
    }

    [Fact]
    public async Task A_process_that_read_the_reminder_times_before_another_process_recorded_its_reminder_sends_no_second_one()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var first = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-2));
        // Rendered from a template: its batch reads message_templates after its claim read the
        // customer's reminder times and before it takes the customer's entry, so holding that table
        // locked stops it exactly there.
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO message_templates (company_id, key, channel, body) VALUES ($1, 'payment-due', 'EMAIL', 'Dear {{ customer.name }}, your fee is due.') RETURNING 1", company);
        var second = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", content: null, templateKey: "payment-due", notBefore: time.GetUtcNow().AddMinutes(-1));
        using var release = new ManualResetEventSlim();
        var (oneProcess, sending) = await StartHeldReminderBatchAsync(release);
        await using var firstProcess = oneProcess;
        await using var otherProcess = new WorkerHarness(db.ConnectionString, [email, whatsApp, sms], time, new() { ["Dispatch:BatchSize"] = "1" });
        // Claims the second, reads "no reminder yet", and waits for the templates while the first is recorded.
        Assert.Equal(1, await RunWithTemplatesLockedAsync(otherProcess, async () =>
        {
            release.Set();
            Assert.Equal(1, await sending); // the first is recorded, and its entry given back
        }));

        Assert.Equal([first], email.Sent.Select(m => m.MessageId));
        var deferred = await Outbox.GetAsync(db.DataSource, second);
        Assert.Equal(("PENDING", new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero)), (deferred.Status, deferred.NextAttemptAt)); // Monday 00:00 IST
        Assert.StartsWith("reminder frequency WEEKLY: a PAYMENT_REMINDER already went out", deferred.StatusReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batch_that_read_the_reminder_times_before_another_batch_recorded_its_reminder_sends_no_second_one()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY'");
        var first = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-2));
        // The second is rendered from a template, so its batch reads message_templates after it has
        // read the customer's reminder times and before it enters the reminder gate: holding that
        // table locked stops it exactly there.
        await using (var template = db.DataSource.CreateCommand("INSERT INTO message_templates (company_id, key, channel, body) VALUES ($1, 'payment-due', 'EMAIL', 'Dear {{ customer.name }}, your fee is due.')"))
        {
            template.Parameters.AddWithValue(company);
            await template.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var second = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", content: null, templateKey: "payment-due", notBefore: time.GetUtcNow().AddMinutes(-1));
        using var release = new ManualResetEventSlim();
        var (oneRowBatches, sending) = await StartHeldReminderBatchAsync(release);
        await using var lanes = oneRowBatches;
        // Claims the second, reads "no reminder yet", and waits for the templates while the first is recorded.
        Assert.Equal(1, await RunWithTemplatesLockedAsync(lanes, async () =>
        {
            release.Set();
            Assert.Equal(1, await sending); // the first is recorded and its batch has left the gate
        }));

        Assert.Equal([first], email.Sent.Select(m => m.MessageId));
        var deferred = await Outbox.GetAsync(db.DataSource, second);
        Assert.Equal(("PENDING", new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero)), (deferred.Status, deferred.NextAttemptAt)); // Monday 00:00 IST
        Assert.StartsWith("reminder frequency WEEKLY: a PAYMENT_REMINDER already went out", deferred.StatusReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_reminder_requested_on_both_channels_is_one_reminder_and_goes_out_on_both_in_its_period()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY', whatsapp_opt_in = true");
        var past = time.GetUtcNow().AddMinutes(-5);
        // Split by the worker: one PAYMENT_REMINDER row on BOTH.
        var split = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", channel: "BOTH", notBefore: past);
        // Written as a pair, as the API wrote a BOTH request before migration 0025 (no split_from): two rows created together.
        await using (var pair = db.DataSource.CreateCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, requested_channel, subject, content, next_attempt_at)
            VALUES ($1, $2, 'COMPLIANCE_REMINDER', 'EMAIL', 'BOTH', 'MGT-7', 'MGT-7 is due', $3), ($1, $2, 'COMPLIANCE_REMINDER', 'WHATSAPP', 'BOTH', 'MGT-7', 'MGT-7 is due', $3)
            """))
        {
            pair.Parameters.AddWithValue(company);
            pair.Parameters.AddWithValue(customer);
            pair.Parameters.AddWithValue(past);
            await pair.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await worker.RunOnceAsync(); // the split's email, and the pair's two channels in one batch
        await worker.RunOnceAsync(); // the split's WhatsApp sibling, created with its original
        var sent = await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(type || ':' || channel || ':' || status, ',' ORDER BY type, channel) FROM communication_logs WHERE company_id = $1", company);
        Assert.Equal("COMPLIANCE_REMINDER:EMAIL:SENT,COMPLIANCE_REMINDER:WHATSAPP:SENT,PAYMENT_REMINDER:EMAIL:SENT,PAYMENT_REMINDER:WHATSAPP:SENT", sent);
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, // the sibling keeps its original's created_at
            "SELECT count(DISTINCT created_at) FROM communication_logs WHERE company_id = $1 AND type = 'PAYMENT_REMINDER' AND (id = $2 OR requested_channel = 'BOTH')", company, split));

        // Another BOTH payment reminder that week is a second reminder: next Monday, both channels.
        var later = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", channel: "BOTH", notBefore: time.GetUtcNow().AddMinutes(-1));
        await worker.RunOnceAsync();
        var deferred = await Outbox.GetAsync(db.DataSource, later);
        Assert.Equal(("PENDING", new DateTimeOffset(2026, 11, 29, 18, 30, 0, TimeSpan.Zero)), (deferred.Status, deferred.NextAttemptAt));
        Assert.Equal(2, whatsApp.Calls);
    }

    [Fact]
    public async Task Retry_counters_a_producer_wrote_out_of_range_are_counted_on_from_the_nearest_valid_value()
    {
        var (company, customer) = await CustomerAsync();
        var negative = await EnqueueAsync(company, customer, content: "retry_count -1", maxRetries: 3);
        var exhausted = await EnqueueAsync(company, customer, content: "retry_count int.MaxValue", maxRetries: 3);
        var good = await EnqueueAsync(company, customer, content: "fine");
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH u AS (UPDATE communication_logs SET retry_count = CASE id WHEN $1 THEN -1 ELSE 2147483647 END, attempt_count = CASE id WHEN $1 THEN -5 ELSE 2147483647 END
                        WHERE id IN ($1, $2) RETURNING 1) SELECT count(*)::int FROM u
            """, negative, exhausted);
        email.Behaviour = m => m.MessageId == good ? SendResult.Sent("smtp-good") : SendResult.Transient("SMTP 451 4.3.0 try again later");

        await worker.RunOnceAsync(); // one batch: the two odd rows' retries must not stop the good row's outcome being recorded

        var retried = await Outbox.GetAsync(db.DataSource, negative);
        Assert.Equal(("PENDING", 1, 1), (retried.Status, retried.RetryCount, retried.AttemptCount));
        var gaveUp = await Outbox.GetAsync(db.DataSource, exhausted);
        Assert.Equal("FAILED", gaveUp.Status);
        Assert.StartsWith("gave up after 2147483647 attempts; last error: SMTP 451", gaveUp.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, good)).Status);
        Assert.Equal(3, email.Calls);
    }

    [Fact]
    public async Task A_row_naming_its_customer_by_code_keeps_the_customer_it_first_resolved_to_when_the_code_moves()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var mehta = await TestData.CreateCustomerAsync(db.DataSource, company, "accounts@mehtatextiles.example", externalId: "CLIENT-77");
        var invoice = await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_logs (company_id, customer_external_id, type, channel, subject, content, next_attempt_at)
            VALUES ($1, 'CLIENT-77', 'INVOICE', 'EMAIL', 'Invoice INV-1042', 'Dear Mehta Textiles, your invoice is attached.', $2) RETURNING id
            """, company, time.GetUtcNow().AddMinutes(-1));
        var greylisted = 0;
        email.Behaviour = m => Interlocked.Increment(ref greylisted) == 1 ? SendResult.Transient("SMTP 451 4.7.1 greylisted, try again later") : SendResult.Sent("smtp-1");

        await worker.RunOnceAsync();
        // Meanwhile the practice renumbers its clients: the code goes to another customer.
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE customers SET external_id = 'CLIENT-77-OLD' WHERE id = $1 RETURNING 1", mehta);
        await TestData.CreateCustomerAsync(db.DataSource, company, "office@shahtraders.example", externalId: "CLIENT-77");
        time.Advance(TimeSpan.FromHours(1));
        await worker.RunOnceAsync();

        Assert.Equal(["accounts@mehtatextiles.example", "accounts@mehtatextiles.example"], email.Sent.Select(m => m.To));
        var row = await Outbox.GetAsync(db.DataSource, invoice);
        Assert.Equal("SENT", row.Status);
        Assert.Equal(mehta, await TestData.ScalarAsync<Guid>(db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", invoice));
    }

    [Fact]
    public async Task A_row_with_text_too_large_to_hold_fails_with_its_size_and_its_batch_goes_on()
    {
        var (company, customer) = await CustomerAsync();
        var huge = await EnqueueAsync(company, customer);
        var hugeData = await EnqueueAsync(company, customer);
        var fine = await EnqueueAsync(company, customer);
        // A generator's runaway loop: two megabytes of newsletter, and of template data.
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH c AS (UPDATE communication_logs SET content = repeat('Dear client, ', 160000) WHERE id = $1 RETURNING 1),
                 d AS (UPDATE communication_logs SET template_data = jsonb_build_object('rows', (SELECT jsonb_agg(g) FROM generate_series(1, 250000) g)) WHERE id = $2 RETURNING 1)
            SELECT count(*)::int FROM c, d
            """, huge, hugeData);

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, huge);
        Assert.Equal(("FAILED", "content is 2080000 bytes, more than the 1 MB a message may hold (send large documents as attachments)"), (row.Status, row.ErrorMessage));
        var data = await Outbox.GetAsync(db.DataSource, hugeData);
        Assert.Equal("FAILED", data.Status);
        Assert.Matches(@"^template_data is \d{7} bytes, more than the 1 MB", data.ErrorMessage);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, fine)).Status);
        Assert.Equal(1, email.Calls);
    }

    [Fact]
    public async Task A_row_giving_both_content_and_a_template_fails_unsent_instead_of_losing_the_text()
    {
        var (company, customer) = await CustomerAsync();
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO message_templates (company_id, key, channel, subject, body) VALUES ($1, 'invoice', 'EMAIL', 'Invoice', 'Your invoice {{ number }}.') RETURNING 1", company);
        var both = await EnqueueAsync(company, customer, content: "Revised: ₹9,440 after credit note CN-12", templateKey: "invoice", templateData: """{"number":"INV-1042"}""");
        var templated = await EnqueueAsync(company, customer, content: null, templateKey: "invoice", templateData: """{"number":"INV-1043"}""");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, both);
        Assert.Equal(("FAILED", "the row gives both content and template_key: give one (the template's text would replace the content)", "Revised: ₹9,440 after credit note CN-12"),
            (row.Status, row.ErrorMessage, row.Content));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, templated)).Status);
        Assert.Equal(1, email.Calls);
        // Sent, a templated row holds its rendered text beside its template: a replay sends it again.
        await TestData.ScalarAsync<int>(db.DataSource,
            "UPDATE communication_logs SET status = 'PENDING', replay_count = 1, next_attempt_at = $2 WHERE id = $1 RETURNING 1", templated, time.GetUtcNow().AddMinutes(-1));
        await worker.RunOnceAsync();
        Assert.Equal(2, email.Calls);
    }

    [Fact]
    public async Task More_retries_than_the_api_allows_written_by_sql_are_read_as_the_limit()
    {
        // Each retry after a timeout may be a duplicate: a SQL producer's max_retries of 1,000 would
        // resend for months, every six hours.
        var (company, customer) = await CustomerAsync();
        var greedy = await EnqueueAsync(company, customer, maxRetries: 1000);
        email.Behaviour = _ => SendResult.Transient("SMTP 451 4.3.0 try again later");

        await worker.RunOnceAsync();

        Assert.StartsWith("retry 1 of 10 at ", (await Outbox.GetAsync(db.DataSource, greedy)).StatusReason, StringComparison.Ordinal);
        // Its tenth retry spent (as after ten more failures), the next failure is its last.
        time.Advance(TimeSpan.FromDays(2));
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET retry_count = 10, next_attempt_at = $2 WHERE id = $1 RETURNING 1", greedy, time.GetUtcNow().AddMinutes(-1));
        await worker.RunOnceAsync();

        Assert.Equal("FAILED", (await Outbox.GetAsync(db.DataSource, greedy)).Status);
        Assert.Equal(2, email.Calls);
    }

    [Fact]
    public async Task Two_reminders_on_both_channels_written_in_one_transaction_are_two_reminders()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY', whatsapp_opt_in = true");
        var ct = TestContext.Current.CancellationToken;
        await using (var connection = await db.DataSource.OpenConnectionAsync(ct))
        await using (var transaction = await connection.BeginTransactionAsync(ct))
        {
            // One transaction, so one created_at for every row. Two filings' reminders on BOTH, each
            // split by the worker (the scheduler queues reminder steps so; a business app may too)…
            await using var both = new NpgsqlCommand("""
                INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, next_attempt_at)
                VALUES ($1, $2, 'COMPLIANCE_REMINDER', 'BOTH', 'AOC-4', 'AOC-4 is due', $3), ($1, $2, 'COMPLIANCE_REMINDER', 'BOTH', 'MGT-7', 'MGT-7 is due', $3)
                """, connection, transaction);
            // …and two invoices' reminders as the API writes BOTH requests: a pair of rows each,
            // marked with the pair's first id.
            await using var pairs = new NpgsqlCommand("""
                INSERT INTO communication_logs (company_id, customer_id, type, channel, requested_channel, subject, content, next_attempt_at)
                SELECT $1, $2, 'PAYMENT_REMINDER', ch, 'BOTH', invoice, invoice || ' is unpaid', $3
                  FROM unnest(ARRAY['INV-17', 'INV-18']) AS invoice, unnest(ARRAY['EMAIL', 'WHATSAPP']) AS ch
                """, connection, transaction);
            foreach (var command in new[] { both, pairs })
            {
                command.Parameters.AddWithValue(company);
                command.Parameters.AddWithValue(customer);
                command.Parameters.AddWithValue(time.GetUtcNow().AddMinutes(-5));
                await command.ExecuteNonQueryAsync(ct);
            }
            await using var mark = new NpgsqlCommand("""
                UPDATE communication_logs m SET split_from = p.first
                  FROM (SELECT subject, min(id) AS first FROM communication_logs WHERE company_id = $1 AND type = 'PAYMENT_REMINDER' GROUP BY subject) p
                 WHERE m.company_id = $1 AND m.type = 'PAYMENT_REMINDER' AND m.subject = p.subject
                """, connection, transaction) { Parameters = { new() { Value = company } } };
            await mark.ExecuteNonQueryAsync(ct);
            await transaction.CommitAsync(ct);
        }

        await worker.RunOnceAsync(); // AOC-4's email (MGT-7 waits behind it, and is split) and INV-17's pair
        await worker.RunOnceAsync(); // AOC-4's and MGT-7's WhatsApp siblings
        time.Advance(TimeSpan.FromMinutes(10));
        await worker.RunOnceAsync(); // the rows that waited behind another reminder

        Assert.Equal(
            "AOC-4:EMAIL:SENT,AOC-4:WHATSAPP:SENT,INV-17:EMAIL:SENT,INV-17:WHATSAPP:SENT,"
            + "INV-18:EMAIL:PENDING,INV-18:WHATSAPP:PENDING,MGT-7:EMAIL:PENDING,MGT-7:WHATSAPP:PENDING",
            await TestData.ScalarAsync<string>(db.DataSource,
                "SELECT string_agg(subject || ':' || channel || ':' || status, ',' ORDER BY subject, channel) FROM communication_logs WHERE company_id = $1", company));
        Assert.Equal(4, await TestData.ScalarAsync<long>(db.DataSource, // the second reminders wait for next Monday 00:00 IST
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND next_attempt_at = '2026-11-29 18:30:00+00'", company));
        Assert.Equal((2, 2), (email.Calls, whatsApp.Calls));
    }

    [Fact]
    public async Task A_preferred_reminder_to_a_customer_who_prefers_both_goes_out_on_both_as_one_reminder()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY', whatsapp_opt_in = true, compliance_reminder_channel = 'BOTH'");
        var id = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", channel: "PREFERRED", notBefore: time.GetUtcNow().AddMinutes(-5));

        await worker.RunOnceAsync(); // the email, and the WhatsApp sibling the split adds
        await worker.RunOnceAsync(); // the sibling: the same reminder, not a second one this week

        Assert.Equal("EMAIL:SENT:PREFERRED,WHATSAPP:SENT:BOTH", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(channel || ':' || status || ':' || requested_channel, ',' ORDER BY channel) FROM communication_logs WHERE company_id = $1 AND split_from = $2", company, id));
        Assert.Equal((1, 1), (email.Calls, whatsApp.Calls));
    }

    [Fact]
    public async Task A_preferred_reminder_split_for_both_whose_email_is_retried_after_its_whatsapp_went_out_is_still_the_same_reminder()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY', whatsapp_opt_in = true, compliance_reminder_channel = 'BOTH'");
        var id = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", channel: "PREFERRED", notBefore: time.GetUtcNow().AddMinutes(-5));
        var greylisted = 0;
        email.Behaviour = _ => Interlocked.Increment(ref greylisted) == 1 ? SendResult.Transient("SMTP 451 4.7.1 greylisted, try again later") : SendResult.Sent("smtp-1");

        await worker.RunOnceAsync(); // the email is greylisted; the split adds the WhatsApp sibling
        await worker.RunOnceAsync(); // the sibling goes out first
        time.Advance(TimeSpan.FromMinutes(10));
        await worker.RunOnceAsync(); // the email's retry: the same reminder, not a second one this week

        Assert.Equal("EMAIL:SENT:PREFERRED,WHATSAPP:SENT:BOTH", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(channel || ':' || status || ':' || requested_channel, ',' ORDER BY channel) FROM communication_logs WHERE company_id = $1 AND split_from = $2", company, id));
        Assert.Equal((2, 1), (email.Calls, whatsApp.Calls));
    }

    [Fact]
    public async Task A_reminder_behind_one_that_is_not_sent_goes_out_in_the_same_period()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'WEEKLY', whatsapp_opt_in = false");
        // MGT-7 by WhatsApp (the customer has not opted in), then AOC-4 by email, in one batch.
        var suppressed = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", channel: "WHATSAPP", notBefore: time.GetUtcNow().AddMinutes(-2));
        var behind = await EnqueueAsync(company, customer, type: "COMPLIANCE_REMINDER", notBefore: time.GetUtcNow().AddMinutes(-1));

        await worker.RunOnceAsync();
        Assert.Equal("SUPPRESSED", (await Outbox.GetAsync(db.DataSource, suppressed)).Status);
        Assert.Equal("PENDING", (await Outbox.GetAsync(db.DataSource, behind)).Status);

        time.Advance(TimeSpan.FromMinutes(2));
        await worker.RunOnceAsync();
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, behind)).Status);
        Assert.Equal([behind], email.Sent.Select(m => m.MessageId));
    }

    [Fact]
    public async Task A_custom_cron_frequency_waits_for_the_next_occurrence_in_the_customers_zone()
    {
        time.SetUtcNow(new DateTimeOffset(2026, 11, 25, 4, 30, 0, TimeSpan.Zero)); // Wednesday 10:00 IST
        var (company, customer) = await CustomerAsync("reminder_frequency = 'CUSTOM', reminder_cron = '0 10 * * MON,THU'");
        var past = time.GetUtcNow().AddMinutes(-1);
        await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: past);
        var second = await EnqueueAsync(company, customer, type: "PAYMENT_REMINDER", notBefore: past);

        await worker.RunOnceAsync();
        time.Advance(TimeSpan.FromMinutes(2)); // the second was behind the first in its batch: checked again a lease later
        await worker.RunOnceAsync();

        var thursday = new DateTimeOffset(2026, 11, 26, 4, 30, 0, TimeSpan.Zero); // Thursday 10:00 IST
        Assert.Equal(thursday, (await Outbox.GetAsync(db.DataSource, second)).NextAttemptAt);
        time.SetUtcNow(thursday);
        await worker.RunOnceAsync();
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, second)).Status);
    }

    [Fact]
    public async Task An_expired_message_is_cancelled_without_a_send_and_keeps_the_count_of_its_earlier_tries()
    {
        var (company, customer) = await CustomerAsync();
        var id = await EnqueueAsync(company, customer);
        // Tried three times before (two retries used), then held past its expiry.
        await using (var expire = db.DataSource.CreateCommand("UPDATE communication_logs SET expires_at = $2, retry_count = 2, attempt_count = 3 WHERE id = $1"))
        {
            expire.Parameters.AddWithValue(id);
            expire.Parameters.AddWithValue(time.GetUtcNow().AddSeconds(-1));
            await expire.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("CANCELLED", row.Status);
        Assert.StartsWith("expired at", row.StatusReason, StringComparison.Ordinal);
        Assert.Equal((2, 3), (row.RetryCount, row.AttemptCount));
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task Templates_render_in_the_customers_language_then_its_base_language_falling_back_to_english()
    {
        var (company, hindi) = await CustomerAsync();
        var tamil = await TestData.CreateCustomerAsync(db.DataSource, company, "tamil@example.com");
        var hindiInIndia = await TestData.CreateCustomerAsync(db.DataSource, company, "hi-in@example.com");
        var englishInIndia = await TestData.CreateCustomerAsync(db.DataSource, company, "en-in@example.com");
        await using (var setup = db.DataSource.CreateBatch())
        {
            setup.BatchCommands.Add(new("UPDATE customers SET preferred_language = 'hi' WHERE id = $1") { Parameters = { new() { Value = hindi } } });
            setup.BatchCommands.Add(new("UPDATE customers SET preferred_language = 'ta' WHERE id = $1") { Parameters = { new() { Value = tamil } } });
            // A regional tag, written in lower case by a business app's SQL: Hindi's base template serves it.
            setup.BatchCommands.Add(new("UPDATE customers SET preferred_language = 'hi-in' WHERE id = $1") { Parameters = { new() { Value = hindiInIndia } } });
            // The same tag as a template's 'en-IN', in another case.
            setup.BatchCommands.Add(new("UPDATE customers SET preferred_language = 'en-in' WHERE id = $1") { Parameters = { new() { Value = englishInIndia } } });
            setup.BatchCommands.Add(new("""
                INSERT INTO message_templates (company_id, key, channel, language, subject, body) VALUES
                  ($1, 'invoice', 'EMAIL', 'en', 'Invoice {{ number }}', 'Dear {{ customer.name }}, invoice {{ number }} is attached.'),
                  ($1, 'invoice', 'EMAIL', 'hi', 'चालान {{ number }}', 'प्रिय {{ customer.name }}, चालान {{ number }} संलग्न है।'),
                  ($1, 'invoice', 'EMAIL', 'en-IN', 'Tax invoice {{ number }}', 'Dear {{ customer.name }}, tax invoice {{ number }} is attached.'),
                  ($1, 'invoice', 'EMAIL', 'en-in', 'Tax invoice {{ number }} (lower case)', 'The same tag in another case: one of them is used, and the batch loads.')
                """) { Parameters = { new() { Value = company } } });
            await setup.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var toHindi = await EnqueueAsync(company, hindi, content: null, templateKey: "invoice", templateData: """{"number": "INV-7"}""");
        var toTamil = await EnqueueAsync(company, tamil, content: null, templateKey: "invoice", templateData: """{"number": "INV-8"}""");
        var toHindiInIndia = await EnqueueAsync(company, hindiInIndia, content: null, templateKey: "invoice", templateData: """{"number": "INV-9"}""");
        var toEnglishInIndia = await EnqueueAsync(company, englishInIndia, content: null, templateKey: "invoice", templateData: """{"number": "INV-10"}""");

        await worker.RunOnceAsync();

        var hindiRow = await Outbox.GetAsync(db.DataSource, toHindi);
        var tamilRow = await Outbox.GetAsync(db.DataSource, toTamil);
        Assert.Equal(("SENT", "चालान INV-7", "प्रिय Client, चालान INV-7 संलग्न है।", "invoice@v1/EMAIL/hi"), (hindiRow.Status, hindiRow.Subject, hindiRow.Content, hindiRow.TemplateUsed));
        Assert.Equal(("SENT", "Invoice INV-8", "invoice@v1/EMAIL/en"), (tamilRow.Status, tamilRow.Subject, tamilRow.TemplateUsed));
        var hindiInIndiaRow = await Outbox.GetAsync(db.DataSource, toHindiInIndia);
        Assert.Equal(("SENT", "चालान INV-9", "invoice@v1/EMAIL/hi"), (hindiInIndiaRow.Status, hindiInIndiaRow.Subject, hindiInIndiaRow.TemplateUsed));
        var englishInIndiaRow = await Outbox.GetAsync(db.DataSource, toEnglishInIndia);
        Assert.Equal(("SENT", "Tax invoice INV-10", "invoice@v1/EMAIL/en-IN"), (englishInIndiaRow.Status, englishInIndiaRow.Subject, englishInIndiaRow.TemplateUsed));
    }

    [Fact]
    public async Task Text_postgresql_cannot_store_is_cleaned_so_the_batchs_outcomes_are_recorded()
    {
        // A template that cuts a string by characters can split an emoji (a lone UTF-16 surrogate,
        // which Npgsql's UTF-8 encoder refuses), and one can write a NUL (which text refuses). Either
        // used to throw away every outcome of the batch, whose messages went out again at its lease's end.
        var (company, customer) = await CustomerAsync();
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO message_templates (company_id, key, channel, subject, body)
            VALUES ($1, 'cut', 'EMAIL', 'Hello {{ "Priya 🌸" | string.slice 0 7 }}', 'A{{ "\u0000" }}B {{ "🌸🌸" | string.slice 1 2 }}') RETURNING 1
            """, company);
        var cut = await EnqueueAsync(company, customer, content: null, templateKey: "cut");
        var plain = await EnqueueAsync(company, customer);
        // A provider's error text, cut at a length or not, is cleaned as it is stored.
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "sms_opt_in = true");
        sms.Behaviour = _ => SendResult.Permanent("Twilio 30008: \uD83C\0 unknown error");
        var refused = await EnqueueAsync(company, customer, channel: "SMS", content: "Your fee is due.");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, cut);
        Assert.Equal(("SENT", "Hello Priya \uFFFD", "AB \uFFFD\uFFFD"), (row.Status, row.Subject, row.Content));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, plain)).Status);
        Assert.Equal(2, email.Calls);
        Assert.Contains(email.Sent, m => m.Body == "AB \uFFFD\uFFFD");   // what went out is what was stored
        Assert.Equal(("FAILED", "Twilio 30008: \uFFFD unknown error"), ((await Outbox.GetAsync(db.DataSource, refused)).Status, (await Outbox.GetAsync(db.DataSource, refused)).ErrorMessage));
        Assert.Equal("Twilio 30008: \uFFFD unknown error", Assert.Single(await Outbox.AttemptsAsync(db.DataSource, refused)).Error);
    }

    [Fact]
    public async Task An_outcome_the_database_refuses_is_recorded_without_it_and_the_rest_of_the_batch_as_it_was()
    {
        // numeric(12, 6) holds under a million: a provider's absurd price fails the batch's write.
        var (company, customer) = await CustomerAsync("sms_opt_in = true");
        sms.Behaviour = m => SendResult.Sent("SM-absurd", 12_345_678m, "USD");
        var absurd = await EnqueueAsync(company, customer, channel: "SMS", content: "Your fee is due.");
        var plain = await EnqueueAsync(company, customer);

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, absurd);
        Assert.Equal(("SENT", "SM-absurd", null), (row.Status, row.ProviderMessageId, row.Cost));
        Assert.StartsWith("its outcome could not be stored as it was (PostgresException: 22003", row.StatusReason, StringComparison.Ordinal);
        Assert.EndsWith("recorded without its texts and cost", row.StatusReason, StringComparison.Ordinal);
        Assert.Equal(("SENT", 0.05m), ((await Outbox.GetAsync(db.DataSource, plain)).Status, (await Outbox.GetAsync(db.DataSource, plain)).Cost));
        Assert.Single(await Outbox.AttemptsAsync(db.DataSource, absurd));
    }

    [Fact]
    public async Task An_outcome_refused_even_without_its_texts_is_recorded_as_its_status_alone_so_the_message_is_not_sent_again()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        var update = await EnqueueAsync(company, customer, type: "GENERAL_UPDATE", channel: "BOTH");
        // Something the split's row breaks (here a trigger standing in for a constraint a future
        // migration might add): with its texts or without, the outcome carrying the split is refused.
        var trigger = $"refuse_split_{company:N}";
        await TestData.ScalarAsync<int>(db.DataSource, $"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'no sibling rows here' USING ERRCODE = 'check_violation';
            END $$;
            CREATE TRIGGER {trigger} BEFORE INSERT ON communication_logs FOR EACH ROW
                WHEN (NEW.company_id = '{company}' AND NEW.split_from IS NOT NULL) EXECUTE FUNCTION {trigger}();
            SELECT 1
            """);
        try
        {
            await worker.RunOnceAsync();
            time.Advance(TimeSpan.FromMinutes(10));   // past any lease
            await worker.RunOnceAsync();
        }
        finally
        {
            await TestData.ScalarAsync<int>(db.DataSource, $"DROP TRIGGER {trigger} ON communication_logs; DROP FUNCTION {trigger}(); SELECT 1");
        }

        var row = await Outbox.GetAsync(db.DataSource, update);
        Assert.Equal("SENT", row.Status);
        Assert.StartsWith("its outcome could not be stored (PostgresException: 23514: no sibling rows here); its status alone was recorded, and its WHATSAPP row was not created", row.StatusReason, StringComparison.Ordinal);
        Assert.Equal(1, email.Calls);   // once: not claimed and sent again at every lease
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_row_or_customer_holding_a_value_dotnet_cannot_read_fails_with_the_column_and_the_rest_of_the_batch_goes()
    {
        // A producer's typo: a timestamp after the year 9999 is valid to PostgreSQL, not to .NET.
        var (company, customer) = await CustomerAsync();
        var typo = await EnqueueAsync(company, customer);
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, typo, "expires_at = '20260-01-01'");
        var brokenCustomer = await TestData.CreateCustomerAsync(db.DataSource, company, "other@example.com");
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE customers SET updated_at = '99999-01-01' WHERE id = $1 RETURNING 1", brokenCustomer);
        var toBroken = await EnqueueAsync(company, brokenCustomer);
        var fine = await EnqueueAsync(company, customer);

        await worker.RunOnceAsync();

        var typoRow = await Outbox.GetAsync(db.DataSource, typo);
        Assert.Equal("FAILED", typoRow.Status);
        Assert.StartsWith("the row cannot be read: expires_at holds a value this worker cannot read", typoRow.ErrorMessage, StringComparison.Ordinal);
        var brokenRow = await Outbox.GetAsync(db.DataSource, toBroken);
        Assert.Equal("FAILED", brokenRow.Status);
        Assert.StartsWith("the customer's record cannot be read: updated_at holds a value this worker cannot read", brokenRow.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, fine)).Status);
        Assert.Equal([fine], email.Sent.Select(m => m.MessageId));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND locked_by IS NOT NULL", company));

        // '24:00', which PostgreSQL's time takes and TimeOnly cannot hold, is refused by name (0026).
        var refused = await Assert.ThrowsAsync<Npgsql.PostgresException>(() => Outbox.SetPreferencesAsync(db.DataSource, customer, "quiet_hours_start = '22:00', quiet_hours_end = '24:00'"));
        Assert.Equal("quiet_hours_before_midnight", refused.ConstraintName);
    }

    [Fact]
    public async Task A_template_sees_dates_in_the_customers_time_zone_and_indian_number_grouping()
    {
        var (company, customer) = await CustomerAsync();
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO message_templates (company_id, key, channel, subject, body)
            VALUES ($1, 'fee', 'EMAIL', 'Fee', 'Raised {{ message.created_at | date.to_string "%d/%m/%Y %H:%M" }}, sent {{ date.now | date.to_string "%H:%M" }}: ₹{{ fee | math.format "N0" }} by {{ due | date.parse | date.to_string "%d %B" }}')
            RETURNING 1
            """, company);
        var id = await EnqueueAsync(company, customer, content: null, templateKey: "fee", templateData: """{"fee": 118000, "due": "05/02/2026"}""");
        await OutboxComms.Tests.Api.MessageTestData.SetAsync(db.DataSource, id, "created_at = '2026-01-04 19:00:00+00'");   // 00:30 IST on the 5th

        await worker.RunOnceAsync();

        // The clock is 06:00 UTC, 11:30 in Kolkata.
        Assert.Equal("Raised 05/01/2026 00:30, sent 11:30: ₹1,18,000 by 05 February", Assert.Single(email.Sent).Body);
    }

    [Fact]
    public async Task Template_data_jsonb_holds_but_dotnet_reads_differently_fails_or_renders_without_using_up_retries()
    {
        var (company, customer) = await CustomerAsync();
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO message_templates (company_id, key, channel, subject, body)
            VALUES ($1, 'fee', 'EMAIL', 'Fee', 'Amount {{ amount }}') RETURNING 1
            """, company));
        // A producer's data nested 300 deep (jsonb takes it), and a number beyond a double's range.
        var deep = await EnqueueAsync(company, customer, content: null, templateKey: "fee",
            templateData: string.Concat(Enumerable.Repeat("{\"a\":", 300)) + "1" + new string('}', 300));
        var huge = await EnqueueAsync(company, customer, content: null, templateKey: "fee", templateData: """{"amount": 1e400}""");

        await worker.RunOnceAsync();

        var deepRow = await Outbox.GetAsync(db.DataSource, deep);
        Assert.Equal(("FAILED", 0), (deepRow.Status, deepRow.RetryCount));
        Assert.Contains("template_data cannot be read", deepRow.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, huge)).Status);
        Assert.Equal("Amount 1" + new string('0', 400), Assert.Single(email.Sent).Body);
    }

    [Fact]
    public async Task Subjects_and_whatsapp_template_parameters_go_out_on_one_line_and_an_empty_one_fails_the_message()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        await using (var setup = db.DataSource.CreateCommand("""
            INSERT INTO message_templates (company_id, key, channel, language, subject, body, html_body, provider_template_name, parameter_mapping) VALUES
              ($1, 'invoice', 'EMAIL', 'en', 'Invoice {{ number }}', 'Invoice {{ number }} is attached.', '<p>{{ note }}</p>', NULL, '[]'),
              ($1, 'no-subject', 'EMAIL', 'en', NULL, 'Hello', NULL, NULL, '[]'),
              ($1, 'invoice', 'WHATSAPP', 'en-GB', NULL, 'Invoice {{ number }}', NULL, 'invoice_ready', '["{{ number }}", "{{ address }}"]'),
              ($1, 'odd-mapping', 'WHATSAPP', 'en', NULL, 'x', NULL, 'invoice_ready', '["{{ number }}", 2]')
            """))
        {
            setup.Parameters.AddWithValue(company);
            await setup.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE customers SET preferred_language = 'en-GB' WHERE id = $1 RETURNING 1", customer);
        // A business app's field with a line break: in a subject, a header injection attempt to SMTP.
        const string Data = """{"number": "INV-7\r\nBcc: someone@example.com", "address": "12 MG Road,\n  Bengaluru\t560001", "note": "<a href=https://pay.example>Pay</a>"}""";
        var templated = await EnqueueAsync(company, customer, content: null, templateKey: "invoice", templateData: Data);
        var plain = await EnqueueAsync(company, customer, content: "Body");
        await using (var subject = db.DataSource.CreateCommand("UPDATE communication_logs SET subject = E'Reminder\r\n  MGT-7' WHERE id = $1"))
        {
            subject.Parameters.AddWithValue(plain);
            await subject.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var noSubject = await EnqueueAsync(company, customer, content: null, templateKey: "no-subject");
        var plainNoSubject = await EnqueueAsync(company, customer, content: "Body");
        await using (var none = db.DataSource.CreateCommand("UPDATE communication_logs SET subject = CASE WHEN id = $1 THEN NULL ELSE ' ' END WHERE id IN ($1, $2)"))
        {
            none.Parameters.AddWithValue(noSubject);
            none.Parameters.AddWithValue(plainNoSubject);
            await none.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var whatsApp = await EnqueueAsync(company, customer, channel: "WHATSAPP", content: null, templateKey: "invoice", templateData: Data);
        var emptyParameter = await EnqueueAsync(company, customer, channel: "WHATSAPP", content: null, templateKey: "invoice", templateData: """{"number": "INV-8", "address": "  "}""");
        var oddMapping = await EnqueueAsync(company, customer, channel: "WHATSAPP", content: null, templateKey: "odd-mapping", templateData: """{"number": "INV-9"}""");

        await worker.RunOnceAsync();

        var subjects = email.Sent.ToDictionary(m => m.MessageId, m => m.Subject);
        Assert.Equal("Invoice INV-7 Bcc: someone@example.com", subjects[templated]);
        Assert.Equal("<p>&lt;a href=https://pay.example&gt;Pay&lt;/a&gt;</p>", email.Sent.Single(m => m.MessageId == templated).HtmlBody);   // data cannot add a link
        Assert.Equal("Reminder MGT-7", subjects[plain]);
        Assert.Equal(["INV-7 Bcc: someone@example.com", "12 MG Road, Bengaluru 560001"], this.whatsApp.Sent.Single().ProviderTemplate!.Parameters);
        Assert.Equal("en_GB", this.whatsApp.Sent.Single().ProviderTemplate!.Language);   // WhatsApp's codes take an underscore
        Assert.Equal(whatsApp, this.whatsApp.Sent.Single().MessageId);
        Assert.Equal(("FAILED", "template no-subject@v1/EMAIL/en: the email's subject is empty (the template's rendered empty, or it has none and the message gave none)"),
            ((await Outbox.GetAsync(db.DataSource, noSubject)).Status, (await Outbox.GetAsync(db.DataSource, noSubject)).ErrorMessage));
        Assert.Equal(("FAILED", "the email has no subject (the row's subject is empty)"),
            ((await Outbox.GetAsync(db.DataSource, plainNoSubject)).Status, (await Outbox.GetAsync(db.DataSource, plainNoSubject)).ErrorMessage));
        Assert.Equal("template invoice@v1/WHATSAPP/en-GB: parameter 2 of the provider template rendered empty", (await Outbox.GetAsync(db.DataSource, emptyParameter)).ErrorMessage);
        Assert.Equal("template odd-mapping@v1/WHATSAPP/en: parameter 2 of the provider template is not a text (parameter_mapping holds Number)", (await Outbox.GetAsync(db.DataSource, oddMapping)).ErrorMessage);
        Assert.Equal((0, 0), ((await Outbox.GetAsync(db.DataSource, oddMapping)).AttemptCount, (await Outbox.GetAsync(db.DataSource, emptyParameter)).AttemptCount));
    }

    [Fact]
    public async Task Transient_failures_retry_on_a_golden_ratio_schedule_then_fail_with_the_last_error()
    {
        var (company, customer) = await CustomerAsync();
        email.Behaviour = _ => SendResult.Transient("SMTP 451 4.7.1 try again later");
        var id = await EnqueueAsync(company, customer, maxRetries: 3);

        var delays = new List<TimeSpan>();
        for (var attempt = 1; attempt <= 4; attempt++)
        {
            var before = time.GetUtcNow();
            Assert.Equal(1, await worker.RunOnceAsync());
            var row = await Outbox.GetAsync(db.DataSource, id);
            if (attempt <= 3)
            {
                Assert.Equal(("PENDING", attempt, "SMTP 451 4.7.1 try again later"), (row.Status, row.RetryCount, row.ErrorMessage));
                delays.Add(row.NextAttemptAt - before);
                time.SetUtcNow(row.NextAttemptAt);
            }
            else
            {
                Assert.Equal("FAILED", row.Status);
                Assert.Equal("gave up after 4 attempts; last error: SMTP 451 4.7.1 try again later", row.ErrorMessage);
            }
        }

        // Retry n waits 10 s × 1.618^n, ± 10 % jitter.
        for (var n = 1; n <= 3; n++)
        {
            var expected = 10 * Math.Pow(1.618, n);
            Assert.InRange(delays[n - 1].TotalSeconds, expected * 0.9, expected * 1.1);
        }
        Assert.Equal(4, email.Calls);
        var attempts = await Outbox.AttemptsAsync(db.DataSource, id);
        Assert.Equal([1, 2, 3, 4], attempts.Select(a => a.AttemptNo));
        Assert.All(attempts, a => Assert.Equal("TRANSIENT_FAILURE", a.Outcome));
    }

    [Fact]
    public async Task A_provider_outage_delays_a_message_without_using_up_its_retries_until_the_outage_budget_is_spent()
    {
        await using var patient = new WorkerHarness(db.ConnectionString, [email, whatsApp, sms], time,
            new() { ["Dispatch:OutageRetries"] = "2", ["Dispatch:OutageMaxDelay"] = "00:00:20" });
        var (company, customer) = await CustomerAsync();
        email.Behaviour = _ => SendResult.Unavailable("SendGrid HTTP 503");
        var id = await EnqueueAsync(company, customer, maxRetries: 1);

        var rows = new List<MessageRow>();
        var waits = new List<TimeSpan>();
        for (var attempt = 1; attempt <= 4; attempt++)
        {
            var before = time.GetUtcNow();
            Assert.Equal(1, await patient.RunOnceAsync());
            var row = await Outbox.GetAsync(db.DataSource, id);
            rows.Add(row);
            waits.Add(row.NextAttemptAt - before);
            time.SetUtcNow(row.NextAttemptAt);
        }

        // Two attempts during the outage use up nothing; after that its one retry counts, then it fails.
        Assert.Equal(["PENDING/0/1", "PENDING/0/2", "PENDING/1/3", "FAILED/2/4"], rows.Select(r => $"{r.Status}/{r.RetryCount}/{r.AttemptCount}"));
        Assert.StartsWith("provider unavailable (1 of 2 attempts that use up no retries); next attempt at ", rows[0].StatusReason, StringComparison.Ordinal);
        Assert.Equal("SendGrid HTTP 503", rows[1].ErrorMessage);
        Assert.InRange(waits[0].TotalSeconds, 10 * 1.618 * 0.9, 10 * 1.618 * 1.1);
        Assert.InRange(waits[1].TotalSeconds, 20 * 0.9, 20 * 1.1);   // OutageMaxDelay ± jitter: 10 s × 1.618² would be 24–29 s
        Assert.Equal("gave up after 4 attempts; last error: SendGrid HTTP 503", rows[3].ErrorMessage);

        // A replay gives the message a fresh outage budget as well as fresh retries.
        Assert.Equal(1, await new OutboxComms.Core.Messages.MessageReplay(db.DataSource, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<OutboxComms.Core.Messages.MessageReplay>.Instance)
            .ReplayAsync(new OutboxComms.Core.Messages.ReplayFilter { CompanyId = company, MessageId = id }, "ops", CancellationToken.None));
        Assert.Equal(1, await patient.RunOnceAsync());
        var replayed = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("PENDING/0/5", $"{replayed.Status}/{replayed.RetryCount}/{replayed.AttemptCount}");
        // The same idempotency key on every retry of the first send, a new one for the replay's.
        var key = $"outboxcomms-{company:N}-{id}";
        Assert.Equal([key, key, key, key, key + "-r1"], email.Sent.Select(m => m.IdempotencyKey));
        Assert.StartsWith("provider unavailable (1 of 2 ", replayed.StatusReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_message_waits_out_an_outage_and_goes_once_the_provider_is_back()
    {
        var (company, customer) = await CustomerAsync();
        const string Refused = "SMTP connection to smtp.practice.example:587 failed: Connection refused";
        email.Behaviour = _ => SendResult.Unavailable(Refused);
        var id = await EnqueueAsync(company, customer, maxRetries: 0);

        // Seven attempts over about 7 minutes (16 s, 26 s, 42 s … apart, ± 10 %).
        for (var attempt = 1; attempt <= 7; attempt++)
        {
            await worker.RunOnceAsync();
            time.SetUtcNow((await Outbox.GetAsync(db.DataSource, id)).NextAttemptAt);
        }
        email.Behaviour = m => SendResult.Sent($"SMTP-{m.MessageId}");
        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", 0, 8), (row.Status, row.RetryCount, row.AttemptCount));
        // The operator hears of it when it starts, again once it has lasted 5 minutes (the 7th
        // attempt, after 6.6-8.1 minutes; the 6th came at 4-5), and when the provider is back.
        var told = worker.Logs.GetSnapshot().Where(r => r.Category == typeof(OutboxComms.Worker.Dispatch.ProviderCircuitBreakers).FullName).ToList();
        Assert.Equal([LogLevel.Warning, LogLevel.Warning, LogLevel.Information], told.Select(r => r.Level));
        Assert.Equal($"Provider SMTP of company {company} is unavailable: {Refused}. Its messages wait for it without using up their retries", told[0].Message);
        Assert.Matches($"^Provider SMTP of company {company} is still unavailable: since .+Z, 7 sends found it so; last error: {Refused}$", told[1].Message);
        Assert.Matches($"^Provider SMTP of company {company} is available again after 00:(0[6-9]|1\\d):\\d\\d(\\.\\d+)?, in which 7 sends found it unavailable$", told[2].Message);
    }

    [Fact]
    public async Task A_providers_retry_after_is_honoured()
    {
        var (company, customer) = await CustomerAsync("whatsapp_opt_in = true");
        whatsApp.Behaviour = _ => SendResult.Transient("WhatsApp 130429: rate limit hit", TimeSpan.FromMinutes(15));
        var id = await EnqueueAsync(company, customer, channel: "WHATSAPP");

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal("PENDING", row.Status);
        Assert.Equal(time.GetUtcNow().AddMinutes(15), row.NextAttemptAt);
    }

    [Theory]
    [InlineData(false, "FAILED")]
    [InlineData(true, "BOUNCED")]
    public async Task A_permanent_failure_fails_at_once_without_retry(bool bounced, string status)
    {
        var (company, customer) = await CustomerAsync();
        email.Behaviour = _ => SendResult.Permanent("SMTP 550 5.1.1 mailbox unavailable", bounced);
        var id = await EnqueueAsync(company, customer);

        await worker.RunOnceAsync();
        time.Advance(TimeSpan.FromDays(1));
        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal((status, "SMTP 550 5.1.1 mailbox unavailable", 0, 1), (row.Status, row.ErrorMessage, row.RetryCount, row.AttemptCount));
        Assert.Equal(1, email.Calls);
        Assert.Equal("PERMANENT_FAILURE", Assert.Single(await Outbox.AttemptsAsync(db.DataSource, id)).Outcome);
    }
}
