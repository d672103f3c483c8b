using System.Diagnostics;
using Npgsql;
using OutboxComms.Benchmarks.Infrastructure;

namespace OutboxComms.Benchmarks.Scenarios;

/// <summary>
/// Insert → SENT with one worker process (no-op provider). Idle: one row at a time, with a pause
/// between rows so the worker is asleep on LISTEN each time and NOTIFY must wake it; the client
/// polls the row every millisecond and stops the clock when it sees SENT. Loaded: a paced producer
/// inserts at about half the worker's measured maximum; latency is the recorded completion time
/// minus the row's created_at, both taken on this machine's clock.
/// </summary>
internal static class LatencyScenario
{
    private const string Name = "Latency insert → SENT, 1 worker process, no-op provider";
    private const double IdleP99TargetMs = 25;

    public static async Task RunAsync(Bench bench)
    {
        await bench.Db.ResetMessagesAsync();
        await using (var fleet = bench.StartWorkers(1, "noop"))
        {
            await IdleAsync(bench, fleet);
            await LoadedAsync(bench, fleet);
        }
        await bench.Db.ResetMessagesAsync();
    }

    private static async Task IdleAsync(Bench bench, WorkerFleet fleet)
    {
        var client = bench.Practices.Clients[0];
        var warmUp = bench.Options.Smoke ? 5 : 20;
        var observed = new List<double>();
        var recorded = new List<double>();
        await using var connection = await bench.Db.DataSource.OpenConnectionAsync();
        await using var insert = new NpgsqlCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content)
            VALUES ($1, $2, 'INVOICE', 'EMAIL', 'Invoice INV-2026-000042', 'Dear client, your invoice INV-2026-000042 for INR 11,800.00 is attached.')
            RETURNING id, created_at
            """, connection);
        insert.Parameters.AddWithValue(client.CompanyId);
        insert.Parameters.AddWithValue(client.CustomerId);
        await using var poll = new NpgsqlCommand("SELECT status, updated_at FROM communication_logs WHERE company_id = $1 AND id = $2", connection);
        poll.Parameters.AddWithValue(client.CompanyId);
        var id = new NpgsqlParameter<long>();
        poll.Parameters.Add(id);

        for (var sample = 0; sample < warmUp + bench.Options.IdleLatencySamples; sample++)
        {
            // Long enough for the worker to finish its batch and go back to waiting for NOTIFY.
            await Task.Delay(Random.Shared.Next(10, 30));
            var started = Stopwatch.GetTimestamp();
            DateTimeOffset created;
            await using (var reader = await insert.ExecuteReaderAsync())
            {
                await reader.ReadAsync();
                id.TypedValue = reader.GetInt64(0);
                created = reader.GetFieldValue<DateTimeOffset>(1);
            }
            var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30;
            while (true)
            {
                await using var reader = await poll.ExecuteReaderAsync();
                await reader.ReadAsync();
                if (reader.GetString(0) != "PENDING")
                {
                    if (sample >= warmUp)
                    {
                        observed.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                        recorded.Add((reader.GetFieldValue<DateTimeOffset>(1) - created).TotalMilliseconds);
                    }
                    break;
                }
                if (Stopwatch.GetTimestamp() > deadline)
                {
                    fleet.ThrowIfExited();
                    throw new TimeoutException($"message {id.TypedValue} was not sent within 30 s by an idle worker");
                }
                await Task.Delay(1);
            }
        }
        var latency = Stats.Of(observed);
        var db = Stats.Of(recorded);
        bench.Report.Add(new ResultRow(Name, $"idle: one row at a time (LISTEN/NOTIFY wake-up), {Stats.Count(latency.Count)} samples", $"p99 {Stats.Ms(latency.P99)}", latency,
            "p99 ≤ 25 ms", bench.Report.Verdict(latency.P99, IdleP99TargetMs, higherIsBetter: false),
            $"seen by a client polling every 1 ms (max {Stats.Ms(latency.Max)}); recorded completion − created_at: p50 {Stats.Ms(db.P50)}, p99 {Stats.Ms(db.P99)}"));
    }

    private static async Task LoadedAsync(Bench bench, WorkerFleet fleet)
    {
        var max = bench.OneWorkerNoOpRate is { } measured && !double.IsNaN(measured) ? measured : await CalibrateAsync(bench, fleet);
        var rate = max / 2;
        var duration = bench.Options.LoadedLatencyDuration;
        // Not counted: the first seconds at this pace, while the worker (warm only from one-row
        // batches of the idle run) compiles its many-row paths — on a slow host the backlog this
        // builds took 5 s to drain (see the by-second table), which is startup, not steady latency.
        var warmUp = TimeSpan.FromSeconds(bench.Options.Smoke ? 1 : 10);
        var clients = bench.Practices.Clients;
        await bench.Db.ResetMessagesAsync();

        await using var connection = await bench.Db.DataSource.OpenConnectionAsync();
        await bench.Db.ResetStatementStatsAsync();
        var window = await LoadWindow.StartAsync(bench.Db, fleet);
        await using var horizon = HorizonSampler.Start(bench.Db);
        var since = DateTimeOffset.UtcNow;
        var started = Stopwatch.GetTimestamp();
        long produced = 0;
        var statements = 0;
        // Every 10 ms, insert what the pace asks for so far: one statement, the way a busy
        // application's many small transactions would add up, without needing 1,000 connections.
        using (var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10)))
        {
            while (Stopwatch.GetElapsedTime(started) < warmUp + duration && await timer.WaitForNextTickAsync())
            {
                var due = (long)(rate * Stopwatch.GetElapsedTime(started).TotalSeconds) - produced;
                if (due <= 0)
                {
                    continue;
                }
                var rows = new List<OutboxRow>((int)due);
                for (var i = produced; i < produced + due; i++)
                {
                    rows.Add(Backlog.Row(clients, i, Mix.Mixed));
                }
                await using var insert = Backlog.UnnestInsert(connection, rows);
                await insert.ExecuteNonQueryAsync();
                produced += due;
                statements++;
            }
        }
        var producedFor = Stopwatch.GetElapsedTime(started);
        // Whether the worker kept up: at this pace a backlog of more than a second's worth means it did not.
        var backlogAtEnd = await bench.Db.ScalarAsync<long>("SELECT count(*) FROM communication_logs WHERE status = 'PENDING'");
        var drained = await Drain.WaitAsync(bench.Db, TimeSpan.FromMinutes(2), fleet);
        var usage = await window.StopAsync();
        var held = await horizon.StopAsync();

        Percentiles latency;
        await using (var command = bench.Db.DataSource.CreateCommand("""
            SELECT count(*), percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms)
              FROM (SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms
                      FROM communication_logs WHERE created_at >= $1 AND status = 'SENT') sent
            """))
        {
            command.Parameters.AddWithValue((since + warmUp).ToUniversalTime());
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            var p = reader.IsDBNull(1) ? [double.NaN, double.NaN, double.NaN] : reader.GetFieldValue<double[]>(1);
            latency = new Percentiles((int)reader.GetInt64(0), p[0], p[1], p[2], reader.IsDBNull(2) ? double.NaN : (double)reader.GetDecimal(2));
        }
        bench.Report.Detail("Loaded latency: top statements (pg_stat_statements, server time)", await bench.Db.TopStatementsAsync());
        bench.Report.Detail("Loaded latency by second of insertion (stalls show up here)", await BySecondAsync(bench, since));
        bench.Report.Detail("Loaded latency: what held the xmin horizon back or vacuumed meanwhile (sampled every 500 ms)", held);
        var achieved = produced / producedFor.TotalSeconds;
        bench.Report.Add(new ResultRow(Name, $"paced producer at ½ of the measured 1-process maximum ({Stats.Count(max)} msg/s)", $"{Stats.Count(achieved)} msg/s offered", latency,
            "—", "", $"{Stats.Count(produced)} rows in {Stats.Count(statements)} INSERTs over {Stats.Fixed(producedFor.TotalSeconds, "0")} s, first {Stats.Fixed(warmUp.TotalSeconds, "0")} s not counted; recorded completion − created_at; max {Stats.Ms(latency.Max)}; {Stats.Count(backlogAtEnd)} rows pending when the producer stopped"
            + (backlogAtEnd > rate ? " (THE WORKER DID NOT KEEP UP: the box had less capacity than when the maximum was measured)" : "")
            + (drained ? "" : "; TIMED OUT draining") + $". {usage.Describe(produced, "msg")}"));
    }

    private static async Task<string> BySecondAsync(Bench bench, DateTimeOffset since)
    {
        var table = new System.Text.StringBuilder("| second | rows | p50 | max |\n| ---: | ---: | ---: | ---: |\n");
        await using var command = bench.Db.DataSource.CreateCommand("""
            SELECT floor(extract(epoch FROM created_at - $1))::int AS second, count(*),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at) * 1000),
                   max(extract(epoch FROM updated_at - created_at) * 1000)::float8
              FROM communication_logs WHERE created_at >= $1 AND status = 'SENT'
             GROUP BY 1 ORDER BY 1
            """);
        command.Parameters.AddWithValue(since.ToUniversalTime());
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            table.AppendLine($"| {reader.GetInt32(0)} | {Stats.Count(reader.GetInt64(1))} | {Stats.Ms(reader.GetDouble(2))} | {Stats.Ms(reader.GetDouble(3))} |");
        }
        return table.ToString().TrimEnd();
    }

    /// <summary>When the dispatch scenario did not run: the steady rate of this one worker on a backlog.</summary>
    private static async Task<double> CalibrateAsync(Bench bench, WorkerFleet fleet)
    {
        await bench.Db.ResetMessagesAsync();
        var since = DateTimeOffset.UtcNow;
        await Backlog.FillAsync(bench.Db, bench.Practices.Clients, Math.Max(1_000, bench.Options.Rows / 2), Mix.Mixed);
        await Drain.WaitAsync(bench.Db, TimeSpan.FromMinutes(5), fleet);
        var rate = (await Drain.ResultAsync(bench.Db, since)).SteadyRate;
        Console.Out.WriteLine($"  (calibrated the 1-process maximum: {Stats.Count(rate)} msg/s)");
        return rate;
    }
}
