using OutboxComms.Benchmarks.Infrastructure;

namespace OutboxComms.Benchmarks.Scenarios;

/// <summary>
/// The full pipeline (claim → consent, quiet hours, frequency → Scriban render → send → record
/// status, attempt, reminder time) from a pre-filled backlog, with 1, 2 and 4 worker processes:
/// once with a no-op provider (our machinery alone) and once with the real WhatsApp Cloud API
/// client against a fake API on loopback. Twice per process count: from launching the worker
/// processes (their startup and JIT included) until the last outcome is recorded, and then, with
/// the same processes warm, on a second backlog that appears at once.
/// </summary>
internal static class DispatchScenario
{
    public const double NoOpTarget = 50_000;

    public static async Task RunAsync(Bench bench)
    {
        if (bench.Options.Providers.Contains("noop"))
        {
            await RunProviderAsync(bench, "noop", api: null);
        }
        if (bench.Options.Providers.Contains("whatsapp"))
        {
            await using var api = await FakeWhatsAppApi.StartAsync();
            await RunProviderAsync(bench, "whatsapp", api);
            await Practices.UseWhatsAppEndpointAsync(bench.Db, null);
        }
        await bench.Db.ResetMessagesAsync();
    }

    private static async Task RunProviderAsync(Bench bench, string provider, FakeWhatsAppApi? api)
    {
        var rows = bench.Options.Rows;
        await Practices.UseWhatsAppEndpointAsync(bench.Db, api?.BaseUrl);
        var scenario = api is null ? "Dispatch, no-op provider" : "Dispatch, WhatsApp Cloud API client → fake API on loopback";
        foreach (var workers in bench.Options.WorkerCounts)
        {
            await bench.Db.ResetMessagesAsync();
            await Backlog.FillAsync(bench.Db, bench.Practices.Clients, rows, api is null ? Mix.Mixed : Mix.WhatsAppOnly);
            await bench.Db.SettleAsync();
            await bench.Db.ResetStatementStatsAsync();

            var window = await LoadWindow.StartAsync(bench.Db);
            var launched = DateTimeOffset.UtcNow;
            var requestsBefore = api?.Requests ?? 0;
            await using var fleet = bench.StartWorkers(workers, provider);
            window.Track(fleet);
            var cold = await MeasureAsync(bench, fleet, window, launched, api, requestsBefore);
            if (api is null && workers == 1)
            {
                bench.OneWorkerNoOpRate = cold.Result.SteadyRate;
            }
            Add(bench, scenario, api, workers, rows, cold, "from launch");

            // Warm: the same processes, past their JIT, on a second backlog of the same size that
            // appears all at once (one COPY transaction, committed once the clock runs), as a
            // long-running worker meets a burst. Not vacuumed first: the workers start at commit.
            await bench.Db.ResetMessagesAsync();
            await bench.Db.ExecuteAsync("CHECKPOINT");
            await using (var connection = await bench.Db.DataSource.OpenConnectionAsync())
            await using (var transaction = await connection.BeginTransactionAsync())
            {
                await Backlog.FillAsync(connection, bench.Practices.Clients, rows, api is null ? Mix.Mixed : Mix.WhatsAppOnly);
                await bench.Db.ResetStatementStatsAsync();
                window = await LoadWindow.StartAsync(bench.Db, fleet);
                launched = DateTimeOffset.UtcNow;
                requestsBefore = api?.Requests ?? 0;
                await transaction.CommitAsync();
            }
            var warm = await MeasureAsync(bench, fleet, window, launched, api, requestsBefore);
            Add(bench, scenario, api, workers, rows, warm, "warm");
            if (workers == bench.Options.WorkerCounts.Max())
            {
                bench.Report.Detail($"{scenario}, {workers} worker processes, warm: top statements (pg_stat_statements, server time)", await bench.Db.TopStatementsAsync());
            }
        }
    }

    private sealed record Measured(DrainResult Result, TimeSpan Elapsed, bool Drained, long Rss, long ApiCalls, LoadUsage Usage);

    /// <summary>
    /// Waits for the fleet to drain the outbox and reads what it recorded since <paramref name="since"/>
    /// (and the fake API's calls since <paramref name="requestsBefore"/>, both taken before the work could start).
    /// </summary>
    private static async Task<Measured> MeasureAsync(Bench bench, WorkerFleet fleet, LoadWindow window, DateTimeOffset since, FakeWhatsAppApi? api, long requestsBefore)
    {
        var drained = await Drain.WaitAsync(bench.Db, TimeSpan.FromMinutes(bench.Options.Smoke ? 2 : 10), fleet);
        var rss = fleet.Rss().Max();
        var usage = await window.StopAsync();
        var result = await Drain.ResultAsync(bench.Db, since);
        var elapsed = (result.Last ?? DateTimeOffset.UtcNow) - since;
        return new Measured(result, elapsed, drained, rss, (api?.Requests ?? 0) - requestsBefore, usage);
    }

    private static void Add(Bench bench, string scenario, FakeWhatsAppApi? api, int workers, long rows, Measured m, string phase)
    {
        var rate = m.Result.Processed / m.Elapsed.TotalSeconds;
        var notes = $"{Stats.Count(m.Result.Sent)} of {Stats.Count(rows)} SENT in {Stats.Fixed(m.Elapsed.TotalSeconds, "0.0")} s"
            + (m.Drained ? "" : " (TIMED OUT before the backlog drained)")
            + $"; steady (10–90 % of completions) {Stats.Count(m.Result.SteadyRate)} msg/s; worker RSS when drained {Stats.Mb(m.Rss)}"
            + (api is null ? "" : $"; {Stats.Count(m.ApiCalls)} API calls")
            + (m.Result.Problems.Length > 0 ? $"; not sent: {m.Result.Problems}" : "")
            + $". {m.Usage.Describe(m.Result.Processed, "msg")}";
        bench.Report.Add(new ResultRow(scenario, $"{workers} worker process{(workers == 1 ? "" : "es")}, backlog {Stats.Count(rows)}, {phase}", $"{Stats.Count(rate)} msg/s",
            null, api is null ? "≥ 50,000 msg/s" : "—", api is null ? bench.Report.Verdict(rate, NoOpTarget, higherIsBetter: true) : "", notes));
    }
}
