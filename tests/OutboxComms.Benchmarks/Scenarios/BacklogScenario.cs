using System.Diagnostics;
using System.Text;
using Npgsql;
using OutboxComms.Benchmarks.Infrastructure;
using OutboxComms.Core.Messages;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Benchmarks.Scenarios;

/// <summary>
/// A large backlog: 5 × rows PENDING (1,000,000 by default), half of them deferred one to nine
/// hours ahead as quiet hours leave them. Shows the claim's plan (it must be a range scan of the
/// partial index ix_communication_logs_due), times the production claim (OutboxStore.ClaimAsync)
/// from a client, each claim followed by recording that batch as sent the way a worker does, and
/// watches one real worker process's memory while it drains a slice.
/// </summary>
internal static class BacklogScenario
{
    private const double ClaimP99TargetMs = 10;
    private const long RssTargetBytes = 300L * 1024 * 1024;
    private const string ClaimerId = "bench-claimer";

    public static async Task RunAsync(Bench bench)
    {
        var total = bench.Options.BacklogRows;
        var scenario = $"Backlog {Stats.Count(total)} PENDING, half deferred";
        await bench.Db.ResetMessagesAsync();
        var fill = Stopwatch.GetTimestamp();
        await Backlog.FillAsync(bench.Db, bench.Practices.Clients, total, Mix.Mixed, deferredShare: 0.5);
        await bench.Db.SettleAsync();
        Console.Out.WriteLine($"  (filled and vacuumed {Stats.Count(total)} rows in {Stats.Fixed(Stopwatch.GetElapsedTime(fill).TotalSeconds, "0")} s)");

        // The workers' batch size: the default, or Dispatch__BatchSize when the run sets it (as it does for the workers).
        var batchSize = int.TryParse(Environment.GetEnvironmentVariable("Dispatch__BatchSize"), System.Globalization.CultureInfo.InvariantCulture, out var configured)
            ? configured
            : new DispatchOptions().BatchSize;
        var plan = await ExplainClaimAsync(bench.Db, batchSize);
        var usesIndex = plan.Contains("ix_communication_logs_due", StringComparison.Ordinal);
        bench.Report.Detail($"Claim plan with {Stats.Count(total)} PENDING rows (EXPLAIN (ANALYZE, BUFFERS), rolled back)", "```\n" + plan + "\n```");

        // Claims timed from the client, as a worker sees them: round trip included.
        var store = new OutboxStore(bench.Db.DataSource);
        var claims = new List<double>();
        // Leave at least half of the due rows for the worker that drains a slice next.
        var timedClaims = (int)Math.Min(bench.Options.TimedClaims, total / 2 / batchSize / 2);
        for (var i = 0; i < timedClaims; i++)
        {
            var started = Stopwatch.GetTimestamp();
            var claimed = await store.ClaimAsync(ClaimerId, batchSize, DateTimeOffset.UtcNow, TimeSpan.FromMinutes(2), CancellationToken.None);
            claims.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            await store.CompleteAsync(ClaimerId, [.. claimed.Select(Sent)], DateTimeOffset.UtcNow, CancellationToken.None);
        }
        var latency = Stats.Of(claims);
        var half = claims.Count / 2;
        bench.Report.Add(new ResultRow(scenario, $"claim {batchSize} rows (OutboxStore.ClaimAsync), {Stats.Count(claims.Count)} claims, each batch then recorded as sent",
            $"p99 {Stats.Ms(latency.P99)}", latency, "p99 ≤ 10 ms", bench.Report.Verdict(latency.P99, ClaimP99TargetMs, higherIsBetter: false),
            $"client-timed (round trip included); p99 of the first half {Stats.Ms(Stats.Of(claims.Take(half)).P99)}, of the second half {Stats.Ms(Stats.Of(claims.Skip(half)).P99)}; "
            + (usesIndex ? "plan: index range scan on the partial index ix_communication_logs_due (see details)" : "PLAN DOES NOT USE ix_communication_logs_due (see details)")));

        await RssWhileDrainingAsync(bench, scenario);
        bench.Report.Detail($"Claim plan after draining a slice of the {Stats.Count(total)}-row backlog", "```\n" + await ExplainClaimAsync(bench.Db, batchSize) + "\n```");
        await bench.Db.ResetMessagesAsync();
    }

    private static async Task RssWhileDrainingAsync(Bench bench, string scenario)
    {
        await bench.Db.ResetStatementStatsAsync();
        var samples = new List<(double Seconds, long Bytes)>();
        var since = DateTimeOffset.UtcNow;
        var window = await LoadWindow.StartAsync(bench.Db);
        LoadUsage usage;
        await using (var fleet = bench.StartWorkers(1, "noop"))
        {
            window.Track(fleet);
            var started = Stopwatch.GetTimestamp();
            while (Stopwatch.GetElapsedTime(started) < bench.Options.RssDrainDuration)
            {
                await Task.Delay(250);
                fleet.ThrowIfExited();
                samples.Add((Stopwatch.GetElapsedTime(started).TotalSeconds, fleet.Rss()[0]));
            }
            usage = await window.StopAsync();
        }
        var processed = (await Drain.ResultAsync(bench.Db, since)).Processed;
        var settled = samples.Where(s => s.Seconds >= 5).DefaultIfEmpty(samples[^1]).ToList();
        var max = samples.Max(s => s.Bytes);
        var server = await bench.Db.ClaimStatementStatsAsync();
        bench.Report.Add(new ResultRow(scenario, $"worker RSS while draining, 1 process, {Stats.Fixed(bench.Options.RssDrainDuration.TotalSeconds, "0")} s",
            $"max {Stats.Mb(max)}", null, "< 300 MB", bench.Report.Verdict(max, RssTargetBytes, higherIsBetter: false),
            $"RSS at 5 s {Stats.Mb(settled[0].Bytes)}, at the end {Stats.Mb(samples[^1].Bytes)}; {Stats.Count(processed)} messages processed ({Stats.Count(processed / usage.Elapsed.TotalSeconds)} msg/s)"
            + (server is { } s ? $"; worker's claims server-side: {Stats.Count(s.Calls)} calls, mean {Stats.Ms(s.MeanMs)}, max {Stats.Ms(s.MaxMs)}" : "")
            + $". {usage.Describe(processed, "msg")}"));
    }

    /// <summary>What a worker records for a message the provider accepted, batch-completed exactly as the dispatcher does.</summary>
    private static Completion Sent(ClaimedMessage message)
    {
        var now = DateTimeOffset.UtcNow;
        var channel = message.Channel is Channel.Email or Channel.WhatsApp ? message.Channel : Channel.Email;
        var provider = channel == Channel.Email ? "SMTP" : "WHATSAPP_BUSINESS_API";
        return new Completion(message.Id, message.CompanyId, DeliveryStatus.Sent, channel)
        {
            RequestedChannel = message.Channel == channel ? null : message.Channel,
            NextAttemptAt = now,
            RetryCount = message.RetryCount,
            AttemptCount = message.AttemptCount + 1,
            ProviderName = provider,
            ProviderMessageId = $"bench-{message.Id}",
            SentAt = now,
            Cost = 0.05m,
            CostCurrency = "INR",
            Attempt = new AttemptRecord(message.CompanyId, message.AttemptCount + 1, now, channel, provider, AttemptOutcome.Sent, null, 0),
        };
    }

    private static async Task<string> ExplainClaimAsync(BenchDatabase db, int batchSize)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var ordered = new NpgsqlCommand(OutboxStore.OrderedScanSql, connection, transaction))
        {
            await ordered.ExecuteNonQueryAsync();
        }
        await using var explain = new NpgsqlCommand("EXPLAIN (ANALYZE, BUFFERS) " + OutboxStore.ClaimSql, connection, transaction);
        var now = DateTimeOffset.UtcNow;
        explain.Parameters.Add(new NpgsqlParameter<string> { TypedValue = "bench-explain" });
        explain.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.AddMinutes(2) });
        explain.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
        explain.Parameters.Add(new NpgsqlParameter<int> { TypedValue = batchSize });
        var plan = new StringBuilder();
        await using (var reader = await explain.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                plan.AppendLine(reader.GetString(0));
            }
        }
        await transaction.RollbackAsync();
        return plan.ToString().TrimEnd();
    }
}
