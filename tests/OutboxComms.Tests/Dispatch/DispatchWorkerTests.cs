using OutboxComms.Core.Webhooks;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

/// <summary>Whole workers: many at once, crashes, wake-ups, failing providers and bad rows.</summary>
public sealed class DispatchWorkerTests(PostgresServer server) : IAsyncLifetime
{
    // A database per test: workers claim every due row, so tests must not see each other's.
    private readonly DatabaseFixture db = new(server);

    public ValueTask InitializeAsync() => db.InitializeAsync();

    public ValueTask DisposeAsync() => db.DisposeAsync();

    private async Task<(Guid Company, Guid Customer)> CustomerAsync()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        return (company, await TestData.CreateCustomerAsync(db.DataSource, company));
    }

    /// <summary>An email provider that is down (SMTP 421), and a clock for its worker.</summary>
    private static (CountingProvider Email, FakeTimeProvider Time) FailingEmail()
    {
        var email = WorkerHarness.Email();
        email.Behaviour = _ => SendResult.Transient("SMTP 421 service not available");
        return (email, new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1)));
    }

    /// <summary>A worker whose circuit opens after two calls with half of them failed, one send at a time.</summary>
    private WorkerHarness BreakingWorker(CountingProvider email, FakeTimeProvider time, params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Dispatch:MaxConcurrentSends"] = "1",
            ["Dispatch:BreakerMinimumThroughput"] = "2",
            ["Dispatch:BreakerFailureRatio"] = "0.5",
        };
        foreach (var (key, value) in more)
        {
            settings[key] = value;
        }
        return new WorkerHarness(db.ConnectionString, [email], time, settings);
    }

    private async Task EnqueueManyAsync(Guid company, Guid customer, int count)
    {
        await using var insert = db.DataSource.CreateCommand(
            "INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content) SELECT $1, $2, 'GENERAL_UPDATE', 'EMAIL', 'Update', 'Update ' || g FROM generate_series(1, $3) g");
        insert.Parameters.AddWithValue(company);
        insert.Parameters.AddWithValue(customer);
        insert.Parameters.AddWithValue(count);
        await insert.ExecuteNonQueryAsync();
    }

    private async Task<long> CountAsync(Guid company, string status) =>
        await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = $2", company, status);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < timeout, $"timed out after {timeout} waiting for {what}");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Three_workers_of_three_concurrent_batches_each_racing_over_5000_rows_send_every_row_exactly_once()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var settings = new Dictionary<string, string?> { ["Dispatch:BatchSize"] = "200", ["Dispatch:ConcurrentBatches"] = "3" };
        await using var first = new WorkerHarness(db.ConnectionString, [email], settings: settings);
        await using var second = new WorkerHarness(db.ConnectionString, [email], settings: settings);
        await using var third = new WorkerHarness(db.ConnectionString, [email], settings: settings);
        await EnqueueManyAsync(company, customer, 5000);

        await Task.WhenAll(first.StartAsync(), second.StartAsync(), third.StartAsync());
        await WaitUntilAsync(async () => await CountAsync(company, "SENT") == 5000, TimeSpan.FromSeconds(90), "5000 SENT rows");

        Assert.Equal(5000, email.Calls);
        Assert.Equal(5000, email.Sent.Select(m => m.MessageId).Distinct().Count());
        Assert.Equal(5000, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_attempts a JOIN communication_logs m ON m.id = a.message_id WHERE m.company_id = $1 AND a.attempt_no = 1", company));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND locked_by IS NOT NULL", company));
        var workers = await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(DISTINCT locked_by) FROM communication_logs WHERE company_id = $1", company);
        Assert.Equal(0, workers); // leases released on completion
    }

    [Fact]
    public async Task Rows_leased_by_a_crashed_worker_are_reclaimed_after_the_lease_and_sent_once()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        await using var survivor = new WorkerHarness(db.ConnectionString, [email], time);
        await EnqueueManyAsync(company, customer, 20);
        var store = survivor.Services.GetRequiredService<OutboxStore>();

        // The crashed worker claimed everything (two-minute lease), then died before recording anything.
        var crashed = await store.ClaimAsync("crashed-worker", 100, time.GetUtcNow(), TimeSpan.FromMinutes(2), CancellationToken.None);
        Assert.Equal(20, crashed.Count);

        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, await survivor.RunOnceAsync());        // still leased
        time.Advance(TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1));
        Assert.Equal(20, await survivor.RunOnceAsync());       // lease expired: reclaimed

        Assert.Equal(20, await CountAsync(company, "SENT"));
        Assert.Equal(20, email.Calls);

        // If the crashed worker comes back and tries to record a result, its stale lease does nothing.
        await store.CompleteAsync("crashed-worker", [new Completion(crashed[0].Id, company, DeliveryStatus.Failed, Channel.Email) { ErrorMessage = "stale" }], time.GetUtcNow(), CancellationToken.None);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, crashed[0].Id)).Status);
    }

    [Fact]
    public async Task A_batch_whose_lease_ran_out_cannot_record_or_split_a_row_another_batch_of_the_same_worker_took()
    {
        var (company, customer) = await CustomerAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], time);
        var store = worker.Services.GetRequiredService<OutboxStore>();
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, channel: "BOTH", notBefore: time.GetUtcNow().AddMinutes(-1));

        // Two batches of one worker: the first one's lease runs out while it is still sending, the second takes the row.
        var slow = await store.ClaimAsync($"{worker.WorkerId}#1", 10, time.GetUtcNow(), TimeSpan.FromMinutes(2), CancellationToken.None);
        time.Advance(TimeSpan.FromMinutes(3));
        var fresh = await store.ClaimAsync($"{worker.WorkerId}#2", 10, time.GetUtcNow(), TimeSpan.FromMinutes(2), CancellationToken.None);
        Assert.Equal([id], slow.Select(m => m.Id));
        Assert.Equal([id], fresh.Select(m => m.Id));

        var sent = new Completion(id, company, DeliveryStatus.Sent, Channel.Email) { NextAttemptAt = time.GetUtcNow(), SentAt = time.GetUtcNow(), SplitInto = [Channel.WhatsApp] };
        await store.CompleteAsync($"{worker.WorkerId}#1", [sent with { ProviderMessageId = "late" }], time.GetUtcNow(), CancellationToken.None);

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("PENDING", $"{worker.WorkerId}#2"), (row.Status, row.LockedBy));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));

        // The batch that holds the lease records its outcome and splits BOTH once.
        await store.CompleteAsync($"{worker.WorkerId}#2", [sent with { ProviderMessageId = "current" }], time.GetUtcNow(), CancellationToken.None);
        row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", "current"), (row.Status, row.ProviderMessageId));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND channel = 'WHATSAPP'", company));
    }

    [Fact]
    public async Task Outcomes_written_again_after_an_unacknowledged_commit_record_each_attempt_once()
    {
        var (company, customer) = await CustomerAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], time);
        var store = worker.Services.GetRequiredService<OutboxStore>();
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));
        var lease = $"{worker.WorkerId}#1";
        Assert.Equal([id], (await store.ClaimAsync(lease, 10, time.GetUtcNow(), TimeSpan.FromMinutes(2), CancellationToken.None)).Select(m => m.Id));

        var at = time.GetUtcNow();
        var sent = new Completion(id, company, DeliveryStatus.Sent, Channel.Email)
        {
            NextAttemptAt = at, SentAt = at, AttemptCount = 1, ProviderMessageId = "p-1", Cost = 0.05m, CostCurrency = "INR",
            Attempt = new AttemptRecord(company, 1, at, Channel.Email, "smtp", AttemptOutcome.Sent, null, 12) { Cost = 0.05m, CostCurrency = "INR" },
        };
        // The commit lands, its acknowledgement is lost, and the worker writes the same outcomes again.
        await store.CompleteAsync(lease, [sent], time.GetUtcNow(), CancellationToken.None);
        await store.CompleteAsync(lease, [sent], time.GetUtcNow(), CancellationToken.None, mayHaveLanded: true);

        Assert.Equal("1 SENT 0.050000", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(attempt_no || ' ' || outcome || ' ' || cost, ', ') FROM communication_attempts WHERE message_id = $1", id));
        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", 0.05m), (row.Status, row.Cost));

        // A later attempt of the same number (another worker's, after a lost lease) is a provider call of its own, and recorded.
        await store.CompleteAsync(lease, [sent with { Attempt = sent.Attempt! with { AttemptedAt = at.AddSeconds(1) } }], time.GetUtcNow(), CancellationToken.None, mayHaveLanded: true);
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_attempts WHERE message_id = $1", id));
    }

    [Fact]
    public async Task A_worker_whose_outcome_commit_lands_unacknowledged_writes_it_again_without_a_second_attempt()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        using var network = new LostCommitProxy(db.ConnectionString);
        await using var worker = new WorkerHarness(network.Through(db.ConnectionString), [email]);
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        // The batch's write (outcome, attempt) commits on the server; its acknowledgement is lost on the way back.
        network.LoseCommitAfter("INSERT INTO communication_attempts");

        Assert.Equal(1, await worker.RunOnceAsync());

        Assert.Equal(1, network.Lost);
        Assert.True(network.Sightings >= 2, $"the write was sent {network.Sightings} time(s): it was never retried");
        Assert.Equal(1, email.Calls);
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, id)).Status);
        Assert.Equal("1 SENT", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(attempt_no || ' ' || outcome, ', ') FROM communication_attempts WHERE message_id = $1", id));
    }

    /// <summary>
    /// A provider that takes 15 s per message, one send at a time, a one-minute lease and a 20 s send timeout:
    /// a send may start until 60 - 20 - 4 (shutdown grace) = 36 s after the claim, so 3 of 5 go out (at 0, 15 and 30 s).
    /// </summary>
    private (FakeTimeProvider Time, CountingProvider Email, WorkerHarness Worker) SlowProvider()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        var email = WorkerHarness.Email();
        email.Behaviour = m =>
        {
            time.Advance(TimeSpan.FromSeconds(15));
            return SendResult.Sent($"slow-{m.MessageId}");
        };
        var settings = new Dictionary<string, string?> { ["Dispatch:LeaseDuration"] = "00:01:00", ["Dispatch:SendTimeout"] = "00:00:20", ["Dispatch:MaxConcurrentSends"] = "1" };
        return (time, email, new WorkerHarness(db.ConnectionString, [email], time, settings));
    }

    [Fact]
    public async Task A_batch_gives_back_unsent_the_rows_whose_send_could_not_finish_within_its_lease()
    {
        var (company, customer) = await CustomerAsync();
        var (time, email, worker) = SlowProvider();
        await using var _ = worker;
        await EnqueueManyAsync(company, customer, 5);

        Assert.Equal(5, await worker.RunOnceAsync());
        Assert.Equal(3, email.Calls);
        Assert.Equal(3, await CountAsync(company, "SENT"));
        // The other two are due again at once, unleased, with no attempt spent.
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND locked_by IS NULL AND attempt_count = 0 AND next_attempt_at <= $2",
            company, time.GetUtcNow()));

        // The next batch, under a fresh lease, sends them: every message exactly once.
        Assert.Equal(2, await worker.RunOnceAsync());
        Assert.Equal(5, email.Calls);
        Assert.Equal(5, email.Sent.Select(m => m.MessageId).Distinct().Count());
        Assert.Equal(5, await CountAsync(company, "SENT"));
    }

    [Fact]
    public async Task A_wall_clock_set_back_while_a_batch_runs_does_not_move_its_last_start()
    {
        var (company, customer) = await CustomerAsync();
        var time = new SteppableClock(DateTimeOffset.UtcNow.AddMinutes(1));
        var email = WorkerHarness.Email();
        // The first send takes 45 s (past the last start, 36 s after the claim), and meanwhile NTP
        // sets the host's clock back a minute: by the wall clock the batch is 15 s before its claim.
        email.Behaviour = m =>
        {
            time.Advance(TimeSpan.FromSeconds(45));
            time.SetBack(TimeSpan.FromSeconds(60));
            return SendResult.Sent($"slow-{m.MessageId}");
        };
        var settings = new Dictionary<string, string?>
        {
            ["Dispatch:LeaseDuration"] = "00:01:00", ["Dispatch:SendTimeout"] = "00:00:20", ["Dispatch:MaxConcurrentSends"] = "1", ["Dispatch:MaxClockSkew"] = "00:00:00",
        };
        await using var worker = new WorkerHarness(db.ConnectionString, [email], time, settings);
        await EnqueueManyAsync(company, customer, 2);

        Assert.Equal(2, await worker.RunOnceAsync());

        // The lease it wrote ends by the other workers' clocks: the second row is given back unsent.
        Assert.Equal(1, email.Calls);
        Assert.Equal(1, await CountAsync(company, "SENT"));
    }

    [Fact]
    public async Task A_send_whose_reads_before_the_call_ran_past_the_batchs_last_start_is_given_back_unsent()
    {
        var (company, customer) = await CustomerAsync();
        var (time, email, worker) = SlowProvider();
        await using var _ = worker;
        await EnqueueManyAsync(company, customer, 2);
        await using var locker = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var hold = await locker.BeginTransactionAsync(TestContext.Current.CancellationToken);
        // The first send takes 15 s and then the customers table is locked: the second send, 15 s
        // after the claim, reads its recipient again and waits there.
        var first = true;
        email.Behaviour = m =>
        {
            time.Advance(TimeSpan.FromSeconds(15));
            if (first)
            {
                first = false;
                using var lockTable = new NpgsqlCommand("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE", locker, hold);
                lockTable.ExecuteNonQuery();
            }
            return SendResult.Sent($"slow-{m.MessageId}");
        };

        var running = worker.RunOnceAsync();
        await WaitUntilAsync(async () => await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'customers'::regclass") > 0, TimeSpan.FromSeconds(20), "the re-read to wait for the lock");
        time.Advance(TimeSpan.FromSeconds(30));   // 45 s after the claim: past the last start (36 s)
        await hold.CommitAsync(TestContext.Current.CancellationToken);

        Assert.Equal(2, await running);
        Assert.Equal(1, email.Calls);
        Assert.Equal(1, await CountAsync(company, "SENT"));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND locked_by IS NULL AND attempt_count = 0 AND retry_count = 0", company));
    }

    [Fact]
    public async Task A_batch_whose_recipients_cannot_be_read_is_given_back_at_once_not_held_until_its_lease_ends()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString + ";Command Timeout=1", [email]);
        await EnqueueManyAsync(company, customer, 3);
        await using var locker = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var hold = await locker.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var lockTable = new NpgsqlCommand("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE", locker, hold))
        {
            await lockTable.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await Assert.ThrowsAnyAsync<NpgsqlException>(() => worker.RunOnceAsync());

        Assert.Equal(0, email.Calls);
        Assert.Equal(3, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND locked_by IS NULL AND next_attempt_at <= now() AND retry_count = 0", company));
        await hold.RollbackAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Sends_with_files_take_turns_within_the_processs_attachment_budget_and_sends_without_do_not_wait()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var inFlight = 0;
        var most = 0;
        // Without files: each send waits (10 s at most) until the other has started too, so a busy
        // host that starts the second late cannot make them look serial; serial sends time out.
        using var bothStarted = new CountdownEvent(2);
        email.Behaviour = m =>
        {
            InterlockedMax(ref most, Interlocked.Increment(ref inFlight));
            bothStarted.Signal();
            bothStarted.Wait(TimeSpan.FromSeconds(10));
            Interlocked.Decrement(ref inFlight);
            return SendResult.Sent($"mem-{m.MessageId}");
        };
        // 1 MB for the process, and files of 600 KB (their size in the table; the producer wrote no size_bytes): one at a time.
        await using var worker = new WorkerHarness(db.ConnectionString, [email], settings: new() { ["Dispatch:AttachmentMemoryMegabytes"] = "1", ["Dispatch:MaxConcurrentSends"] = "2" });
        await EnqueueManyAsync(company, customer, 2);

        await worker.RunOnceAsync();
        var withoutFiles = most;
        most = 0;
        email.Behaviour = m =>
        {
            InterlockedMax(ref most, Interlocked.Increment(ref inFlight));
            Thread.Sleep(300);
            Interlocked.Decrement(ref inFlight);
            return SendResult.Sent($"mem-{m.MessageId}");
        };
        await EnqueueManyAsync(company, customer, 2);
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH a AS (INSERT INTO communication_attachments (message_id, file_name, content_type, content)
                       SELECT id, 'statement.pdf', 'application/pdf', convert_to(repeat('x', 600 * 1024), 'UTF8') FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' RETURNING 1)
            SELECT count(*)::int FROM a
            """, company);
        await worker.RunOnceAsync();

        Assert.Equal((2, 1), (withoutFiles, most));
        Assert.Equal(4, await CountAsync(company, "SENT"));
        Assert.Equal(2, email.Sent.Count(m => m.Attachments.Count == 1));

        static void InterlockedMax(ref int target, int value)
        {
            for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
            {
                if (Interlocked.CompareExchange(ref target, value, seen) == seen)
                {
                    return;
                }
            }
        }
    }

    [Fact]
    public async Task A_send_waiting_for_attachment_memory_past_its_batchs_last_start_is_given_back_and_the_batch_is_recorded()
    {
        var (company, customer) = await CustomerAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email], time, new() { ["Dispatch:AttachmentMemoryMegabytes"] = "1", ["Dispatch:MaxConcurrentSends"] = "2" });
        await EnqueueManyAsync(company, customer, 2);
        var withFile = await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_attachments (message_id, file_name, content_type, content)
            SELECT min(id), 'statement.pdf', 'application/pdf', '\x25504446' FROM communication_logs WHERE company_id = $1 RETURNING message_id
            """, company);
        // Another batch of this process holds the whole budget.
        var held = await worker.Services.GetRequiredService<AttachmentMemory>().ReserveAsync(1024 * 1024, TestContext.Current.CancellationToken);
        try
        {
            var running = worker.RunOnceAsync();
            await WaitUntilAsync(() => Task.FromResult(email.Calls == 1), TimeSpan.FromSeconds(20), "the message without a file to be sent");
            time.Advance(TimeSpan.FromMinutes(2));   // past the batch's last start (lease 2 min − send timeout − grace)

            Assert.Equal(2, await running.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken));
        }
        finally
        {
            held.Dispose();
        }

        Assert.Equal(1, await CountAsync(company, "SENT"));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE id = $1 AND status = 'PENDING' AND locked_by IS NULL AND retry_count = 0 AND attempt_count = 0", withFile));
    }

    [Fact]
    public async Task A_send_starting_seconds_after_its_batch_was_claimed_obeys_an_unsubscribe_made_meanwhile()
    {
        var (company, customer) = await CustomerAsync();
        var (time, email, worker) = SlowProvider();
        await using var _ = worker;
        await EnqueueManyAsync(company, customer, 3);
        // The client clicks the unsubscribe link while the batch's first general update is being sent.
        var unsubscribed = false;
        email.Behaviour = m =>
        {
            time.Advance(TimeSpan.FromSeconds(15));
            if (!unsubscribed)
            {
                unsubscribed = true;
                Outbox.SetPreferencesAsync(db.DataSource, customer, "general_updates_opt_out = true").GetAwaiter().GetResult();
            }
            return SendResult.Sent($"slow-{m.MessageId}");
        };

        Assert.Equal(3, await worker.RunOnceAsync());

        // The batch read the customer at its claim (subscribed); the later sends read them again.
        Assert.Equal(1, email.Calls);
        Assert.Equal((1, 2), (await CountAsync(company, "SENT"), await CountAsync(company, "SUPPRESSED")));
        Assert.Equal("customer unsubscribed from general updates", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT DISTINCT status_reason FROM communication_logs WHERE company_id = $1 AND status = 'SUPPRESSED'", company));
    }

    [Fact]
    public async Task Rows_a_batch_gives_back_unsent_are_given_back_even_when_recording_its_outcomes_gives_up()
    {
        var (company, customer) = await CustomerAsync();
        var (time, email, worker) = SlowProvider();
        await using var _ = worker;
        await EnqueueManyAsync(company, customer, 5);
        // The database keeps refusing the outcomes (not their values: a fault no retry cures), for this company's rows only.
        var function = $"refuse_{company:N}";
        await TestData.ScalarAsync<int>(db.DataSource, $"""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'outcomes cannot be recorded now'; END $$;
            CREATE TRIGGER {function} BEFORE UPDATE ON communication_logs FOR EACH ROW
              WHEN (NEW.company_id = '{company}' AND NEW.status = 'SENT') EXECUTE FUNCTION {function}();
            SELECT 1
            """);
        try
        {
            await Assert.ThrowsAsync<PostgresException>(() => worker.RunOnceAsync());
        }
        finally
        {
            await TestData.ScalarAsync<int>(db.DataSource, $"DROP TRIGGER {function} ON communication_logs; DROP FUNCTION {function}(); SELECT 1");
        }

        // Three were sent and their outcomes lost (they come back when their lease ends); the two
        // never sent are due again at once, unleased, not held for the lease.
        Assert.Equal(3, email.Calls);
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND locked_by IS NULL AND next_attempt_at <= $2",
            company, time.GetUtcNow()));
    }

    [Fact]
    public async Task A_message_cancelled_once_its_lease_ran_out_stays_cancelled_when_the_late_batch_records()
    {
        var (company, customer) = await CustomerAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], time);
        var store = worker.Services.GetRequiredService<OutboxStore>();
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, channel: "BOTH", notBefore: time.GetUtcNow().AddMinutes(-1));
        var late = await store.ClaimAsync($"{worker.WorkerId}#1", 10, time.GetUtcNow(), TimeSpan.FromMinutes(2), CancellationToken.None);
        Assert.Equal([id], late.Select(m => m.Id));

        // The lease runs out; the practice cancels the message as the API does (allowed once no lease holds it, and it clears the lease).
        time.Advance(TimeSpan.FromMinutes(3));
        await using (var cancel = db.DataSource.CreateCommand(
            "UPDATE communication_logs SET status = 'CANCELLED', status_reason = 'cancelled by test', locked_by = NULL, locked_until = NULL WHERE id = $1 AND (locked_until IS NULL OR locked_until <= $2)"))
        {
            cancel.Parameters.AddWithValue(id);
            cancel.Parameters.AddWithValue(time.GetUtcNow());
            Assert.Equal(1, await cancel.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }

        var sent = new Completion(id, company, DeliveryStatus.Sent, Channel.Email) { NextAttemptAt = time.GetUtcNow(), SentAt = time.GetUtcNow(), ProviderMessageId = "late", SplitInto = [Channel.WhatsApp] };
        await store.CompleteAsync($"{worker.WorkerId}#1", [sent], time.GetUtcNow(), CancellationToken.None);

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("CANCELLED", (string?)null), (row.Status, row.ProviderMessageId));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company)); // no WHATSAPP sibling
    }

    [Fact]
    public async Task Twilio_and_messagebird_sms_are_given_our_status_callback_url_and_other_providers_none()
    {
        var (company, _) = await CustomerAsync();
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543210");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "sms_opt_in = true, whatsapp_opt_in = true");
        var twilio = WorkerHarness.Sms();
        var whatsApp = WorkerHarness.WhatsApp();
        var messageBird = new CountingProvider("MESSAGEBIRD", Channel.Sms);
        // Behind a path prefix, written without its final slash.
        var settings = new Dictionary<string, string?> { ["PublicBaseUrl"] = "https://practice.example/comms" };
        await using (var worker = new WorkerHarness(db.ConnectionString, [twilio, whatsApp], settings: settings))
        {
            await Outbox.EnqueueAsync(db.DataSource, company, customer, channel: "SMS");
            await Outbox.EnqueueAsync(db.DataSource, company, customer, channel: "WHATSAPP");
            await worker.RunOnceAsync();
        }
        await using (var worker = new WorkerHarness(db.ConnectionString, [messageBird], settings: settings))
        {
            await TestData.ScalarAsync<int>(db.DataSource, "UPDATE company_settings SET sms_provider = 'MESSAGEBIRD' WHERE company_id = $1 RETURNING 1", company);
            await Outbox.EnqueueAsync(db.DataSource, company, customer, channel: "SMS");
            await worker.RunOnceAsync();
        }

        Assert.Equal($"https://practice.example/comms/webhooks/twilio/{company}", Assert.Single(twilio.Accounts).StatusCallbackUrl?.AbsoluteUri);
        Assert.Equal($"https://practice.example/comms/webhooks/messagebird-sms/{company}", Assert.Single(messageBird.Accounts).StatusCallbackUrl?.AbsoluteUri);
        Assert.Null(Assert.Single(whatsApp.Accounts).StatusCallbackUrl); // the Cloud API's webhook is set in Meta's dashboard
    }

    [Fact]
    public async Task An_idle_worker_sends_a_new_message_via_NOTIFY_long_before_its_poll_interval()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email], settings: new() { ["Dispatch:PollInterval"] = "00:01:00" });
        await worker.StartAsync();
        await Task.Delay(500, TestContext.Current.CancellationToken); // let the loop finish its first, empty claim and go to sleep

        var clock = Stopwatch.StartNew();
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await WaitUntilAsync(async () => (await Outbox.GetAsync(db.DataSource, id)).Status == "SENT", TimeSpan.FromSeconds(10), "the message to be SENT");

        // The poll would take a minute; only the notification explains a send within seconds.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task One_companys_open_circuit_defers_its_messages_without_delaying_another_company()
    {
        var (failing, failingCustomer) = await CustomerAsync();
        var (healthy, healthyCustomer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        email.Behaviour = m => m.CompanyId == failing ? SendResult.Transient("SMTP 421 service not available") : SendResult.Sent($"ok-{m.MessageId}");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        await using var worker = new WorkerHarness(db.ConnectionString, [email], time, new()
        {
            ["Dispatch:MaxConcurrentSends"] = "1",
            ["Dispatch:BreakerMinimumThroughput"] = "4",
            ["Dispatch:BreakerFailureRatio"] = "0.5",
        });
        for (var i = 0; i < 10; i++)
        {
            await Outbox.EnqueueAsync(db.DataSource, failing, failingCustomer);
            await Outbox.EnqueueAsync(db.DataSource, healthy, healthyCustomer);
        }

        await worker.RunOnceAsync();

        Assert.Equal(10, await CountAsync(healthy, "SENT"));
        Assert.Equal(10, await CountAsync(failing, "PENDING"));
        var failingCalls = email.Sent.Count(m => m.CompanyId == failing);
        Assert.InRange(failingCalls, 4, 5);
        var deferred = await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status_reason LIKE 'provider SMTP is failing for this company (circuit open)%' AND attempt_count = 0 AND retry_count = 0 AND outage_attempts = 1", failing);
        Assert.Equal(10 - failingCalls, deferred);
        var told = worker.Logs.GetSnapshot().Where(r => r.Category == typeof(ProviderCircuitBreakers).FullName).Select(r => (r.Level, r.Message)).ToList();
        Assert.Equal([(LogLevel.Warning, $"Provider SMTP of company {failing} is failing: circuit open for 00:00:30, its messages deferred meanwhile; last error: SMTP 421 service not available")], told);

        // Once the break is over, the first send that goes through closes the circuit, and the operator hears of it.
        email.Behaviour = m => SendResult.Sent($"ok-{m.MessageId}");
        time.Advance(TimeSpan.FromSeconds(31));
        await worker.RunOnceAsync();

        Assert.Equal(10, await CountAsync(failing, "SENT"));
        Assert.Equal((LogLevel.Information, $"Provider SMTP of company {failing} is answering again: circuit closed"),
            worker.Logs.GetSnapshot().Where(r => r.Category == typeof(ProviderCircuitBreakers).FullName).Select(r => (r.Level, r.Message)).Last());
    }

    [Fact]
    public async Task Behind_an_open_circuit_a_row_that_expires_before_the_break_ends_is_tried_once_more_not_cancelled()
    {
        var (failing, customer) = await CustomerAsync();
        var (email, time) = FailingEmail();
        await using var worker = BreakingWorker(email, time);
        for (var i = 0; i < 6; i++)
        {
            await Outbox.EnqueueAsync(db.DataSource, failing, customer);
        }
        // Each expires in 20 s, before the 30 s break ends: waiting for the break could only end in expiry.
        var expiresAt = time.GetUtcNow().AddSeconds(20);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET expires_at = $2 WHERE company_id = $1 RETURNING 1", failing, expiresAt);

        await worker.RunOnceAsync();

        Assert.Equal(0, await CountAsync(failing, "CANCELLED"));
        var behindCircuit = await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status_reason LIKE '%(circuit open)%' AND next_attempt_at = expires_at", failing);
        Assert.Equal(6 - email.Calls, behindCircuit);
        Assert.True(behindCircuit > 0, "no row met the open circuit");
    }

    [Fact]
    public async Task Behind_a_circuit_that_stays_open_a_companys_rows_back_off_apart_instead_of_returning_together_at_each_break()
    {
        var (failing, customer) = await CustomerAsync();
        var (email, time) = FailingEmail();
        await using var worker = BreakingWorker(email, time, ("Dispatch:RetryJitter", "0.5"));
        for (var i = 0; i < 20; i++)
        {
            await Outbox.EnqueueAsync(db.DataSource, failing, customer);
        }

        // Each pass: the rows that are due meet the open circuit (the half-open trial fails again).
        for (var pass = 0; pass < 6; pass++)
        {
            await worker.RunOnceAsync();
            time.Advance(TimeSpan.FromMinutes(3));
        }

        var rows = await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(DISTINCT outage_attempts::text, ',') || ' / ' || count(DISTINCT next_attempt_at) FROM communication_logs WHERE company_id = $1 AND status_reason LIKE '%(circuit open)%'", failing);
        var parts = rows.Split(" / ");
        // Deferred once per pass they were due in: after a few breaks they have waited out several and drift apart.
        Assert.Contains(parts[0].Split(','), attempts => int.Parse(attempts, System.Globalization.CultureInfo.InvariantCulture) >= 3);
        Assert.True(int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture) > 5, $"the rows come back together: {rows}");
    }

    [Fact]
    public async Task Behind_a_circuit_open_past_the_outage_budget_each_deferral_spends_a_retry_until_the_row_fails()
    {
        var (failing, customer) = await CustomerAsync();
        var (email, time) = FailingEmail();
        await using var worker = BreakingWorker(email, time, ("Dispatch:OutageRetries", "1"));
        for (var i = 0; i < 8; i++)
        {
            await Outbox.EnqueueAsync(db.DataSource, failing, customer);
        }
        // Rows that already waited out one outage attempt, one of them with a single retry left.
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET outage_attempts = 1 WHERE company_id = $1 RETURNING 1", failing);
        var lastChance = await TestData.ScalarAsync<long>(db.DataSource,
            "UPDATE communication_logs SET retry_count = max_retries WHERE id = (SELECT max(id) FROM communication_logs WHERE company_id = $1) RETURNING id", failing);

        await worker.RunOnceAsync();

        var deferred = await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND status_reason LIKE 'provider SMTP is failing for this company (circuit open); retry 1 of 3 at %' AND retry_count = 1 AND attempt_count = 0", failing);
        Assert.True(deferred > 0, "no row met the open circuit");
        var failed = await Outbox.GetAsync(db.DataSource, lastChance);
        Assert.Equal(("FAILED", "gave up: provider SMTP is failing for this company (circuit open) past 1 outage attempts and 3 retries"), (failed.Status, failed.ErrorMessage));
    }

    [Fact]
    public async Task Delivery_events_that_arrive_before_the_batch_records_their_provider_ids_are_applied_when_it_does()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543210");
        var bounced = await Outbox.EnqueueAsync(db.DataSource, company, customer, type: "GENERAL_UPDATE");
        var complained = await Outbox.EnqueueAsync(db.DataSource, company, customer, type: "GENERAL_UPDATE");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "whatsapp_opt_in = true");
        var optedOut = await Outbox.EnqueueAsync(db.DataSource, company, customer, channel: "WHATSAPP");
        // They answer with the provider ids SMTP-<message id> and WHATSAPP_BUSINESS_API-<message id>.
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email(), WorkerHarness.WhatsApp()]);
        // The provider's webhooks come in while the batch's sends are still going out: no message has these ids yet.
        var recorder = new DeliveryEventRecorder(db.DataSource);
        var now = DateTimeOffset.UtcNow;
        var early = new[]
        {
            await recorder.RecordAsync(company, "smtp", new DeliveryEvent($"SMTP-{bounced}", DeliveryStatus.Bounced, now, "550 5.1.1 mailbox unavailable", "e1", "{}"), now, TestContext.Current.CancellationToken),
            await recorder.RecordAsync(company, "smtp", DeliveryEvent.Complaint($"SMTP-{complained}", now, "e2", "{}"), now, TestContext.Current.CancellationToken),
            await recorder.RecordAsync(company, "smtp", new DeliveryEvent("SMTP-never-sent", DeliveryStatus.Delivered, now, null, "e3", "{}"), now, TestContext.Current.CancellationToken),
            await recorder.RecordAsync(company, "whatsapp", new DeliveryEvent($"WHATSAPP_BUSINESS_API-{optedOut}", DeliveryStatus.Failed, now, "21610 recipient replied STOP", "e4", "{}") { RecipientOptedOut = true }, now, TestContext.Current.CancellationToken),
        };
        Assert.All(early, outcome => Assert.Equal(WebhookOutcome.UnknownMessage, outcome));

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, bounced);
        Assert.Equal(("BOUNCED", "550 5.1.1 mailbox unavailable"), (row.Status, row.ErrorMessage));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, complained)).Status);
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", customer));
        Assert.False(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT whatsapp_opt_in FROM communication_preferences WHERE customer_id = $1", customer));
        Assert.Equal(("FAILED", "21610 recipient replied STOP"), ((await Outbox.GetAsync(db.DataSource, optedOut)).Status, (await Outbox.GetAsync(db.DataSource, optedOut)).ErrorMessage));
        Assert.Equal("APPLIED:" + bounced + ",APPLIED:" + complained + ",UNKNOWN_MESSAGE:,APPLIED:" + optedOut, await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(outcome || ':' || coalesce(message_id::text, ''), ',' ORDER BY event_key) FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task Malformed_rows_fail_with_a_reason_and_the_worker_keeps_running()
    {
        var (company, customer) = await CustomerAsync();
        await using (var template = db.DataSource.CreateCommand("INSERT INTO message_templates (company_id, key, channel, body) VALUES ($1, 'broken', 'EMAIL', 'Hello {{ for }}')"))
        {
            template.Parameters.AddWithValue(company);
            await template.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email]);

        var unknownTemplate = await Outbox.EnqueueAsync(db.DataSource, company, customer, content: null, templateKey: "no-such-template");
        var missingCustomer = await Outbox.EnqueueAsync(db.DataSource, company, Guid.NewGuid());
        var brokenTemplate = await Outbox.EnqueueAsync(db.DataSource, company, customer, content: null, templateKey: "broken");
        var arrayData = await Outbox.EnqueueAsync(db.DataSource, company, customer, content: null, templateKey: "broken", templateData: "[1, 2]");
        long unknownExternal;
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content) VALUES ($1, 'NOT-A-CLIENT', 'INVOICE', 'EMAIL', 'x') RETURNING id"))
        {
            insert.Parameters.AddWithValue(company);
            unknownExternal = (long)(await insert.ExecuteScalarAsync(TestContext.Current.CancellationToken))!;
        }
        // No foreign key checks the company (migration 0010): a producer's wrong company id commits with its business change.
        var noSuchCompany = Guid.NewGuid();
        var unknownCompany = await Outbox.EnqueueAsync(db.DataSource, noSuchCompany, customer);

        await worker.StartAsync();
        await WaitUntilAsync(async () => await CountAsync(company, "FAILED") == 5 && await CountAsync(noSuchCompany, "FAILED") == 1, TimeSpan.FromSeconds(10), "six FAILED rows");

        Assert.Equal("no template 'no-such-template' for EMAIL in en", (await Outbox.GetAsync(db.DataSource, unknownTemplate)).ErrorMessage);
        Assert.Equal($"customer {(await TestData.ScalarAsync<Guid>(db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", missingCustomer))} does not exist in this company",
            (await Outbox.GetAsync(db.DataSource, missingCustomer)).ErrorMessage);
        Assert.Matches(@"^template broken@v1/EMAIL/en: body: line 1, column \d+: ", (await Outbox.GetAsync(db.DataSource, brokenTemplate)).ErrorMessage);
        Assert.Equal("template_data must be a JSON object", (await Outbox.GetAsync(db.DataSource, arrayData)).ErrorMessage);
        Assert.Equal("customer with external id 'NOT-A-CLIENT' does not exist in this company", (await Outbox.GetAsync(db.DataSource, unknownExternal)).ErrorMessage);
        Assert.Equal($"company {noSuchCompany} does not exist", (await Outbox.GetAsync(db.DataSource, unknownCompany)).ErrorMessage);
        Assert.Equal(0, email.Calls);

        // Still alive: a good message after the bad ones goes out.
        var good = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await WaitUntilAsync(async () => (await Outbox.GetAsync(db.DataSource, good)).Status == "SENT", TimeSpan.FromSeconds(10), "the good message");
    }

    [Fact]
    public async Task Shutdown_finishes_the_send_in_flight_and_releases_rows_it_will_not_start()
    {
        var (company, customer) = await CustomerAsync();
        using var inFlight = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var email = WorkerHarness.Email();
        email.Behaviour = m =>
        {
            inFlight.Set();
            release.Wait(TimeSpan.FromSeconds(10));
            return SendResult.Sent($"ok-{m.MessageId}");
        };
        // One batch at a time with one send at a time: exactly one send is in flight when the stop comes.
        await using var worker = new WorkerHarness(db.ConnectionString, [email], settings: new() { ["Dispatch:MaxConcurrentSends"] = "1", ["Dispatch:ConcurrentBatches"] = "1" });
        await EnqueueManyAsync(company, customer, 10);

        await worker.StartAsync();
        Assert.True(inFlight.Wait(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken), "no send started");
        var stopping = worker.StopAsync();
        await Task.Delay(200, TestContext.Current.CancellationToken);
        release.Set();
        await stopping;

        Assert.Equal(1, email.Calls);
        Assert.Equal(1, await CountAsync(company, "SENT"));
        Assert.Equal(9, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING' AND locked_by IS NULL AND next_attempt_at <= now() AND attempt_count = 0", company));
    }

    [Fact]
    public async Task A_worker_that_started_on_an_empty_outbox_plans_its_claim_for_the_rows_that_arrive()
    {
        // PostgreSQL may switch a prepared statement to one generic plan after five executions and
        // keep it until the table is next analyzed. Made while the outbox was empty, the claim's plan
        // can scan the whole table on every call once rows arrive (reproduced after a TRUNCATE: a
        // hash join over a sequential scan of all 200,000 rows that then arrived, on every claim).
        await using var worker = new WorkerHarness(db.ConnectionString, []);
        await using var connection = await worker.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync(TestContext.Current.CancellationToken);
        await ExecuteAsync(connection, PrepareClaim);
        for (var i = 0; i < 8; i++)
        {
            await ExecuteAsync(connection, ExecuteClaim);
        }

        var (company, customer) = await CustomerAsync();
        await EnqueueManyAsync(company, customer, 5_000);
        var text = await ExplainClaimAsync(connection, orderedScan: false);
        Assert.Contains("ix_communication_logs_due", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Seq Scan", text, StringComparison.Ordinal);
        Assert.DoesNotContain("<= $3", text, StringComparison.Ordinal); // planned for the values, not generically
    }

    [Fact]
    public async Task A_claim_when_few_rows_are_due_walks_the_due_index_in_order()
    {
        // A steady trickle: few rows due, behind the index entries that completed rows left in the
        // due range (until vacuum). Planned freely, the claim is a bitmap scan plus a sort, which
        // never marks those entries dead, so every claim re-reads all of them and their heap pages.
        // OutboxStore.ClaimAsync runs OrderedScanSql before the claim, in the same transaction.
        var (company, customer) = await CustomerAsync();
        // 20,000 rows due at scattered times in the last hour; all but every 50th then completed,
        // so the rows still due lie one or two to a heap page.
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH due AS (
                INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, next_attempt_at)
                SELECT $1, $2, 'GENERAL_UPDATE', 'EMAIL', 'Update', 'Update', now() - random() * interval '1 hour'
                  FROM generate_series(1, 20000)
                RETURNING 1)
            SELECT count(*)::int FROM due
            """, company, customer);
        await TestData.ScalarAsync<int>(db.DataSource, "WITH done AS (UPDATE communication_logs SET status = 'SENT' WHERE id % 50 <> 0 RETURNING 1) SELECT count(*)::int FROM done");
        await using var worker = new WorkerHarness(db.ConnectionString, []);
        await using var connection = await worker.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync(TestContext.Current.CancellationToken);
        await ExecuteAsync(connection, "ANALYZE communication_logs");
        await ExecuteAsync(connection, PrepareClaim);

        var free = await ExplainClaimAsync(connection, orderedScan: false);
        var ordered = await ExplainClaimAsync(connection, orderedScan: true);

        Assert.Contains("Bitmap Index Scan on ix_communication_logs_due", free, StringComparison.Ordinal); // the hazard, reproduced
        Assert.Contains("Index Scan using ix_communication_logs_due", ordered, StringComparison.Ordinal);
        Assert.Contains("Tid Scan on communication_logs m", ordered, StringComparison.Ordinal);
        Assert.DoesNotContain("Bitmap", ordered, StringComparison.Ordinal);
        Assert.DoesNotContain("Seq Scan", ordered, StringComparison.Ordinal);
        Assert.DoesNotContain("Sort Key: communication_logs", ordered, StringComparison.Ordinal); // in index order, no sort of the due rows
    }

    [Fact]
    public async Task A_claim_planned_from_statistics_taken_during_a_big_import_fetches_only_the_rows_it_locked()
    {
        await ImportWhileAnalyzeRunsAsync();
        await using var worker = new WorkerHarness(db.ConnectionString, []);
        await using var connection = await worker.Services.GetRequiredService<NpgsqlDataSource>().OpenConnectionAsync(TestContext.Current.CancellationToken);
        await ExecuteAsync(connection, PrepareClaim);

        var plan = await ExplainClaimAsync(connection, orderedScan: true);
        var claimed = await new OutboxStore(worker.Services.GetRequiredService<NpgsqlDataSource>())
            .ClaimAsync("import-test#1", 500, DateTimeOffset.UtcNow, TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);

        // The locked rows fetched by tuple id (planned as a join, the claim scanned the table by its
        // key and re-ran the locking subquery per row found: the claim below ran past its 30 s
        // timeout; by `id = ANY(…)`, it scanned all of the (company_id, id) index).
        Assert.True(plan.Contains("Tid Scan on communication_logs m", StringComparison.Ordinal), plan);
        Assert.DoesNotContain("Index Scan using communication_logs_pkey", plan, StringComparison.Ordinal); // (company_id, id) since migration 0011
        Assert.DoesNotContain("ix_communication_logs_id", plan, StringComparison.Ordinal);
        Assert.Equal(500, claimed.Count);
        Assert.Equal(claimed.Select(m => m.Id).Order(), claimed.Select(m => m.Id)); // in due order
    }

    [Fact]
    public async Task Outcomes_and_releases_planned_from_statistics_taken_during_a_big_import_probe_only_the_batch_rows()
    {
        var company = await ImportWhileAnalyzeRunsAsync();
        await using var worker = new WorkerHarness(db.ConnectionString, []);
        var dataSource = worker.Services.GetRequiredService<NpgsqlDataSource>();
        var store = new OutboxStore(dataSource);
        var now = DateTimeOffset.UtcNow;
        var claimed = await store.ClaimAsync("import-test#1", 500, now, TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);
        var (sent, kept) = (claimed[..400], claimed[400..]);
        var outcomes = sent.Select(m => new Completion(m.Id, m.CompanyId, DeliveryStatus.Sent, m.Channel) { NextAttemptAt = now, SentAt = now, ProviderMessageId = $"p-{m.Id}" }).ToList();

        var outcomePlan = await ExplainAsync(dataSource, OutboxStore.OutcomeCommand("import-test#1", outcomes, now));
        var releasePlan = await ExplainAsync(dataSource, OutboxStore.ReleaseCommand("import-test#1", kept, now));
        await store.CompleteAsync("import-test#1", outcomes, now, TestContext.Current.CancellationToken);
        await store.ReleaseAsync("import-test#1", kept, now, TestContext.Current.CancellationToken);

        // Joined by id, the outcome scanned the whole primary key per batch (a hash join) and a probe
        // by id alone scanned the whole company index per row: every probe now names both columns
        // of the company index, and the update reaches the locked versions by tuple id.
        foreach (var plan in new[] { outcomePlan, releasePlan })
        {
            Assert.True(plan.Contains("Tid Scan on communication_logs", StringComparison.Ordinal), plan);
            Assert.DoesNotContain("Seq Scan on communication_logs", plan, StringComparison.Ordinal);
            var conditions = plan.Split('\n').Where(line => line.Contains("Index Cond:", StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(conditions);
            Assert.All(conditions, line => Assert.True(line.Contains("(company_id = b.company_id) AND (id = b.id)", StringComparison.Ordinal), plan));
        }
        Assert.Equal(400, await CountAsync(company, "SENT"));
        Assert.Equal(400, await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM communication_logs WHERE provider_message_id = 'p-' || id AND locked_by IS NULL"));
        Assert.Equal(0, await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM communication_logs WHERE locked_by IS NOT NULL"));
        Assert.Equal(100, await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM communication_logs WHERE id = ANY($1) AND status = 'PENDING' AND next_attempt_at <= $2", kept.Select(m => m.Id).ToArray(), now));
    }

    [Fact]
    public async Task Outcomes_and_releases_planned_from_a_drained_outboxs_statistics_probe_the_key_not_the_due_index()
    {
        var (company, customer) = await CustomerAsync();
        // A drained outbox (every row SENT, analyzed: the partial due index looks empty), then a new backlog.
        await using (var drained = db.DataSource.CreateCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status, sent_at)
            SELECT $1, $2, 'INVOICE', 'EMAIL', 'sent ' || g, 'SENT', now() FROM generate_series(1, 5000) g
            """))
        {
            drained.Parameters.AddWithValue(company);
            drained.Parameters.AddWithValue(customer);
            await drained.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using (var analyze = db.DataSource.CreateCommand("ANALYZE communication_logs"))
        {
            await analyze.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await EnqueueManyAsync(company, customer, 500);
        await using var worker = new WorkerHarness(db.ConnectionString, []);
        var store = worker.Services.GetRequiredService<OutboxStore>();
        var now = DateTimeOffset.UtcNow;
        var claimed = await store.ClaimAsync("drained#1", 500, now, TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken);
        var (sent, kept) = (claimed[..400], claimed[400..]);
        var outcomes = sent.Select(m => new Completion(m.Id, m.CompanyId, DeliveryStatus.Sent, m.Channel) { NextAttemptAt = now, SentAt = now }).ToList();

        // The status the statements require is checked on the row the tuple id reaches: inside the
        // probe, `status = 'PENDING' AND id = …` was served by the due index, a full scan of it per row.
        foreach (var plan in new[] { await ExplainAsync(db.DataSource, OutboxStore.OutcomeCommand("drained#1", outcomes, now)), await ExplainAsync(db.DataSource, OutboxStore.ReleaseCommand("drained#1", kept, now)) })
        {
            Assert.DoesNotContain("ix_communication_logs_due", plan, StringComparison.Ordinal);
            Assert.All(plan.Split('\n').Where(line => line.Contains("Index Cond:", StringComparison.Ordinal)),
                line => Assert.True(line.Contains("(company_id = b.company_id) AND (id = b.id)", StringComparison.Ordinal), plan));
        }
        await store.CompleteAsync("drained#1", outcomes, now, TestContext.Current.CancellationToken);
        await store.ReleaseAsync("drained#1", kept, now, TestContext.Current.CancellationToken);
        Assert.Equal(5400, await CountAsync(company, "SENT"));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE locked_by IS NOT NULL"));
    }

    [Fact]
    public async Task An_outcome_that_waits_for_a_business_app_updating_the_row_is_still_recorded()
    {
        var (company, customer) = await CustomerAsync();
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await using var worker = new WorkerHarness(db.ConnectionString, []);
        var store = worker.Services.GetRequiredService<OutboxStore>();
        var now = DateTimeOffset.UtcNow;
        Assert.Single(await store.ClaimAsync("busy-row#1", 10, now, TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken));

        // The business app's transaction updates the row while the worker records the outcome: the
        // outcome waits for it, then finds a newer version of the row than its statement can see.
        await using var producer = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var transaction = await producer.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var touch = new NpgsqlCommand("UPDATE communication_logs SET metadata = '{\"invoice\": \"INV-7\"}' WHERE id = $1", producer, transaction))
        {
            touch.Parameters.AddWithValue(id);
            await touch.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var sent = new Completion(id, company, DeliveryStatus.Sent, Channel.Email) { NextAttemptAt = now, SentAt = now, ProviderMessageId = "wamid-7" };
        var outcome = store.CompleteAsync("busy-row#1", [sent], now, TestContext.Current.CancellationToken);
        var waitedFor = Stopwatch.StartNew();
        while (await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))", producer.ProcessID) == 0)
        {
            if (outcome.IsCompleted)
            {
                await outcome; // its error, if it failed
                Assert.Fail("the outcome did not wait for the business app's row lock");
            }
            Assert.True(waitedFor.Elapsed < TimeSpan.FromSeconds(30), "the outcome never blocked on the business app's row lock");
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
        await transaction.CommitAsync(TestContext.Current.CancellationToken);
        await outcome;

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", "wamid-7", (string?)null), (row.Status, row.ProviderMessageId, row.LockedBy));
        Assert.Equal("INV-7", await TestData.ScalarAsync<string>(db.DataSource, "SELECT metadata->>'invoice' FROM communication_logs WHERE id = $1", id));
    }

    // Autovacuum or autoanalyze that runs while a business app's import is still uncommitted
    // records the table as empty (the import's rows are not live yet); until the next analyze
    // every statement is planned for an empty table while 20,000 rows are due.
    private async Task<Guid> ImportWhileAnalyzeRunsAsync()
    {
        var (company, customer) = await CustomerAsync();
        await using var import = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var transaction = await import.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content) SELECT $1, $2, 'GENERAL_UPDATE', 'EMAIL', 'Update', 'Update ' || g FROM generate_series(1, 20000) g", import, transaction))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(customer);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using (var analyze = db.DataSource.CreateCommand("ANALYZE communication_logs"))
        {
            await analyze.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await transaction.CommitAsync(TestContext.Current.CancellationToken);
        return company;
    }

    /// <summary>The plan of one of the store's statements, with its parameters, from a worker's connection (custom plans).</summary>
    private static async Task<string> ExplainAsync(NpgsqlDataSource dataSource, NpgsqlBatchCommand statement)
    {
        await using var explain = dataSource.CreateCommand("EXPLAIN " + statement.CommandText);
        foreach (NpgsqlParameter parameter in statement.Parameters)
        {
            explain.Parameters.Add(parameter.Clone());
        }
        var plan = new List<string>();
        await using var reader = await explain.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            plan.Add(reader.GetString(0));
        }
        return string.Join('\n', plan);
    }

    // The production claim, prepared and run the way the plan tests look at it.
    private const string PrepareClaim = "PREPARE claim(text, timestamptz, timestamptz, int) AS " + OutboxStore.ClaimSql;

    private const string ExecuteClaim = "EXECUTE claim('plan-test', now() + interval '2 minutes', now(), 500)";

    private static async Task<string> ExplainClaimAsync(NpgsqlConnection connection, bool orderedScan)
    {
        await using var transaction = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        if (orderedScan)
        {
            await ExecuteAsync(connection, OutboxStore.OrderedScanSql);
        }
        await using var explain = new NpgsqlCommand("EXPLAIN " + ExecuteClaim, connection);
        var plan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync(TestContext.Current.CancellationToken))
        {
            while (await reader.ReadAsync(TestContext.Current.CancellationToken))
            {
                plan.Add(reader.GetString(0));
            }
        }
        await transaction.RollbackAsync(TestContext.Current.CancellationToken);
        return string.Join('\n', plan);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }
}
