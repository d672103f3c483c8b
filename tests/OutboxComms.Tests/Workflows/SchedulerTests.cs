using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Workflows;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Scheduling;

namespace OutboxComms.Tests.Workflows;

/// <summary>
/// The scheduler inside the worker, driven pass by pass on a fake clock shared with the API,
/// against real PostgreSQL. A database per test: the scheduler claims every due step and schedule.
/// </summary>
public sealed class SchedulerTests(PostgresServer server) : IAsyncLifetime
{
    private readonly DatabaseFixture db = new(server);
    // Sunday 1 March 2026, 00:00 UTC. New York moves to EDT on Sunday 8 March.
    private readonly FakeTimeProvider time = new(new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly CountingProvider email = WorkerHarness.Email();
    private WorkerHarness worker = null!;
    private ApiFactory api = null!;

    public async ValueTask InitializeAsync()
    {
        await db.InitializeAsync();
        worker = new WorkerHarness(db.ConnectionString, [email, WorkerHarness.WhatsApp(), WorkerHarness.Sms()], time);
        api = new ApiFactory(db.ConnectionString) { Time = time };
    }

    public async ValueTask DisposeAsync()
    {
        await api.DisposeAsync();
        await worker.DisposeAsync();
        await db.DisposeAsync();
    }

    [Fact]
    public async Task Steps_fire_at_the_customers_local_time_across_time_zones_and_a_DST_change()
    {
        var (client, company) = await PracticeAsync();
        var kolkata = await TestData.CreateCustomerAsync(db.DataSource, company, timeZone: "Asia/Kolkata");
        var newYork = await TestData.CreateCustomerAsync(db.DataSource, company, timeZone: "America/New_York");
        var inKolkata = await CreateReminderAsync(client, kolkata, "2026-03-10", 0, -3, 1);
        var inNewYork = await CreateReminderAsync(client, newYork, "2026-03-10", 0, -3, 1);

        // 10:00 on 7 March: 04:30Z in Kolkata, 15:00Z in New York (EST).
        Assert.Equal(0, (await PassAt("2026-03-07T04:29:59Z")).Steps.Queued);
        Assert.Equal(1, (await PassAt("2026-03-07T04:30:00Z")).Steps.Queued);
        Assert.Equal(0, (await PassAt("2026-03-07T14:59:59Z")).Steps.Queued);
        Assert.Equal(1, (await PassAt("2026-03-07T15:00:00Z")).Steps.Queued);
        // 10:00 on 11 March: still 04:30Z in Kolkata; 14:00Z in New York, now on EDT (13:59Z is 09:59 there).
        Assert.Equal(1, (await PassAt("2026-03-11T04:30:00Z")).Steps.Queued);
        Assert.Equal(0, (await PassAt("2026-03-11T13:59:59Z")).Steps.Queued);
        Assert.Equal(1, (await PassAt("2026-03-11T14:00:00Z")).Steps.Queued);

        var rows = await RowsAsync(company);
        Assert.Equal(
            [(kolkata, At("2026-03-07T04:30:00Z")), (newYork, At("2026-03-07T15:00:00Z")), (kolkata, At("2026-03-11T04:30:00Z")), (newYork, At("2026-03-11T14:00:00Z"))],
            rows.Select(r => (r.CustomerId, r.NextAttemptAt)));
        Assert.All(rows, r => Assert.Equal(("PAYMENT_REMINDER", "PREFERRED", "PENDING"), (r.Type, r.Channel, r.Status)));
        var steps = await StepsAsync(inNewYork);
        Assert.All(steps, s => Assert.Equal("QUEUED", s.State));
        Assert.Equal(steps.Select(s => $"reminder-step:{s.Id}"), rows.Where(r => r.CustomerId == newYork).Select(r => r.IdempotencyKey!));
        var data = rows[0].TemplateData;
        Assert.Equal(("Invoice INV-1042", "2026-03-10", -3, "₹11,800"),
            (data["reminder"].Text("reference"), data["reminder"].Text("dueDate"), data["reminder"]!["offsetDays"]!.GetValue<int>(), data.Text("amount")));
        Assert.Equal(inKolkata, data["reminder"]!["id"]!.GetValue<long>());
        // A step meant for before the due date expires when the grace ends; a later one does not.
        Assert.Equal(At("2026-03-10T18:30:00Z"), rows[0].ExpiresAt);
        Assert.Null(rows[2].ExpiresAt);
    }

    [Fact]
    public async Task A_step_becomes_an_ordinary_outbox_row_that_the_worker_renders_and_sends()
    {
        var (client, company) = await PracticeAsync(channels: true);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await TestData.ScalarAsync<int>(db.DataSource, """
            UPDATE message_templates SET subject = 'Reminder: {{ reminder.reference }}', body = 'Dear client, {{ reminder.reference }} for {{ amount }} is due on {{ reminder.dueDate }}.'
            WHERE company_id = $1 AND key = 'payment-reminder' AND channel = 'EMAIL'
            RETURNING 1
            """, company);
        var id = await CreateReminderAsync(client, customer, "2026-03-10", 0, -3, 1);

        await PassAt("2026-03-07T04:30:00Z");
        Assert.Equal(1, await worker.RunOnceAsync());

        var sent = Assert.Single(email.Sent);
        Assert.Equal("Reminder: Invoice INV-1042", sent.Subject);
        Assert.Equal("Dear client, Invoice INV-1042 for ₹11,800 is due on 2026-03-10.", sent.Body);
        var (_, view) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/reminders/{id}");
        var first = view!["steps"]![0]!;
        Assert.Equal(("QUEUED", "SENT", "EMAIL"), (first.Text("state"), first["message"].Text("status"), first["message"].Text("channel")));
        Assert.Equal(("SCHEDULED", null), (view["steps"]![1].Text("state"), view["steps"]![1]!["message"]));
    }

    [Fact]
    public async Task Resolving_stops_every_step_not_yet_sent_including_one_waiting_for_quiet_hours()
    {
        var (client, company) = await PracticeAsync(channels: true);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "quiet_hours_start = '09:00', quiet_hours_end = '12:00'");
        var id = await CreateReminderAsync(client, customer, "2026-03-20", 0, -7, -3, -1);

        await PassAt("2026-03-13T04:30:00Z");                 // 10:00 IST: queued, then deferred to 12:00 by quiet hours
        Assert.Equal(1, await worker.RunOnceAsync());
        var deferred = Assert.Single(await RowsAsync(company));
        Assert.Equal(("PENDING", At("2026-03-13T06:30:00Z")), (deferred.Status, deferred.NextAttemptAt));

        var (resolved, body) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve", new { note = "MGT-7 filed, SRN F12345678" });

        Assert.Equal(HttpStatusCode.OK, resolved.StatusCode);
        Assert.Equal(["QUEUED", "CANCELLED", "CANCELLED"], body!["steps"]!.AsArray().Select(s => s.Text("state")));
        Assert.Equal("CANCELLED", body["steps"]![0]!["message"].Text("status"));
        var cancelled = Assert.Single(await RowsAsync(company));
        Assert.Equal("CANCELLED", cancelled.Status);
        Assert.StartsWith("the reminder was resolved at 2026-03-13", cancelled.StatusReason, StringComparison.Ordinal);

        Assert.Equal(0, (await PassAt("2026-03-19T05:00:00Z")).Steps.Claimed);
        Assert.Equal(0, await worker.RunOnceAsync());
        Assert.Single(await RowsAsync(company));
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_resolve_that_deadlocks_with_another_transaction_is_done_again_and_succeeds()
    {
        var (client, company) = await PracticeAsync(channels: true);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var id = await CreateReminderAsync(client, customer, "2026-03-20", 0, -7, -1);
        await PassAt("2026-03-13T04:30:00Z");   // the first step's message, waiting for a worker
        var message = Assert.Single(await RowsAsync(company)).Id;

        // Another transaction (a worker recording a batch, a business app) holds the message and then
        // wants the reminder, which the resolve has locked meanwhile: PostgreSQL aborts one of them.
        await using var other = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var transaction = await other.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var hold = new Npgsql.NpgsqlCommand("SELECT 1 FROM communication_logs WHERE id = $1 FOR UPDATE", other, transaction) { Parameters = { new() { Value = message } } })
        {
            await hold.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var deadlocks = await TestData.ScalarAsync<long>(db.DataSource, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
        var resolving = client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve", new { note = "MGT-7 filed" });
        // Until the resolve waits for the row this transaction holds (only it can: another test's
        // backend waiting on a lock of its own must not be taken for it, or this transaction would
        // wait first and be the one aborted).
        for (var i = 0; i < 400 && !await TestData.ScalarAsync<bool>(db.DataSource, """
                 SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)))
                 """, other.ProcessID); i++)
        {
            await Task.Delay(25, TestContext.Current.CancellationToken);
        }
        await using (var want = new Npgsql.NpgsqlCommand("UPDATE reminders SET updated_at = updated_at WHERE id = $1", other, transaction) { Parameters = { new() { Value = id } } })
        {
            await want.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);   // the resolve waited first, so it is the one aborted
        }
        await transaction.CommitAsync(TestContext.Current.CancellationToken);

        var (resolved, body) = await resolving;
        Assert.Equal(HttpStatusCode.OK, resolved.StatusCode);
        Assert.Equal(("RESOLVED", "MGT-7 filed"), (body.Text("status"), body.Text("resolutionNote")));
        Assert.Equal(["QUEUED", "CANCELLED"], body!["steps"]!.AsArray().Select(s => s.Text("state")));
        Assert.Equal("CANCELLED", Assert.Single(await RowsAsync(company)).Status);
        // It did deadlock (a backend reports its statistics when idle, within ten seconds).
        for (var i = 0; i < 300 && await TestData.ScalarAsync<long>(db.DataSource, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()") == deadlocks; i++)
        {
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
        Assert.True(await TestData.ScalarAsync<long>(db.DataSource, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()") > deadlocks);
    }

    [Fact]
    public async Task Resolving_cancels_a_split_steps_second_channel_and_a_step_a_dead_worker_left_locked()
    {
        var (client, company) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var id = await CreateReminderAsync(client, customer, "2026-03-20", 0, -7, -1);
        await PassAt("2026-03-13T04:30:00Z");
        var queued = Assert.Single(await RowsAsync(company));
        // As the worker leaves a step on BOTH channels: its row took email, a WhatsApp sibling
        // carries the step's metadata (OutboxStore's split); and the row itself is still marked by
        // a worker that died mid-batch, its lease over. A live lease elsewhere is left alone.
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH sibling AS (
                INSERT INTO communication_logs (company_id, customer_id, type, channel, requested_channel, template_key, template_data, metadata, next_attempt_at, created_at)
                SELECT company_id, customer_id, type, 'WHATSAPP', 'BOTH', template_key, template_data, metadata, next_attempt_at, created_at
                  FROM communication_logs WHERE id = $1
                RETURNING 1),
            dead AS (UPDATE communication_logs SET locked_by = 'worker-7#12', locked_until = '2026-03-13T04:29:00Z' WHERE id = $1 RETURNING 1)
            SELECT count(*)::int FROM sibling, dead
            """, queued.Id);
        // A step's message a live worker is sending right now.
        var live = await Outbox.EnqueueAsync(db.DataSource, company, customer, "PAYMENT_REMINDER", "EMAIL", null, "payment-reminder", "{}", At("2026-03-13T04:00:00Z"), 3);
        await TestData.ScalarAsync<int>(db.DataSource,
            "UPDATE communication_logs SET metadata = jsonb_build_object('reminderId', $2::bigint, 'reminderStepId', 0), locked_by = 'worker-8#3', locked_until = '2026-03-13T04:35:00Z' WHERE id = $1 RETURNING 1", live, id);

        var (resolved, _) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{id}/resolve", new { note = "Paid by NEFT" });

        Assert.Equal(HttpStatusCode.OK, resolved.StatusCode);
        var rows = (await RowsAsync(company)).OrderBy(r => r.Id).ToList();
        Assert.Equal(["CANCELLED", "CANCELLED", "PENDING"], rows.Select(r => r.Status)); // the step's row, the sibling, the one under a live lease
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'CANCELLED' AND (locked_by IS NOT NULL OR locked_until IS NOT NULL)", company));
        // The one being sent keeps its lease, but expires at the resolution: if its send did not
        // go through (its worker died, or it was to be retried), it never goes out afterwards.
        Assert.Equal(At("2026-03-13T04:30:00Z").UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource, "SELECT expires_at FROM communication_logs WHERE id = $1 AND locked_by = 'worker-8#3'", live));
        time.SetUtcNow(At("2026-03-13T04:36:00Z"));
        await worker.RunOnceAsync();
        Assert.Equal("CANCELLED", (await Outbox.GetAsync(db.DataSource, live)).Status);
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task Three_schedulers_on_one_database_materialise_each_step_and_each_occurrence_exactly_once()
    {
        var settings = new Dictionary<string, string?> { ["Scheduling:BatchSize"] = "5" };
        var schedulers = new[] { new WorkerHarness(db.ConnectionString, [], time, settings), new WorkerHarness(db.ConnectionString, [], time, settings), new WorkerHarness(db.ConnectionString, [], time, settings) };
        try
        {
            var (client, company) = await PracticeAsync();
            var customers = new List<Guid>();
            for (var i = 0; i < 12; i++)
            {
                customers.Add(await TestData.CreateCustomerAsync(db.DataSource, company));
            }
            await using (var context = db.CreateDbContext())
            {
                var kolkata = TimeZoneInfo.FindSystemTimeZoneById("Asia/Kolkata");
                for (var i = 0; i < 40; i++)
                {
                    var steps = new[] { -3, -2, -1 }.Select(d => new StepDraft(d, new TimeOnly(10, 0), "payment-reminder", Channel.Preferred)).ToList();
                    var draft = new ReminderDraft(company, customers[i % customers.Count], MessageType.PaymentReminder, $"Invoice INV-{2000 + i}", new DateOnly(2026, 3, 10), 0, null, steps);
                    context.Reminders.Add(ReminderPlan.Create(draft, "Asia/Kolkata", kolkata, kolkata, time.GetUtcNow()));
                }
                await context.SaveChangesAsync(TestContext.Current.CancellationToken);
            }
            var (put, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/daily-update", new
            {
                cron = "0 9 * * *", type = "GENERAL_UPDATE", templateKey = "daily-update", audience = new { kind = "ALL_CUSTOMERS" },
            });
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);

            // Every day 1–9 March at 09:00 IST (the schedule) and 10:00 IST (steps on 7, 8, 9 March),
            // all three schedulers race, twice per instant.
            var passes = new List<SchedulerPass>();
            for (var day = 1; day <= 9; day++)
            {
                foreach (var utc in new[] { new TimeSpan(3, 30, 0), new TimeSpan(4, 30, 0) })
                {
                    time.SetUtcNow(new DateTimeOffset(2026, 3, day, 0, 0, 0, TimeSpan.Zero) + utc);
                    for (var round = 0; round < 2; round++)
                    {
                        passes.AddRange(await Task.WhenAll(schedulers.Select(s => Task.Run(() => ScheduleAsync(s)))));
                    }
                }
            }

            // Each step and occurrence was claimed by exactly one scheduler…
            Assert.Equal(120, passes.Sum(p => p.Steps.Claimed));
            Assert.Equal(9, passes.Sum(p => p.Schedules));
            // …and produced exactly one outbox row (per customer, for the schedule).
            var rows = await RowsAsync(company);
            var stepRows = rows.Where(r => r.IdempotencyKey!.StartsWith("reminder-step:", StringComparison.Ordinal)).ToList();
            Assert.Equal(120, stepRows.Count);
            Assert.Equal(120, await TestData.ScalarAsync<long>(db.DataSource,
                "SELECT count(DISTINCT s.message_id) FROM reminder_steps s JOIN reminders r ON r.id = s.reminder_id WHERE r.company_id = $1 AND s.state = 'QUEUED'", company));
            var scheduleRows = rows.Where(r => r.IdempotencyKey!.StartsWith("schedule:daily-update:", StringComparison.Ordinal)).ToList();
            Assert.Equal(9 * 12, scheduleRows.Count);
            Assert.All(scheduleRows.GroupBy(r => (r.CustomerId, r.TemplateData["schedule"].Text("date"))), g => Assert.Single(g));
            var runs = await RunsAsync(company, "daily-update");
            Assert.Equal(9, runs.Count);
            Assert.All(runs, r => Assert.Equal(("MATERIALISED", 12, null), (r.Outcome, r.MessageCount, r.Reason)));
        }
        finally
        {
            foreach (var scheduler in schedulers)
            {
                await scheduler.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_missed_step_before_the_due_date_is_not_sent_after_it_whatever_the_grace()
    {
        var (client, company) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var dueTomorrow = await CreateReminderAsync(client, customer, "2026-03-10", 7, -1);
        var sameDay = await CreateReminderAsync(client, customer, "2026-03-12", 7, -1);
        Assert.Equal(0, (await PassAt("2026-03-02T00:00:00Z")).Steps.Claimed);

        // No scheduler runs until 11 March 12:00Z (17:30 IST): 10 March has ended, 12 March has not.
        await PassAt("2026-03-11T12:00:00Z");

        Assert.Equal(("SKIPPED", "missed while no scheduler was running (its time was 2026-03-09 04:30:00Z); the due date 2026-03-10 had passed"),
            Assert.Single((await StepsAsync(dueTomorrow)).Select(s => (s.State, s.Reason))));
        var queued = Assert.Single(await StepsAsync(sameDay));
        Assert.Equal("QUEUED", queued.State);
        // Deferred past the due date's end (quiet hours, frequency), it is cancelled, not sent late.
        Assert.Equal(At("2026-03-12T18:30:00Z").UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource, "SELECT expires_at FROM communication_logs WHERE id = $1", queued.MessageId!.Value));
    }

    [Fact]
    public async Task A_step_moved_before_the_deadline_keeps_saying_so_once_it_is_queued()
    {
        var (client, company) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, timeZone: "Pacific/Honolulu");
        // Due 10 March: the IST deadline is 18:30Z; Honolulu's 10:00 that day is 20:00Z, so the step goes on the 9th.
        var id = await CreateReminderAsync(client, customer, "2026-03-10", 0, 0);

        await PassAt("2026-03-09T20:00:00Z");

        var step = Assert.Single(await StepsAsync(id));
        Assert.Equal("QUEUED", step.State);
        Assert.StartsWith("moved to 2026-03-09 10:00 in the customer's zone (Pacific/Honolulu)", step.Reason, StringComparison.Ordinal);
        Assert.NotNull(step.MessageId);
    }

    [Fact]
    public async Task A_clients_overdue_notice_whose_time_comes_before_midnight_in_india_goes_at_the_deadline_as_an_overdue_notice()
    {
        // A Sydney client (UTC+11 in March) of an Indian practice: the day after the due date at
        // 05:00 in Sydney is 23:30 IST on the due date itself, before the practice's deadline ends:
        // the filing is not overdue yet, so the notice waits for the deadline (05:30 in Sydney).
        var (client, company) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, timeZone: "Australia/Sydney");
        var (created, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
        {
            customerId = customer, type = "PAYMENT_REMINDER", reference = "Invoice INV-2001", dueDate = "2026-03-10", sendAt = "05:00",
            templateKey = "payment-reminder", steps = new[] { new { offsetDays = -1 }, new { offsetDays = 1 } },
        });
        Assert.True(created.StatusCode == HttpStatusCode.Created, body?.ToJsonString());

        await PassAt("2026-03-08T18:01:00Z");   // the day before, 05:01 in Sydney
        await PassAt("2026-03-10T18:01:00Z");   // the day after, 05:01 in Sydney; 23:31 IST on the due date
        Assert.Equal(["QUEUED", "SCHEDULED"], (await StepsAsync(body!["id"]!.GetValue<long>())).Select(s => s.State));
        await PassAt("2026-03-10T18:31:00Z");   // midnight IST has passed: overdue

        var steps = await StepsAsync(body!["id"]!.GetValue<long>());
        Assert.Equal(["QUEUED", "QUEUED"], steps.Select(s => s.State));
        Assert.StartsWith("moved to when the due date ends in the company's zone (2026-03-10 18:30:00Z): at 2026-03-11 05:00 in the customer's zone (Australia/Sydney) the filing was not yet overdue", steps[1].Reason, StringComparison.Ordinal);
        // The reminder before the deadline holds until it ends (midnight IST); the overdue notice,
        // a step after the due date, is not cut off by it.
        Assert.Equal(At("2026-03-10T18:30:00Z").UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource, "SELECT expires_at FROM communication_logs WHERE id = $1", steps[0].MessageId!.Value));
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT expires_at IS NULL FROM communication_logs WHERE id = $1", steps[1].MessageId!.Value));
    }

    [Fact]
    public async Task After_downtime_a_missed_step_is_sent_only_while_its_news_is_true_and_otherwise_skipped_with_the_reason()
    {
        var (client, company) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var withGrace = await CreateReminderAsync(client, customer, "2026-03-10", 2, -7, -1, 1, 5);
        var withoutGrace = await CreateReminderAsync(client, customer, "Invoice INV-1043", "2026-03-10", 0, -1, 1);
        var later = await CreateReminderAsync(client, customer, "2026-03-20", 0, -14, -2);
        var stale = await CreateReminderAsync(client, customer, "2026-03-09", 0, 1);
        Assert.Equal(0, (await PassAt("2026-03-02T00:00:00Z")).Steps.Claimed);

        // No scheduler runs from 2 March until 11 March 12:00Z (17:30 IST).
        var recovery = await PassAt("2026-03-11T12:00:00Z");

        Assert.Equal(new StepCounts(7, 3, 4, 0), recovery.Steps);
        var graceSteps = await StepsAsync(withGrace);
        Assert.Equal(["SKIPPED", "SKIPPED", "QUEUED", "SCHEDULED"], graceSteps.Select(s => s.State));
        Assert.Contains("a later step of this reminder is due too and only the latest is sent", graceSteps[0].Reason, StringComparison.Ordinal);
        Assert.Contains("a later step of this reminder is due too", graceSteps[1].Reason, StringComparison.Ordinal);
        Assert.Equal("sent 7.5 h late: missed while no scheduler was running (its time was 2026-03-11 04:30:00Z); still within the due date 2026-03-10 + 2 days of grace", graceSteps[2].Reason);
        // Without grace, the day-before step is stale, but the overdue notice (the day after the due
        // date, 7.5 h ago) is still true: sent within the catch-up window…
        var noGrace = await StepsAsync(withoutGrace);
        Assert.Equal(["SKIPPED", "QUEUED"], noGrace.Select(s => s.State));
        Assert.Equal("sent 7.5 h late: missed while no scheduler was running (its time was 2026-03-11 04:30:00Z); an overdue notice, still within the catch-up window (12 h)", noGrace[1].Reason);
        // …and one 31.5 h old is not.
        var tooLate = Assert.Single(await StepsAsync(stale));
        Assert.Equal(("SKIPPED", "missed while no scheduler was running (its time was 2026-03-10 04:30:00Z); the due date 2026-03-09 + 0 days of grace had passed and so had the catch-up window (12 h)"),
            (tooLate.State, tooLate.Reason));
        var beforeDue = await StepsAsync(later);
        Assert.Equal(["QUEUED", "SCHEDULED"], beforeDue.Select(s => s.State));
        Assert.StartsWith("sent 127.5 h late", beforeDue[0].Reason, StringComparison.Ordinal);
        var rows = await RowsAsync(company);
        Assert.Equal(new[] { graceSteps[2].MessageId, noGrace[1].MessageId, beforeDue[0].MessageId }.Order(), rows.Select(r => (long?)r.Id).Order());
        Assert.All(rows, r => Assert.Equal(At("2026-03-11T12:00:00Z"), r.NextAttemptAt));

        // Back to normal: a step found on time is sent even though the grace has ended.
        Assert.Equal(1, (await PassAt("2026-03-15T04:31:00Z")).Steps.Queued);
        var last = (await StepsAsync(withGrace))[3];
        Assert.Equal(("QUEUED", null), (last.State, last.Reason));
    }

    [Fact]
    public async Task A_schedule_or_step_that_fails_is_rolled_back_alone_and_the_other_practices_schedules_go_on()
    {
        var (client, company) = await PracticeAsync();
        await TestData.CreateCustomerAsync(db.DataSource, company);
        var (otherClient, other) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, other);
        await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/daily", new { cron = "0 9 * * *", type = "GENERAL_UPDATE", templateKey = "boom", audience = new { kind = "ALL_CUSTOMERS" } });
        await otherClient.SendJsonAsync(HttpMethod.Put, "/v1/schedules/daily", new { cron = "0 9 * * *", type = "GENERAL_UPDATE", templateKey = "daily", audience = new { kind = "ALL_CUSTOMERS" } });
        await CreateReminderAsync(otherClient, customer, "2026-03-10", 0, -9);   // its step fires at 10:00 IST on 1 March
        // A data error for the first practice's schedule and for the reminder step's message.
        await TestData.ScalarAsync<int>(db.DataSource, """
            CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.template_key IN ('boom', 'payment-reminder') THEN RAISE EXCEPTION 'refused by a test trigger'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER test_refuse BEFORE INSERT ON communication_logs FOR EACH ROW EXECUTE FUNCTION test_refuse();
            SELECT 1
            """);

        // 1 March 04:31Z: both schedules (09:00 IST) and the step (10:00 IST) are due.
        await Assert.ThrowsAsync<Npgsql.PostgresException>(() => PassAt("2026-03-01T04:31:00Z"));   // the steps phase failed: the pass is reported failed…

        Assert.Single(await RowsAsync(other));   // …but the other practice's schedule went out
        Assert.Empty(await RunsAsync(company, "daily"));
        Assert.Equal(At("2026-03-01T03:30:00Z").UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource,
            "SELECT next_occurrence_at FROM company_schedules WHERE company_id = $1", company));   // still due: tried again next pass

        await TestData.ScalarAsync<int>(db.DataSource, "DROP TRIGGER test_refuse ON communication_logs; SELECT 1");
        var retried = await PassAt("2026-03-01T04:35:00Z");
        Assert.Equal((1, 1), (retried.Schedules, retried.Steps.Queued));
        Assert.Equal("MATERIALISED", Assert.Single(await RunsAsync(company, "daily")).Outcome);
    }

    [Fact]
    public async Task After_downtime_a_schedule_catches_up_only_its_latest_occurrence_and_only_within_the_window()
    {
        var (client, company) = await PracticeAsync();
        await TestData.CreateCustomerAsync(db.DataSource, company);
        await TestData.CreateCustomerAsync(db.DataSource, company);
        await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/daily", new { cron = "0 9 * * *", type = "GENERAL_UPDATE", templateKey = "daily", audience = new { kind = "ALL_CUSTOMERS" } });

        // Down until 4 March 10:00Z: 09:00 IST on 1–4 March missed; the 4 March one is 6.5 h old (window 12 h).
        Assert.Equal(1, (await PassAt("2026-03-04T10:00:00Z")).Schedules);
        // Down again until 6 March 20:00Z: the latest missed occurrence is 16.5 h old.
        Assert.Equal(1, (await PassAt("2026-03-06T20:00:00Z")).Schedules);
        // On time.
        Assert.Equal(1, (await PassAt("2026-03-07T03:30:00Z")).Schedules);

        var runs = (await RunsAsync(company, "daily")).OrderBy(r => r.OccurrenceAt).ToList();
        Assert.Equal(
            [(At("2026-03-01T03:30:00Z"), "SKIPPED", 0), (At("2026-03-04T03:30:00Z"), "MATERIALISED", 2), (At("2026-03-05T03:30:00Z"), "SKIPPED", 0), (At("2026-03-07T03:30:00Z"), "MATERIALISED", 2)],
            runs.Select(r => (r.OccurrenceAt, r.Outcome, r.MessageCount)));
        Assert.Equal("missed while no scheduler was running: the occurrences from 2026-03-01 03:30:00Z until 2026-03-04 03:30:00Z are superseded by that one, the only one sent", runs[0].Reason);
        Assert.Equal("sent 6.5 h late: missed while no scheduler was running; within the catch-up window (12:00:00)", runs[1].Reason);
        Assert.Equal("missed while no scheduler was running: every occurrence from 2026-03-05 03:30:00Z to 2026-03-06 20:00:00Z is older than the catch-up window (12:00:00)", runs[2].Reason);
        Assert.Null(runs[3].Reason);
        Assert.Equal(4, (await RowsAsync(company)).Count);

        var (_, view) = await client.SendJsonAsync(HttpMethod.Get, "/v1/schedules/daily");
        Assert.Equal(4, view!["recentRuns"]!.AsArray().Count);
        Assert.Equal("2026-03-08T09:00:00+05:30", view.Text("nextOccurrenceLocal"));
    }

    [Fact]
    public async Task A_schedule_stored_with_a_burst_of_runs_on_some_date_is_paused_by_the_scheduler_with_the_reason()
    {
        var (client, company) = await PracticeAsync();
        await TestData.CreateCustomerAsync(db.DataSource, company);
        await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/daily", new { cron = "0 9 * * *", type = "GENERAL_UPDATE", templateKey = "daily", audience = new { kind = "ALL_CUSTOMERS" } });
        // Saved before the API refused such bursts, or changed behind its back: every minute of 10 o'clock on 31 March.
        await using (var burst = db.DataSource.CreateCommand("UPDATE company_schedules SET cron = '* 10 31 3 *' WHERE company_id = $1 AND key = 'daily'"))
        {
            burst.Parameters.AddWithValue(company);
            Assert.Equal(1, await burst.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }

        Assert.Equal(1, (await PassAt("2026-03-01T03:30:00Z")).Schedules);
        // 10:05 IST on 31 March, inside the burst: the schedule is paused, not due.
        Assert.Equal(0, (await PassAt("2026-03-31T04:35:00Z")).Schedules);

        var run = Assert.Single(await RunsAsync(company, "daily"));
        Assert.Equal((At("2026-03-01T03:30:00Z"), "SKIPPED", 0), (run.OccurrenceAt, run.Outcome, run.MessageCount));
        Assert.Equal("the schedule runs more often than once an hour (its minute field '*' matches more than one minute of every hour it runs in); paused until it is saved again", run.Reason);
        Assert.Empty(await RowsAsync(company));
    }

    [Fact]
    public async Task A_weekly_digest_keeps_its_local_time_across_DST_and_goes_only_to_customers_with_a_reminder_due_that_week()
    {
        var (client, company) = await PracticeAsync();
        var dueSoon = await TestData.CreateCustomerAsync(db.DataSource, company);
        var dueLater = await TestData.CreateCustomerAsync(db.DataSource, company);
        await CreateReminderAsync(client, dueSoon, "2026-03-12", 0, -1);
        await CreateReminderAsync(client, dueLater, "2026-03-30", 0, -1);
        var (put, schedule) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/monday-digest", new
        {
            cron = "0 9 * * MON", timeZone = "America/New_York", type = "COMPLIANCE_REMINDER", channel = "EMAIL", templateKey = "weekly-digest",
            templateData = new { signature = "Rao & Associates" }, audience = new { kind = "REMINDERS_DUE", withinDays = 7 },
        });
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal(At("2026-03-02T14:00:00Z"), schedule!["nextOccurrenceAt"]!.GetValue<DateTimeOffset>());   // 09:00 EST

        await PassAt("2026-03-02T14:00:00Z");   // nothing due 2–9 March
        Assert.Equal(0, await TestData.ScalarAsync<int>(db.DataSource, "SELECT message_count FROM schedule_runs WHERE company_id = $1", company));
        Assert.Equal(0, (await PassAt("2026-03-09T12:59:59Z")).Schedules);     // 08:59 EDT
        Assert.Equal(1, (await PassAt("2026-03-09T13:00:00Z")).Schedules);     // 09:00 EDT

        var digest = Assert.Single(await RowsAsync(company), r => r.IdempotencyKey!.StartsWith("schedule:", StringComparison.Ordinal));
        Assert.Equal((dueSoon, "COMPLIANCE_REMINDER", "EMAIL", "weekly-digest"), (digest.CustomerId, digest.Type, digest.Channel, digest.TemplateKey));
        Assert.Equal($"schedule:monday-digest:2026-03-09T13:00:00Z:{dueSoon}", digest.IdempotencyKey);
        Assert.Equal(("Rao & Associates", "2026-03-09", "2026-03-09T09:00:00-04:00"),
            (digest.TemplateData.Text("signature"), digest.TemplateData["schedule"].Text("date"), digest.TemplateData["schedule"].Text("occurrence")));
        var due = Assert.Single(digest.TemplateData["dueReminders"]!.AsArray());
        Assert.Equal(("Invoice INV-1042", "2026-03-12"), (due.Text("reference"), due.Text("dueDate")));
    }

    [Fact]
    public async Task A_digest_lists_first_what_is_overdue_but_still_within_its_grace_and_leaves_out_what_is_past_it()
    {
        var (client, company) = await PracticeAsync();
        var inGrace = await TestData.CreateCustomerAsync(db.DataSource, company);
        var pastGrace = await TestData.CreateCustomerAsync(db.DataSource, company);
        await CreateReminderAsync(client, inGrace, "MGT-7 FY 2025-26", "2026-03-11", 0, -1);
        await CreateReminderAsync(client, inGrace, "Invoice INV-1042", "2026-03-06", 7, -1);    // grace until the end of 13 March
        await CreateReminderAsync(client, pastGrace, "Invoice INV-1043", "2026-03-06", 2, -1);  // grace over at the end of 8 March
        var (put, body) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/monday-digest", new
        {
            cron = "0 9 * * MON", timeZone = "Asia/Kolkata", type = "COMPLIANCE_REMINDER", channel = "EMAIL", templateKey = "weekly-digest",
            audience = new { kind = "REMINDERS_DUE", withinDays = 7 },
        });
        Assert.True(put.StatusCode == HttpStatusCode.Created, body?.ToJsonString());

        await PassAt("2026-03-02T03:30:00Z");
        await PassAt("2026-03-09T03:30:00Z");   // Monday 9 March, 09:00 in Kolkata

        var digests = (await RowsAsync(company)).Where(r => r.IdempotencyKey!.StartsWith("schedule:monday-digest:2026-03-09", StringComparison.Ordinal)).ToList();
        var digest = Assert.Single(digests);
        Assert.Equal(inGrace, digest.CustomerId);
        Assert.Equal(["Invoice INV-1042 2026-03-06 overdue", "MGT-7 FY 2025-26 2026-03-11 due"],
            digest.TemplateData["dueReminders"]!.AsArray().Select(d => $"{d.Text("reference")} {d.Text("dueDate")} {(d!["overdue"]!.GetValue<bool>() ? "overdue" : "due")}"));
    }

    [Fact]
    public async Task A_weekly_digest_that_reminder_frequency_would_hold_past_the_next_one_is_cancelled_rather_than_piled_up()
    {
        var (client, company) = await PracticeAsync(channels: true);
        var monthly = await TestData.CreateCustomerAsync(db.DataSource, company);
        await Outbox.SetPreferencesAsync(db.DataSource, monthly, "reminder_frequency = 'MONTHLY'");
        var (put, body) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/monday-digest", new
        {
            cron = "0 9 * * MON", timeZone = "Asia/Kolkata", type = "COMPLIANCE_REMINDER", channel = "EMAIL", templateKey = "weekly-digest",
            audience = new { kind = "ALL_CUSTOMERS" },
        });
        Assert.True(put.StatusCode == HttpStatusCode.Created, body?.ToJsonString());

        await PassAt("2026-03-02T03:30:00Z");   // Monday 2 March, 09:00 in Kolkata
        Assert.Equal(1, await worker.RunOnceAsync());
        await PassAt("2026-03-09T03:30:00Z");   // the next Monday: the month's reminder has gone
        await worker.RunOnceAsync();

        var digests = await RowsAsync(company);
        Assert.Equal([At("2026-03-09T03:30:00Z"), At("2026-03-16T03:30:00Z")], digests.Select(d => d.ExpiresAt!.Value));   // each superseded by the next
        Assert.Equal(("SENT", "CANCELLED"), (digests[0].Status, digests[1].Status));
        Assert.StartsWith("expires at 2026-03-16 03:30:00Z, before it could be sent: reminder frequency MONTHLY", digests[1].StatusReason, StringComparison.Ordinal);
        Assert.Single(email.Sent);
    }

    [Fact]
    public async Task A_digest_not_yet_sent_stops_listing_a_reminder_once_it_is_resolved_and_is_cancelled_when_it_lists_nothing()
    {
        var (client, company) = await PracticeAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var invoice = await CreateReminderAsync(client, customer, "Invoice INV-1042", "2026-03-12", 0, -1);
        var filing = await CreateReminderAsync(client, customer, "MGT-7 FY 2025-26", "2026-03-13", 0, -1);
        foreach (var (key, kind) in new[] { ("due-digest", "REMINDERS_DUE"), ("newsletter", "ALL_CUSTOMERS") })
        {
            var (put, body) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/schedules/{key}", new
            {
                cron = "0 9 * * MON", timeZone = "Asia/Kolkata", type = "COMPLIANCE_REMINDER", channel = "EMAIL", templateKey = "weekly-digest",
                audience = new { kind, withinDays = 7 },
            });
            Assert.True(put.StatusCode == HttpStatusCode.Created, body?.ToJsonString());
        }
        await PassAt("2026-03-09T03:30:00Z");   // Monday 09:00 in Kolkata: both digests written, not yet sent (no worker here)
        List<OutboxRow> Digests(List<OutboxRow> rows) => [.. rows.Where(r => r.IdempotencyKey!.StartsWith("schedule:", StringComparison.Ordinal)).OrderBy(r => r.IdempotencyKey)];
        string[] Listed(OutboxRow row) => [.. row.TemplateData["dueReminders"]!.AsArray().Select(d => d.Text("reference"))];
        Assert.All(Digests(await RowsAsync(company)), d => Assert.Equal(["Invoice INV-1042", "MGT-7 FY 2025-26"], Listed(d)));

        var (resolved, _) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{filing}/resolve", new { note = "MGT-7 filed, SRN F12345678" });
        Assert.Equal(HttpStatusCode.OK, resolved.StatusCode);
        Assert.All(Digests(await RowsAsync(company)), d => Assert.Equal("PENDING: Invoice INV-1042", $"{d.Status}: {string.Join(", ", Listed(d))}"));

        await client.SendJsonAsync(HttpMethod.Post, $"/v1/reminders/{invoice}/resolve", new { note = "Paid by NEFT" });
        var digests = Digests(await RowsAsync(company));
        Assert.Equal(["schedule:due-digest", "schedule:newsletter"], digests.Select(d => d.IdempotencyKey![..d.IdempotencyKey!.IndexOf(':', 9)]));
        Assert.Equal("CANCELLED", digests[0].Status);
        Assert.EndsWith("; the digest listed nothing else", digests[0].StatusReason, StringComparison.Ordinal);
        Assert.Equal(("PENDING", 0), (digests[1].Status, Listed(digests[1]).Length));   // sent to every customer, with an empty list
    }

    private async Task<(HttpClient Client, Guid Company)> PracticeAsync(bool channels = false)
    {
        var (company, client) = await WorkflowApi.CompanyAsync(api, db);
        if (channels)
        {
            await TestData.ScalarAsync<int>(db.DataSource,
                "UPDATE company_settings SET email_provider = 'SMTP', email_enabled = true, from_email = 'accounts@practice.example' WHERE company_id = $1 RETURNING 1", company);
        }
        return (client, company);
    }

    private static Task<long> CreateReminderAsync(HttpClient client, Guid customer, string dueDate, int graceDays, params int[] offsets) =>
        CreateReminderAsync(client, customer, "Invoice INV-1042", dueDate, graceDays, offsets);

    private static async Task<long> CreateReminderAsync(HttpClient client, Guid customer, string reference, string dueDate, int graceDays, params int[] offsets)
    {
        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/reminders", new
        {
            customerId = customer,
            type = "PAYMENT_REMINDER",
            reference,
            dueDate,
            graceDays,
            templateKey = "payment-reminder",
            templateData = new { amount = "₹11,800" },
            steps = offsets.Select(o => new { offsetDays = o }),
        });
        Assert.True(response.StatusCode == HttpStatusCode.Created, body?.ToJsonString());
        return body!["id"]!.GetValue<long>();
    }

    private Task<SchedulerPass> PassAt(string utc)
    {
        time.SetUtcNow(At(utc));
        return ScheduleAsync(worker);
    }

    private static async Task<SchedulerPass> ScheduleAsync(WorkerHarness harness)
    {
        await using var scope = harness.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<WorkflowScheduler>().RunOnceAsync(TestContext.Current.CancellationToken);
    }

    private sealed record StepRow(long Id, string State, string? Reason, long? MessageId);

    private async Task<List<StepRow>> StepsAsync(long reminderId)
    {
        var steps = new List<StepRow>();
        await using var command = db.DataSource.CreateCommand("SELECT id, state, state_reason, message_id FROM reminder_steps WHERE reminder_id = $1 ORDER BY position");
        command.Parameters.AddWithValue(reminderId);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            steps.Add(new StepRow(reader.GetInt64(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetInt64(3)));
        }
        return steps;
    }

    private sealed record OutboxRow(
        long Id, Guid CustomerId, string Type, string Channel, string TemplateKey, string? IdempotencyKey, DateTimeOffset NextAttemptAt, DateTimeOffset? ExpiresAt,
        string Status, string? StatusReason, JsonNode TemplateData);

    private async Task<List<OutboxRow>> RowsAsync(Guid company)
    {
        var rows = new List<OutboxRow>();
        await using var command = db.DataSource.CreateCommand("""
            SELECT id, customer_id, type, channel, template_key, idempotency_key, next_attempt_at, expires_at, status, status_reason, template_data::text
              FROM communication_logs WHERE company_id = $1 ORDER BY next_attempt_at, id
            """);
        command.Parameters.AddWithValue(company);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            rows.Add(new OutboxRow(
                reader.GetInt64(0), reader.GetGuid(1), reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5),
                reader.GetFieldValue<DateTimeOffset>(6), reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7), reader.GetString(8),
                reader.IsDBNull(9) ? null : reader.GetString(9), JsonNode.Parse(reader.GetString(10))!));
        }
        return rows;
    }

    private sealed record RunRow(DateTimeOffset OccurrenceAt, string Outcome, string? Reason, int MessageCount);

    private async Task<List<RunRow>> RunsAsync(Guid company, string key)
    {
        var runs = new List<RunRow>();
        await using var command = db.DataSource.CreateCommand("SELECT occurrence_at, outcome, reason, message_count FROM schedule_runs WHERE company_id = $1 AND schedule_key = $2 ORDER BY occurrence_at");
        command.Parameters.AddWithValue(company);
        command.Parameters.AddWithValue(key);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            runs.Add(new RunRow(reader.GetFieldValue<DateTimeOffset>(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetInt32(3)));
        }
        return runs;
    }

    private static DateTimeOffset At(string utc) => DateTimeOffset.Parse(utc, System.Globalization.CultureInfo.InvariantCulture);
}
