using OutboxComms.Benchmarks.Infrastructure;

namespace OutboxComms.Benchmarks.Scenarios;

/// <summary>
/// The full pipeline (claim → consent, quiet hours, frequency → Scriban render → send → record
/// status, attempt, reminder time) from a pre-filled backlog, with 1, 2 and 4 worker processes:
/// once with a no-op provider (our machinery alone) and once with the real WhatsApp Cloud API
/// client against a fake API on loopback. The clock runs from launching the worker processes
/// (their startup included) until the last outcome is recorded.
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
            var requestsBefore = api?.Requests ?? 0;

            var window = await LoadWindow.StartAsync(bench.Db);
            var launched = DateTimeOffset.UtcNow;
            bool drained;
            LoadUsage usage;
            long rss;
            await using (var fleet = bench.StartWorkers(workers, provider))
            {
                window.Track(fleet);
                drained = await Drain.WaitAsync(bench.Db, TimeSpan.FromMinutes(bench.Options.Smoke ? 2 : 10), fleet);
                rss = fleet.Rss().Max();
                usage = await window.StopAsync();
            }
            var result = await Drain.ResultAsync(bench.Db, launched);
            var elapsed = (result.Last ?? DateTimeOffset.UtcNow) - launched;
            var rate = result.Processed / elapsed.TotalSeconds;
            if (api is null && workers == 1)
            {
                bench.OneWorkerNoOpRate = result.SteadyRate;
            }

            var notes = $"{Stats.Count(result.Sent)} of {Stats.Count(rows)} SENT in {Stats.Fixed(elapsed.TotalSeconds, "0.0")} s"
                + (drained ? "" : " (TIMED OUT before the backlog drained)")
                + $"; steady (10–90 % of completions) {Stats.Count(result.SteadyRate)} msg/s; worker RSS when drained {Stats.Mb(rss)}"
                + (api is null ? "" : $"; {Stats.Count(api.Requests - requestsBefore)} API calls")
                + (result.Problems.Length > 0 ? $"; not sent: {result.Problems}" : "")
                + $". {usage.Describe(result.Processed, "msg")}";
            bench.Report.Add(new ResultRow(scenario, $"{workers} worker process{(workers == 1 ? "" : "es")}, backlog {Stats.Count(rows)}", $"{Stats.Count(rate)} msg/s",
                null, api is null ? "≥ 50,000 msg/s" : "—", api is null ? bench.Report.Verdict(rate, NoOpTarget, higherIsBetter: true) : "", notes));
            if (workers == bench.Options.WorkerCounts.Max())
            {
                bench.Report.Detail($"{scenario}, {workers} worker processes: top statements (pg_stat_statements, server time)", await bench.Db.TopStatementsAsync());
            }
        }
    }
}
