using System.ComponentModel.DataAnnotations;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
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
    /// The production defaults where the harness shortens them: its 2 s shutdown grace would make the
    /// default limit a third of a second; production's 30 s makes it 5 s.
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
        // The harness's 2 s shutdown grace makes the default limit a third of a second.
        await using var worker = new WorkerHarness(network.Through(db.ConnectionString), [email], new SkewedClock(TimeSpan.Zero));
        var guard = worker.Services.GetRequiredService<ClockSkewGuard>();
        var first = (await guard.MeasureAsync(firstOnly: false, TestContext.Current.CancellationToken))!;
        Assert.True(guard.AllowsClaims);

        network.AnswerDelay = TimeSpan.FromSeconds(2);
        var slow = (await guard.MeasureAsync(firstOnly: false, TestContext.Current.CancellationToken))!;
        network.AnswerDelay = TimeSpan.Zero;

        // What a guard trusting it would have believed: answers held on their way back make this
        // clock look a second ahead, three times the limit.
        Assert.True(slow.RoundTrip > ClockSkewGuard.LongestRoundTrip, $"round trip {slow.RoundTrip}");
        Assert.True(slow.Skew > TimeSpan.FromSeconds(0.5), $"skew {slow.Skew}");
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
    [InlineData(null, null, null, 5_000, true)]             // the defaults: a sixth of the 30 s grace, capped at 5 s
    [InlineData(null, "00:01:00", null, 1_667, true)]       // a short lease keeps a 10 s grace: a sixth of it
    [InlineData("00:00:02", null, null, 333, true)]         // the test harness's grace
    [InlineData("00:00:01.600", null, null, 267, true)]     // (0.267 s + 0.5 s) × 2 still under 1.6 s
    [InlineData("00:00:01.500", null, null, 0, true)]       // a sixth would leave no room for the 0.5 s error: off
    [InlineData("00:00:01", null, null, 0, true)]
    [InlineData("00:00:01.500", null, "00:00:00.200", 200, true)]   // set, it only needs the room itself
    [InlineData("00:00:01.500", null, "00:00:00.250", 250, false)]
    [InlineData(null, null, "0", 0, true)]                  // off
    [InlineData(null, null, "00:00:00", 0, true)]
    [InlineData(null, null, "00:00:14", 14_000, true)]      // two workers 28 s apart: inside the 30 s grace
    [InlineData(null, null, "00:00:15", 15_000, false)]     // 30 s apart: a send still running can be reclaimed
    [InlineData(null, "00:01:00", "00:00:05", 5_000, false)]
    [InlineData(null, null, "-00:00:01", -1_000, false)]
    public void DispatchOptions_MaxClockSkew_defaults_to_a_sixth_of_the_shutdown_grace_and_must_stay_under_half_of_it_less_the_measurement_error(string? grace, string? lease, string? maxClockSkew, int expectedMilliseconds, bool valid)
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
