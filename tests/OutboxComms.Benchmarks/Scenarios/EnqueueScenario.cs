using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using OutboxComms.Benchmarks.Infrastructure;

namespace OutboxComms.Benchmarks.Scenarios;

/// <summary>
/// A business application enqueueing by plain SQL (the documented contract), with no worker
/// running: single-row INSERTs from 32 concurrent clients on a connection pool (each its own
/// transaction, as one row per business transaction would be), multi-row INSERT … SELECT FROM
/// unnest in batches of 1,000, and binary COPY. Plain Npgsql defaults (no explicit prepare),
/// durable commits.
/// </summary>
internal static class EnqueueScenario
{
    private const string Name = "Enqueue, plain SQL";
    private const int Clients = 32;
    private const int BatchRows = 1_000;

    public static async Task RunAsync(Bench bench)
    {
        await SingleRowAsync(bench, notify: true);
        // Diagnostic: the same without the NOTIFY trigger, to show what the per-commit
        // notification costs concurrent single-row producers (PostgreSQL serializes notifying commits).
        await bench.Db.ExecuteAsync("ALTER TABLE communication_logs DISABLE TRIGGER communication_logs_notify");
        try
        {
            await SingleRowAsync(bench, notify: false);
        }
        finally
        {
            await bench.Db.ExecuteAsync("ALTER TABLE communication_logs ENABLE TRIGGER communication_logs_notify");
        }
        await UnnestAsync(bench);
        await CopyAsync(bench);
        await bench.Db.ResetMessagesAsync();
    }

    private static async Task SingleRowAsync(Bench bench, bool notify)
    {
        var total = bench.Options.SingleRowInserts;
        var clients = bench.Practices.Clients;
        await bench.Db.ResetMessagesAsync();
        var window = await LoadWindow.StartAsync(bench.Db);
        var (rate, latency) = await ClosedLoop.RunAsync(Clients, total, async i =>
        {
            var row = Backlog.Row(clients, i, Mix.Mixed);
            await using var insert = bench.Db.DataSource.CreateCommand("""
                INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, template_key, template_data)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """);
            insert.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = row.CompanyId });
            insert.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = row.CustomerId });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = row.Type });
            insert.Parameters.Add(new NpgsqlParameter<string> { TypedValue = row.Channel });
            insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)row.Subject ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)row.Content ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)row.TemplateKey ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Jsonb, Value = row.TemplateData });
            await insert.ExecuteNonQueryAsync();
        });
        var usage = await window.StopAsync();
        var measure = $"single-row INSERT, {Clients} concurrent clients, one transaction each" + (notify ? "" : " — diagnostic: NOTIFY trigger disabled");
        bench.Report.Add(new ResultRow(Name, measure, $"{Stats.Count(rate)} rows/s",
            latency, "—", "", $"{Stats.Count(total)} rows; latency per INSERT. {usage.Describe(total, "row")}"));
    }

    private static async Task UnnestAsync(Bench bench)
    {
        var total = bench.Options.Rows;
        var clients = bench.Practices.Clients;
        await bench.Db.ResetMessagesAsync();
        var window = await LoadWindow.StartAsync(bench.Db);
        var (statements, latency) = await ClosedLoop.RunAsync(1, (total + BatchRows - 1) / BatchRows, async batch =>
        {
            var rows = new List<OutboxRow>(BatchRows);
            for (var i = batch * BatchRows; i < Math.Min(total, (batch + 1) * BatchRows); i++)
            {
                rows.Add(Backlog.Row(clients, i, Mix.Mixed));
            }
            await using var connection = await bench.Db.DataSource.OpenConnectionAsync();
            await using var insert = Backlog.UnnestInsert(connection, rows);
            await insert.ExecuteNonQueryAsync();
        });
        var usage = await window.StopAsync();
        bench.Report.Add(new ResultRow(Name, $"INSERT … SELECT FROM unnest, {Stats.Count(BatchRows)} rows per statement, 1 client", $"{Stats.Count(statements * BatchRows)} rows/s",
            latency, "—", "", $"{Stats.Count(total)} rows; latency per statement (includes building the arrays). {usage.Describe(total, "row")}"));
    }

    private static async Task CopyAsync(Bench bench)
    {
        var total = bench.Options.Rows;
        await bench.Db.ResetMessagesAsync();
        var clients = bench.Practices.Clients;
        await using var connection = await bench.Db.DataSource.OpenConnectionAsync();
        var window = await LoadWindow.StartAsync(bench.Db);
        var started = Stopwatch.GetTimestamp();
        await using (var writer = await connection.BeginBinaryImportAsync(
            "COPY communication_logs (company_id, customer_id, type, channel, subject, content, template_key, template_data) FROM STDIN (FORMAT BINARY)"))
        {
            writer.Timeout = TimeSpan.Zero;
            for (long i = 0; i < total; i++)
            {
                await writer.StartRowAsync();
                await Backlog.WriteAsync(writer, Backlog.Row(clients, i, Mix.Mixed));
            }
            await writer.CompleteAsync();
        }
        var elapsed = Stopwatch.GetElapsedTime(started);
        var usage = await window.StopAsync();
        bench.Report.Add(new ResultRow(Name, "binary COPY, one stream", $"{Stats.Count(total / elapsed.TotalSeconds)} rows/s",
            null, "—", "", $"{Stats.Count(total)} rows in one transaction. {usage.Describe(total, "row")}"));
    }
}
