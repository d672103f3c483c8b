using System.ComponentModel.DataAnnotations;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using OutboxComms.Core.Observability;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

/// <summary>
/// A worker whose clock disagrees with PostgreSQL's claims nothing (its leases would end early or
/// late for the other workers): against a real PostgreSQL, with the worker's clock set off the
/// system's — a <see cref="SkewedClock"/> where the clock must go back, a FakeTimeProvider where
/// the test moves time itself.
/// </summary>
public sealed class ClockSkewGuardTests(PostgresServer server) : IAsyncLifetime
{
    // A database per test: workers claim every due row, so tests must not see each other's.
    private readonly DatabaseFixture db = new(server);

    public ValueTask InitializeAsync() => db.InitializeAsync();

    public ValueTask DisposeAsync() => db.DisposeAsync();

    /// <summary>
    /// The production defaults where the harness shortens them: its 4 s shutdown grace would make the
    /// default limit two thirds of a second; production's 30 s makes it 5 s.
    /// </summary>
    private static Dictionary<string, string?> ProductionLimits(params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string?> { ["Dispatch:ShutdownGrace"] = "00:00:30" };
        foreach (var (key, value) in more)
        {
            settings[key] = value;
        }
        return settings;
    }

    private async Task<(Guid Company, Guid Customer)> CustomerAsync()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        return (company, await TestData.CreateCustomerAsync(db.DataSource, company));
    }

    private async Task<string> StatusAsync(long id) => (await Outbox.GetAsync(db.DataSource, id)).Status;

    /// <summary>The worker's <c>outbox.worker.clock_skew</c> gauge now, in seconds; null when it reports nothing.</summary>
    private static double? SkewGauge(WorkerHarness worker)
    {
        using var gauge = new MetricCollector<double>(worker.Services.GetRequiredService<IMeterFactory>(), OutboxMetrics.MeterName, "outbox.worker.clock_skew");
        gauge.RecordObservableInstruments();
        return gauge.LastMeasurement?.Value;
    }

    private static int Logged(WorkerHarness worker, LogLevel level, string text) =>
        worker.Logs.GetSnapshot().Count(r => r.Level == level && r.Message.Contains(text, StringComparison.Ordinal));

    private const string Skewed = "beyond Dispatch:MaxClockSkew";

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
    public async Task A_worker_ten_minutes_ahead_of_postgresql_claims_nothing_and_lets_its_heartbeat_go_stale_until_its_clock_agrees_again()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var clock = new SkewedClock(TimeSpan.FromMinutes(10));
        var heartbeat = Path.Combine(Path.GetTempPath(), $"outboxcomms-heartbeat-{Guid.NewGuid():N}");
        try
        {
            await using var worker = new WorkerHarness(db.ConnectionString, [email], clock, ProductionLimits(("Health:HeartbeatFile", heartbeat)));
            var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);   // due now, by any of the clocks
            await worker.StartAsync();

            await WaitUntilAsync(() => Task.FromResult(Logged(worker, LogLevel.Error, Skewed) > 0), TimeSpan.FromSeconds(30), "the worker to say its clock is off");
            Assert.InRange(SkewGauge(worker)!.Value, 595, 605);
            // Four lanes poll every second, and a worker that claims takes a due row within
            // milliseconds; over 6 s the guard also measures again (every 5 s while it holds claims).
            await Task.Delay(TimeSpan.FromSeconds(6), TestContext.Current.CancellationToken);
            Assert.Equal("PENDING", await StatusAsync(id));
            Assert.Equal(0, email.Calls);
            Assert.False(File.Exists(heartbeat), "the heartbeat was written by a worker that claims nothing");
            Assert.Equal(1, Logged(worker, LogLevel.Error, Skewed));   // once, not per measurement

            clock.Offset = TimeSpan.Zero;

            await WaitUntilAsync(async () => await StatusAsync(id) == "SENT", TimeSpan.FromSeconds(30), "the message to go once the clocks agree");
            Assert.Equal(1, email.Calls);
            Assert.InRange(SkewGauge(worker)!.Value, -1, 1);
            Assert.Equal(1, Logged(worker, LogLevel.Information, "agrees with PostgreSQL's again"));
            await WaitUntilAsync(() => Task.FromResult(File.Exists(heartbeat)), TimeSpan.FromSeconds(30), "the heartbeat to start again");
        }
        finally
        {
            File.Delete(heartbeat);
        }
    }

    [Fact]
    public async Task A_worker_ten_minutes_behind_claims_nothing_until_its_clock_is_moved_to_the_databases()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(-10));
        // The harness turns the guard off for a fake clock; this test turns it on, at its production limit.
        await using var worker = new WorkerHarness(db.ConnectionString, [email], time, ProductionLimits(("Dispatch:MaxClockSkew", "00:00:05")));
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));   // due by the worker's clock
        await worker.StartAsync();

        await WaitUntilAsync(() => Task.FromResult(Logged(worker, LogLevel.Error, Skewed) > 0), TimeSpan.FromSeconds(30), "the worker to say its clock is off");
        Assert.InRange(SkewGauge(worker)!.Value, -610, -595);
        await Task.Delay(TimeSpan.FromSeconds(2), TestContext.Current.CancellationToken);
        Assert.Equal("PENDING", await StatusAsync(id));

        // Moving the fake clock also runs the guard's timer: it measures again at once.
        time.SetUtcNow(DateTimeOffset.UtcNow);

        await WaitUntilAsync(async () => await StatusAsync(id) == "SENT", TimeSpan.FromSeconds(30), "the message to go once the clocks agree");
        Assert.Equal(1, email.Calls);
        Assert.InRange(SkewGauge(worker)!.Value, -1, 1);
    }

    [Theory]
    [InlineData(600, 0)]
    [InlineData(-600, 0)]
    [InlineData(8, 0)]
    [InlineData(-8, 0)]
    [InlineData(3, 1)]
    [InlineData(0, 1)]
    public async Task Driven_one_batch_at_a_time_a_worker_measures_its_clock_before_its_first_claim_and_claims_only_within_the_limit(int secondsOff, int claims)
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TimeSpan.FromSeconds(secondsOff)), ProductionLimits());
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: DateTimeOffset.UtcNow.AddMinutes(-20));   // due by any of these clocks

        Assert.Equal(claims, await worker.RunOnceAsync());

        Assert.Equal(claims == 1 ? "SENT" : "PENDING", await StatusAsync(id));
        Assert.Equal(claims, email.Calls);
        Assert.InRange(SkewGauge(worker)!.Value, secondsOff - 1, secondsOff + 1);
    }

    [Fact]
    public async Task A_clock_set_ahead_between_two_measurements_stops_claims_at_once()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var clock = new SkewedClock(TimeSpan.Zero);
        await using var worker = new WorkerHarness(db.ConnectionString, [email], clock, ProductionLimits());
        await worker.StartAsync();
        // A first message, so the worker has measured and is warm (its first batch builds the EF model).
        var first = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await WaitUntilAsync(async () => await StatusAsync(first) == "SENT", TimeSpan.FromSeconds(30), "the first message to go");

        // Up to 30 s before the next measurement was due; the insert's NOTIFY wakes a lane at once,
        // and a worker that claims takes the row within milliseconds.
        clock.Offset = TimeSpan.FromMinutes(10);
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await Task.Delay(TimeSpan.FromSeconds(3), TestContext.Current.CancellationToken);
        Assert.Equal("PENDING", await StatusAsync(id));
        Assert.Equal(1, email.Calls);

        // The step also brings the next measurement forward (held claims are measured every 5 s).
        await WaitUntilAsync(() => Task.FromResult(Logged(worker, LogLevel.Error, Skewed) > 0), TimeSpan.FromSeconds(20), "the worker to say its clock is off");
        Assert.InRange(SkewGauge(worker)!.Value, 595, 605);
        Assert.Equal("PENDING", await StatusAsync(id));
    }

    [Fact]
    public async Task A_measurement_whose_round_trip_is_too_long_is_dropped_rather_than_trusted()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        using var network = new SlowAnswersProxy(db.ConnectionString);
        // The harness's 4 s shutdown grace makes the default limit two thirds of a second.
        await using var worker = new WorkerHarness(network.Through(db.ConnectionString), [email], new SkewedClock(TimeSpan.Zero));
        var guard = worker.Services.GetRequiredService<ClockSkewGuard>();
        var first = (await guard.MeasureAsync(firstOnly: false, TestContext.Current.CancellationToken))!;
        Assert.True(guard.AllowsClaims);

        var rowsBefore = await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks");
        network.AnswerDelay = TimeSpan.FromSeconds(2);
        var slow = (await guard.MeasureAsync(firstOnly: false, TestContext.Current.CancellationToken))!;
        network.AnswerDelay = TimeSpan.Zero;
        // Not dropped altogether: the last good measurement is judged and recorded again, so a slowly
        // answering database does not let the decision lapse (and stop dispatch) a minute later.
        Assert.Equal(rowsBefore + 1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks"));
        Assert.InRange(await TestData.ScalarAsync<double>(db.DataSource, "SELECT skew_ms FROM worker_clocks ORDER BY measured_at DESC LIMIT 1"),
            first.Skew.TotalMilliseconds - 50, first.Skew.TotalMilliseconds + 50);

        // What a guard trusting it would have believed: answers held on their way back make this
        // clock look a second ahead, beyond the limit.
        Assert.True(slow.RoundTrip > ClockSkewGuard.LongestRoundTrip, $"round trip {slow.RoundTrip}");
        Assert.True(slow.Skew > TimeSpan.FromSeconds(0.7), $"skew {slow.Skew}");
        Assert.True(guard.AllowsClaims);
        Assert.Equal(first.Skew.TotalSeconds, SkewGauge(worker)!.Value, 0.001);
        Assert.Equal(0, Logged(worker, LogLevel.Error, Skewed));
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        Assert.Equal(1, await worker.RunOnceAsync());
        Assert.Equal("SENT", await StatusAsync(id));
    }

    [Fact]
    public async Task A_limit_of_zero_turns_the_check_off_and_the_worker_says_so()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 5, 6, 0, 0, TimeSpan.Zero));   // far from PostgreSQL's clock
        await using var worker = new WorkerHarness(db.ConnectionString, [email], time, ProductionLimits(("Dispatch:MaxClockSkew", "0")));
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: time.GetUtcNow().AddMinutes(-1));
        await worker.StartAsync();

        await WaitUntilAsync(async () => await StatusAsync(id) == "SENT", TimeSpan.FromSeconds(30), "the message to go");
        Assert.Equal(1, Logged(worker, LogLevel.Warning, "Dispatch:MaxClockSkew is 0"));
        Assert.Null(SkewGauge(worker));
    }

    private static ClockSkewGuard Guard(WorkerHarness worker) => worker.Services.GetRequiredService<ClockSkewGuard>();

    /// <summary>One measurement of the worker's clock, with its exchange with the other workers' (as the guard's timer takes it); answers whether it may claim.</summary>
    private static async Task<bool> MeasureAsync(WorkerHarness worker)
    {
        await Guard(worker).MeasureAsync(firstOnly: false, TestContext.Current.CancellationToken);
        return Guard(worker).AllowsClaims;
    }

    /// <summary>As when LeaseDuration and more have passed since the workers last claimed: no lease taken on their clocks can be live.</summary>
    private async Task LeasesEndedAsync() =>
        await TestData.ScalarAsync<long>(db.DataSource, "WITH e AS (UPDATE worker_clocks SET claims_until = clock_timestamp() - interval '1 second' WHERE claims_until IS NOT NULL RETURNING 1) SELECT count(*) FROM e");

    private const string DatabaseOff = "the database host's clock is taken to be off";

    private const string ApartFromClaims = "leases taken on that clock may still be live";

    private static readonly TimeSpan TenMinutes = TimeSpan.FromMinutes(10);

    [Fact]
    public async Task Workers_whose_clocks_agree_claim_when_the_database_clock_is_the_odd_one_out_but_not_one_alone()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        // Two workers ten minutes ahead of PostgreSQL, two seconds apart: to them the database's
        // clock is ten minutes behind.
        await using var first = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TenMinutes), ProductionLimits());
        var secondClock = new SkewedClock(TenMinutes + TimeSpan.FromSeconds(2));
        await using var second = new WorkerHarness(db.ConnectionString, [email], secondClock, ProductionLimits());
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: DateTimeOffset.UtcNow.AddMinutes(-20));

        // Alone, a worker cannot tell whether its clock or the database's is off: it holds, as before.
        Assert.False(await MeasureAsync(first));
        Assert.Equal(1, Logged(first, LogLevel.Error, Skewed));
        Assert.Equal(0, await first.RunOnceAsync());

        Assert.True(await MeasureAsync(second));   // two of two live workers agree
        Assert.True(await MeasureAsync(first));
        Assert.True(await MeasureAsync(first));

        Assert.Equal(1, Logged(first, LogLevel.Warning, DatabaseOff));   // once, not per measurement
        Assert.Equal(1, Logged(second, LogLevel.Warning, DatabaseOff));
        Assert.Equal(0, Logged(second, LogLevel.Error, Skewed));
        Assert.InRange(SkewGauge(first)!.Value, 595, 605);
        Assert.Equal(1, await first.RunOnceAsync());
        Assert.Equal("SENT", await StatusAsync(id));

        // A step of its clock holds a worker at once, as for one that agrees with the database:
        // the others judge its leases by the skew it recorded.
        secondClock.Offset += TimeSpan.FromSeconds(1);
        Assert.False(Guard(second).AllowsClaims);
    }

    [Fact]
    public async Task A_clock_stepped_by_more_than_half_a_second_holds_claims_at_once_even_within_the_limit()
    {
        var clock = new SkewedClock(TimeSpan.Zero);
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], clock, ProductionLimits());
        Assert.True(await MeasureAsync(worker));

        clock.Offset = TimeSpan.FromSeconds(0.3);
        Assert.True(Guard(worker).AllowsClaims);
        clock.Offset = TimeSpan.FromSeconds(1);
        Assert.False(Guard(worker).AllowsClaims);
        Assert.True(await MeasureAsync(worker));   // measured again, it agrees
    }

    [Fact]
    public async Task A_worker_far_from_the_database_is_not_agreed_with_by_a_dead_workers_row_and_rows_gone_for_a_day_are_deleted()
    {
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TenMinutes), ProductionLimits());
        // A worker with the same clock that stopped measuring 90 s ago (past the 75 s in which a
        // worker counts as running; leases it took may still be live), and one gone for two days.
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO worker_clocks (worker_id, measured_at, skew_ms, round_trip_ms, claims_until) VALUES
                ('stopped#1', clock_timestamp() - interval '90 seconds', 600000, 1, clock_timestamp() + interval '2 minutes'),
                ('gone#1', clock_timestamp() - interval '2 days', 600000, 1, NULL)
            RETURNING 1
            """);

        Assert.False(await MeasureAsync(worker));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks WHERE worker_id = 'gone#1'"));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks WHERE worker_id = 'stopped#1'"));

        // The same worker measuring now is running, and agrees.
        await TestData.ScalarAsync<int>(db.DataSource, "INSERT INTO worker_clocks (worker_id, measured_at, skew_ms, round_trip_ms) VALUES ('running#1', clock_timestamp(), 600500, 1) RETURNING 1");
        Assert.True(await MeasureAsync(worker));
    }

    [Fact]
    public async Task A_worker_whose_clock_alone_is_far_holds_while_the_others_claim()
    {
        var email = WorkerHarness.Email();
        await using var first = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        await using var second = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TimeSpan.FromSeconds(1)), ProductionLimits());
        await using var far = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TenMinutes), ProductionLimits());

        Assert.True(await MeasureAsync(first));
        Assert.True(await MeasureAsync(second));
        Assert.False(await MeasureAsync(far));   // one of three agrees with it: itself
        Assert.True(await MeasureAsync(first));

        Assert.Equal(1, Logged(far, LogLevel.Error, "and the clocks of 1 of the 3 live hosts"));
    }

    [Fact]
    public async Task A_worker_that_agrees_with_the_database_does_not_claim_while_leases_taken_on_clocks_far_from_its_own_may_be_live()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        await using var first = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TenMinutes), ProductionLimits());
        await using var second = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TenMinutes), ProductionLimits());
        Assert.False(await MeasureAsync(first));
        Assert.True(await MeasureAsync(second));
        Assert.True(await MeasureAsync(first));
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, notBefore: DateTimeOffset.UtcNow.AddMinutes(-20));

        // A third worker, on PostgreSQL's clock: the two others' leases end ten minutes early by
        // its clock, so it must not claim (it would take their rows over while they still send).
        await using var third = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        Assert.False(await MeasureAsync(third));
        Assert.Equal(0, await third.RunOnceAsync());
        Assert.Equal(1, Logged(third, LogLevel.Error, ApartFromClaims));
        Assert.Equal(0, Logged(third, LogLevel.Error, Skewed));

        // Once the others' leases have ended (they stopped, or hold too), it claims by the
        // database's clock (one of three live workers agrees with it, but the database's clock does).
        await LeasesEndedAsync();
        Assert.True(await MeasureAsync(third));
        Assert.Equal(1, await third.RunOnceAsync());
        Assert.Equal("SENT", await StatusAsync(id));
        Assert.Equal(1, Logged(third, LogLevel.Information, "agrees with PostgreSQL's again"));
    }

    [Fact]
    public async Task A_decision_waits_for_the_one_under_way_and_keeps_to_the_claims_it_recorded()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        // Another worker deciding: it holds the fleet's lock while it writes that it claims, on a
        // clock ten minutes ahead.
        await using var other = await db.DataSource.OpenConnectionAsync(ct);
        await using var deciding = await other.BeginTransactionAsync(ct);
        await using (var lockAndWrite = new NpgsqlCommand($"""
            SELECT pg_advisory_xact_lock({WorkerClocks.FleetLockKey});
            INSERT INTO worker_clocks (worker_id, measured_at, skew_ms, round_trip_ms, claims_until)
            VALUES ('other#1', clock_timestamp(), 600000, 1, clock_timestamp() + interval '3 minutes');
            """, other, deciding))
        {
            await lockAndWrite.ExecuteNonQueryAsync(ct);
        }

        var measuring = MeasureAsync(worker);
        await Task.Delay(TimeSpan.FromSeconds(1), ct);
        Assert.False(measuring.IsCompleted, "the decision did not wait for the fleet's lock");
        await deciding.CommitAsync(ct);

        Assert.False(await measuring);
        Assert.Equal(1, Logged(worker, LogLevel.Error, ApartFromClaims));
    }

    [Fact]
    public async Task A_worker_whose_clock_is_moved_far_does_not_claim_on_its_new_clock_while_its_earlier_leases_may_be_live()
    {
        var email = WorkerHarness.Email();
        var clock = new SkewedClock(TimeSpan.Zero);
        await using var moved = new WorkerHarness(db.ConnectionString, [email], clock, ProductionLimits());
        await using var other = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TenMinutes), ProductionLimits());
        Assert.True(await MeasureAsync(moved));

        clock.Offset = TenMinutes;
        Assert.False(Guard(moved).AllowsClaims);   // stepped: held at once

        // Its clock now agrees with the other worker's, two of two, but it claimed on its old clock.
        Assert.False(await MeasureAsync(other));
        Assert.False(await MeasureAsync(moved));
        Assert.False(await MeasureAsync(other));
        Assert.Equal(1, Logged(moved, LogLevel.Error, ApartFromClaims));
        Assert.Equal(1, Logged(other, LogLevel.Error, ApartFromClaims));

        await LeasesEndedAsync();
        Assert.True(await MeasureAsync(moved));
        Assert.True(await MeasureAsync(other));
    }

    [Fact]
    public async Task A_decision_lets_the_worker_claim_for_a_minute_at_most_without_a_newer_one()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], time, ProductionLimits(("Dispatch:MaxClockSkew", "00:00:05")));
        Assert.True(await MeasureAsync(worker));

        time.Advance(TimeSpan.FromSeconds(59));
        Assert.True(Guard(worker).AllowsClaims);
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.False(Guard(worker).AllowsClaims);
    }

    /// <summary>The Warning of a step of PostgreSQL's clock of ten minutes forward (as measured: to within a tenth of a second).</summary>
    private static int LoggedTenMinuteStep(WorkerHarness worker) =>
        worker.Logs.GetSnapshot().Count(r => r.Level == LogLevel.Warning && Regex.IsMatch(r.Message, @"^PostgreSQL's clock stepped by \+(599\.9|600\.0)\d\d s "));

    /// <summary>
    /// PostgreSQL's clock stepping forward by <paramref name="by"/>, as far as the test can make it
    /// (it cannot step the server's clock): the times in <c>worker_clocks</c>, which that clock
    /// wrote, fall that far behind it, and each worker's clock moves back against it
    /// (<see cref="SkewedClock.DatabaseStepped"/>) — except that of a worker on the database's host,
    /// stepped with it (<see cref="SkewedClock.SteppedWithDatabase"/>).
    /// </summary>
    private async Task DatabaseClockSteppedAsync(TimeSpan by, SkewedClock[] elsewhere, SkewedClock? onDatabaseHost = null)
    {
        await TestData.ScalarAsync<long>(db.DataSource,
            "WITH s AS (UPDATE worker_clocks SET measured_at = measured_at - $1, claims_until = claims_until - $1 RETURNING 1) SELECT count(*) FROM s", by);
        foreach (var clock in elsewhere)
        {
            clock.DatabaseStepped(by);
        }
        onDatabaseHost?.SteppedWithDatabase(by);
    }

    [Fact]
    public async Task A_step_of_the_database_clock_is_seen_and_said_once_and_the_workers_claim_again_once_each_has_measured_across_it()
    {
        // Two workers claim by each other's clocks: PostgreSQL's is ten minutes behind theirs.
        var firstClock = new SkewedClock(TenMinutes);
        var secondClock = new SkewedClock(TenMinutes);
        await using var first = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], firstClock, ProductionLimits());
        await using var second = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], secondClock, ProductionLimits());
        Assert.False(await MeasureAsync(first));
        Assert.True(await MeasureAsync(second));
        Assert.True(await MeasureAsync(first));

        // The database host's clock is put right: ten minutes forward. Every row so far is ten
        // minutes off what the workers now measure, and the claims they recorded seem to have ended
        // six minutes ago.
        await DatabaseClockSteppedAsync(TenMinutes, [firstClock, secondClock]);
        Assert.True(Guard(first).AllowsClaims);   // its own clock did not move: its decision stands until it measures

        // The first to measure sees the step and carries its rows across it; the second's, not yet
        // carried, may be ten minutes from its clock: it holds.
        Assert.False(await MeasureAsync(first));
        Assert.Equal(1, LoggedTenMinuteStep(first));
        // The second carries its rows too: the first's are carried already, and both claim by the
        // database's clock again, without waiting out the leases taken before the step (4 minutes).
        Assert.True(await MeasureAsync(second));
        Assert.True(await MeasureAsync(first));
        Assert.True(await MeasureAsync(second));
        Assert.Equal(1, LoggedTenMinuteStep(first));   // once, not per measurement
        Assert.Equal(1, LoggedTenMinuteStep(second));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks WHERE abs(skew_ms) > 1000"));
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(DISTINCT worker_id) FROM worker_clocks WHERE database_step_ms BETWEEN 599000 AND 601000"));

        // A worker starting now cannot tell which side of the step its first measurement is on: it
        // holds once; its next shows no step since, so it is on the database's clock as it is now.
        await using var third = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        Assert.False(await MeasureAsync(third));
        Assert.Equal(1, Logged(third, LogLevel.Information, "PostgreSQL's clock stepped lately"));
        Assert.True(await MeasureAsync(third));
    }

    [Fact]
    public async Task A_worker_whose_clock_steps_with_the_databases_does_not_claim_on_it_while_leases_taken_before_the_step_may_be_live()
    {
        var onDatabaseHost = new SkewedClock(TimeSpan.Zero);
        var elsewhere = new SkewedClock(TimeSpan.Zero);
        await using var stepped = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], onDatabaseHost, ProductionLimits());
        await using var other = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], elsewhere, ProductionLimits());
        Assert.True(await MeasureAsync(stepped));
        Assert.True(await MeasureAsync(other));

        // The database host's clock is set ten minutes forward, and that of the worker on it too:
        // it still agrees with PostgreSQL's, but is ten minutes ahead of the clock the other
        // worker claims on (its decision stands until it measures).
        await DatabaseClockSteppedAsync(TenMinutes, [elsewhere], onDatabaseHost);
        Assert.False(Guard(stepped).AllowsClaims);   // its wall clock moved unlike its monotonic one
        Assert.True(Guard(other).AllowsClaims);

        // To itself this reads as its host having been suspended ten minutes: it holds, recording
        // nothing, until the other worker's measurements tell which.
        Assert.False(await MeasureAsync(stepped));
        Assert.Equal(1, Logged(stepped, LogLevel.Warning, OwnClockMoved));
        Assert.Equal(0, LoggedTenMinuteStep(stepped));
        Assert.False(await MeasureAsync(other));     // sees the step: alone against the database and the stepped worker
        Assert.Equal(1, LoggedTenMinuteStep(other));
        // The other marked a step of that size: the stepped worker carries its rows across it and
        // marks it, and holds while leases taken before it may be live.
        Assert.False(await MeasureAsync(stepped));
        Assert.Equal(1, LoggedTenMinuteStep(stepped));
        Assert.Equal(1, Logged(stepped, LogLevel.Error, ApartFromClaims));
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(DISTINCT worker_id) FROM worker_clocks WHERE database_step_ms BETWEEN 599000 AND 601000"));
        Assert.False(await MeasureAsync(stepped));   // the other's claims may still be live
        Assert.False(await MeasureAsync(other));
    }

    private const string OwnClockMoved = "wall clock moved unlike its monotonic clock";

    [Fact]
    public async Task A_worker_whose_host_was_suspended_does_not_take_it_for_a_step_of_the_database_clock_nor_hold_the_other_workers()
    {
        var suspendedClock = new SkewedClock(TimeSpan.Zero);
        await using var suspended = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], suspendedClock, ProductionLimits());
        await using var other = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        Assert.True(await MeasureAsync(suspended));
        Assert.True(await MeasureAsync(other));

        // Its host sleeps ten minutes: its monotonic clock stops, its wall clock and PostgreSQL's go on.
        suspendedClock.Suspended(TenMinutes);
        Assert.False(Guard(suspended).AllowsClaims);   // its wall clock moved unlike its monotonic one

        // It cannot tell this from the database's clock stepping with its own: it holds and records nothing.
        Assert.False(await MeasureAsync(suspended));
        Assert.Equal(1, Logged(suspended, LogLevel.Warning, OwnClockMoved));
        Assert.Equal(0, LoggedTenMinuteStep(suspended));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks WHERE database_step_ms IS NOT NULL"));

        // Nothing marked, the other worker claims on; once it has measured twice since, the
        // suspended worker knows the database's clock did not step, and claims again.
        Assert.True(await MeasureAsync(other));
        Assert.False(await MeasureAsync(suspended));
        Assert.True(await MeasureAsync(other));
        Assert.True(await MeasureAsync(suspended));
        Assert.True(await MeasureAsync(other));
        Assert.Equal(0, LoggedTenMinuteStep(suspended));
        Assert.Equal(0, Logged(other, LogLevel.Information, "PostgreSQL's clock stepped lately"));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks WHERE abs(skew_ms) > 1000 OR database_step_ms IS NOT NULL"));
    }

    [Fact]
    public async Task A_worker_unsure_of_a_step_marks_it_on_a_slow_measurement_that_shows_no_step_since()
    {
        // PostgreSQL's clock stepped ten minutes forward a moment ago, and a running worker marked it.
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO worker_clocks (worker_id, host, measured_at, skew_ms, round_trip_ms, database_step_ms) VALUES ('other#1', 'h-other', clock_timestamp(), 0, 1, 600000) RETURNING 1");

        // A worker starting now holds at its first measurement (it cannot place it on a side of the
        // step); its next is slow, a loaded database, but shows no step since: it marks and claims.
        using var network = new SlowAnswersProxy(db.ConnectionString);
        await using var starting = new WorkerHarness(network.Through(db.ConnectionString), [WorkerHarness.Email()], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        Assert.False(await MeasureAsync(starting));
        network.AnswerDelay = TimeSpan.FromSeconds(2);
        var slow = (await Guard(starting).MeasureAsync(firstOnly: false, TestContext.Current.CancellationToken))!;
        network.AnswerDelay = TimeSpan.Zero;
        Assert.True(slow.RoundTrip > ClockSkewGuard.LongestRoundTrip, $"round trip {slow.RoundTrip}");
        Assert.True(Guard(starting).AllowsClaims);
        Assert.Equal(2, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(DISTINCT worker_id) FROM worker_clocks WHERE database_step_ms BETWEEN 599000 AND 601000"));
    }

    [Fact]
    public async Task A_worker_keeps_its_own_rows_while_a_step_of_the_database_clock_is_recently_marked()
    {
        await using var worker = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], new SkewedClock(TimeSpan.Zero), ProductionLimits());
        Assert.True(await MeasureAsync(worker));
        var name = await TestData.ScalarAsync<string>(db.DataSource, "SELECT worker_id FROM worker_clocks");
        // PostgreSQL's clock stepped ten minutes forward, another worker saw it and marked it; this
        // one has not measured since: its row's times are ten minutes early on the clock as it is
        // now, so its claims look ended while leases taken on it may be live.
        await TestData.ScalarAsync<long>(db.DataSource,
            "WITH s AS (UPDATE worker_clocks SET measured_at = measured_at - interval '10 minutes', claims_until = claims_until - interval '10 minutes' RETURNING 1) SELECT count(*) FROM s");
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO worker_clocks (worker_id, host, measured_at, skew_ms, round_trip_ms, database_step_ms) VALUES ('other#1', 'h-other', clock_timestamp(), 0, 1, 600000) RETURNING 1");

        await MeasureAsync(worker);

        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM worker_clocks WHERE worker_id = $1 AND claims_until < clock_timestamp()", name));
    }

    [Fact]
    public async Task Replicas_on_one_host_cast_one_vote_and_a_restarted_workers_previous_process_none()
    {
        await using var first = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], new SkewedClock(TenMinutes), ProductionLimits(("Dispatch:WorkerId", "w-1")), clockHost: "host-a");
        await using var second = new WorkerHarness(db.ConnectionString, [WorkerHarness.Email()], new SkewedClock(TenMinutes), ProductionLimits(), clockHost: "host-a");
        Assert.False(await MeasureAsync(first));
        Assert.False(await MeasureAsync(second));   // the replica beside it is its own host's clock again
        Assert.False(await MeasureAsync(first));
        Assert.Equal(1, Logged(first, LogLevel.Error, "and the clocks of 1 of the 1 live hosts"));

        // Rows of w-1's earlier processes, on its host and of a build that names no host: no vote.
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO worker_clocks (worker_id, host, measured_at, skew_ms, round_trip_ms) VALUES
                ('w-1#0ldproc0', 'host-a', clock_timestamp(), 600000, 1),
                ('w-1#0ldbuild', NULL, clock_timestamp(), 600000, 1)
            RETURNING 1
            """);
        Assert.False(await MeasureAsync(first));
        Assert.Equal("host-a", await TestData.ScalarAsync<string>(db.DataSource, "SELECT DISTINCT host FROM worker_clocks WHERE worker_id LIKE 'w-1#%' AND worker_id NOT LIKE 'w-1#0ld%'"));

        // Another host's worker of that build, on their clock: two of two hosts agree.
        await TestData.ScalarAsync<int>(db.DataSource, "INSERT INTO worker_clocks (worker_id, measured_at, skew_ms, round_trip_ms) VALUES ('w-2#0ldbuild', clock_timestamp(), 600000, 1) RETURNING 1");
        Assert.True(await MeasureAsync(first));
    }

    /// <summary>A worker on a clock the test moves, its check on at the production limit, whose database connections go through a proxy the test can make refuse them.</summary>
    private (FakeTimeProvider Time, RefusingProxy Database, WorkerHarness Worker) BehindRefusingProxy()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var database = new RefusingProxy(db.ConnectionString);
        return (time, database, new WorkerHarness(database.Through(db.ConnectionString) + ";Pooling=false", [WorkerHarness.Email()], time, ProductionLimits(("Dispatch:MaxClockSkew", "00:00:05"))));
    }

    [Fact]
    public async Task While_measurements_fail_the_worker_warns_at_the_first_then_at_most_once_a_minute_and_says_when_one_succeeds_again()
    {
        var ct = TestContext.Current.CancellationToken;
        var (time, database, worker) = BehindRefusingProxy();
        using var _ = database;
        await using var __ = worker;
        database.Refuse = true;

        // A minute of the guard's 5 s ticks, each measuring (nothing lets it claim) and failing.
        for (var tick = 0; tick <= 12; tick++)
        {
            await Guard(worker).TickAsync(ct);
            time.Advance(ClockSkewGuard.RecheckInterval);
        }
        Assert.Equal(1, Logged(worker, LogLevel.Warning, "did not succeed"));
        Assert.Equal(1, Logged(worker, LogLevel.Warning, "still does not succeed: 13 failures in a row"));
        Assert.Equal(2, worker.Logs.GetSnapshot().Count(r => r.Level >= LogLevel.Warning && r.Category!.EndsWith(nameof(ClockSkewGuard), StringComparison.Ordinal)));

        database.Refuse = false;
        await Guard(worker).TickAsync(ct);
        await Guard(worker).TickAsync(ct);
        Assert.Equal(1, Logged(worker, LogLevel.Information, "succeeds again, after 13 failures in a row"));
    }

    [Fact]
    public async Task A_decision_that_lapses_for_want_of_a_newer_one_is_said_once()
    {
        var ct = TestContext.Current.CancellationToken;
        var (time, database, worker) = BehindRefusingProxy();
        using var _ = database;
        await using var __ = worker;
        Assert.True(await MeasureAsync(worker));
        database.Refuse = true;

        time.Advance(ClockSkewGuard.Interval);
        await Guard(worker).TickAsync(ct);   // due: it measures, and fails
        time.Advance(TimeSpan.FromSeconds(29));
        await Guard(worker).TickAsync(ct);
        Assert.True(Guard(worker).AllowsClaims);
        Assert.Equal(0, Logged(worker, LogLevel.Warning, "last clock decision is older than"));

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(Guard(worker).AllowsClaims);
        await Guard(worker).TickAsync(ct);
        await Guard(worker).TickAsync(ct);
        Assert.Equal(1, Logged(worker, LogLevel.Warning, "last clock decision is older than"));
    }

    [Fact]
    public async Task A_shutdown_grace_too_short_for_the_derived_limit_turns_the_check_off_and_the_worker_says_why()
    {
        var (company, customer) = await CustomerAsync();
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email], new SkewedClock(TimeSpan.FromMinutes(10)), new() { ["Dispatch:ShutdownGrace"] = "00:00:01" });
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await worker.StartAsync();

        await WaitUntilAsync(async () => await StatusAsync(id) == "SENT", TimeSpan.FromSeconds(30), "the message to go");
        Assert.Equal(1, Logged(worker, LogLevel.Warning, "too short to leave the clock check room"));
        Assert.Equal(0, Logged(worker, LogLevel.Error, Skewed));
        Assert.Null(SkewGauge(worker));
    }

    [Theory]
    [InlineData(null, null, null, 5_000, true)]             // the defaults: a sixth of the 30 s grace, capped at 5 s: (5 s + 1 s) × 2 = 12 s
    [InlineData(null, "00:01:00", null, 1_667, true)]       // a short lease keeps a 10 s grace: a sixth of it
    [InlineData("00:00:04", null, null, 667, true)]         // the test harness's grace
    [InlineData("00:00:03.100", null, null, 517, true)]     // (0.517 s + 1 s) × 2 still under 3.1 s
    [InlineData("00:00:03", null, null, 0, true)]           // a sixth would leave no room for the 1 s error: off
    [InlineData("00:00:02", null, null, 0, true)]
    [InlineData("00:00:03", null, "00:00:00.400", 400, true)]   // set, it only needs the room itself
    [InlineData("00:00:03", null, "00:00:00.500", 500, false)]
    [InlineData(null, null, "0", 0, true)]                  // off
    [InlineData(null, null, "00:00:00", 0, true)]
    [InlineData(null, null, "00:00:13", 13_000, true)]      // two workers 28 s apart at worst: inside the 30 s grace
    [InlineData(null, null, "00:00:14", 14_000, false)]     // 30 s apart at worst: a send still running can be reclaimed
    [InlineData(null, "00:01:00", "00:00:05", 5_000, false)]
    [InlineData(null, null, "-00:00:01", -1_000, false)]
    public void DispatchOptions_MaxClockSkew_defaults_to_a_sixth_of_the_shutdown_grace_and_must_stay_under_half_of_it_less_the_measurement_error_and_an_unseen_step(string? grace, string? lease, string? maxClockSkew, int expectedMilliseconds, bool valid)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Dispatch:ShutdownGrace"] = grace,
            ["Dispatch:LeaseDuration"] = lease,
            ["Dispatch:MaxClockSkew"] = maxClockSkew,
        }.Where(s => s.Value is not null)).Build();
        var options = configuration.GetSection(DispatchOptions.Section).Get<DispatchOptions>() ?? new DispatchOptions();

        Assert.Equal(expectedMilliseconds, options.MaxClockSkew.TotalMilliseconds, 1.0);
        var errors = options.Validate(new ValidationContext(options)).ToList();
        if (valid)
        {
            Assert.Empty(errors);
        }
        else
        {
            Assert.Contains(errors, e => e.MemberNames.Contains(nameof(DispatchOptions.MaxClockSkew)));
        }
    }
}
