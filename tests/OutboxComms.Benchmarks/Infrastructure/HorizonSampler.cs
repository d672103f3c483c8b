using System.Text;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// Samples, twice a second on its own connection, what could make claims wade through dead index
/// entries: transactions older than a second that hold the xmin horizon back (whose snapshots keep
/// completed rows' old versions alive, so scans cannot mark their index entries dead), vacuum and
/// analyze runs in progress, and the table's dead-tuple count. A diagnostic for the loaded-latency
/// stall; it reports only the samples where something was going on.
/// </summary>
internal sealed class HorizonSampler : IAsyncDisposable
{
    private const string Sql = """
        SELECT to_char(now(), 'HH24:MI:SS.MS'),
               (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'communication_logs'),
               (SELECT string_agg(format('%s pid %s %s for %s s: %s', coalesce(nullif(backend_type, 'client backend'), 'client'), pid, state,
                                         round(extract(epoch FROM now() - xact_start)::numeric, 1), left(regexp_replace(query, '\s+', ' ', 'g'), 60)), '; ')
                  FROM pg_stat_activity
                 WHERE backend_xmin IS NOT NULL AND xact_start < now() - interval '1 second' AND pid <> pg_backend_pid()),
               (SELECT string_agg(format('vacuum %s (%s)', relid::regclass, phase), '; ') FROM pg_stat_progress_vacuum),
               (SELECT string_agg(format('analyze %s (%s)', relid::regclass, phase), '; ') FROM pg_stat_progress_analyze)
        """;

    private readonly CancellationTokenSource stop = new();
    private readonly Task<List<string>> sampling;

    private HorizonSampler(BenchDatabase db) => sampling = SampleAsync(db, stop.Token);

    public static HorizonSampler Start(BenchDatabase db) => new(db);

    /// <summary>The samples where a transaction held the horizon for over a second or vacuum/analyze ran, as a markdown table.</summary>
    public async Task<string> StopAsync()
    {
        await stop.CancelAsync();
        var rows = await sampling;
        if (rows.Count == 0)
        {
            return "(nothing held the xmin horizon for more than a second, and no vacuum or analyze ran)";
        }
        var table = new StringBuilder("| time | dead tuples | held the horizon > 1 s | vacuum / analyze |\n| --- | ---: | --- | --- |\n");
        foreach (var row in rows)
        {
            table.AppendLine(row);
        }
        return table.ToString().TrimEnd();
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        try
        {
            await sampling;
        }
        catch (Exception)
        {
            // Already reported through StopAsync, or nothing to report.
        }
        stop.Dispose();
    }

    private static async Task<List<string>> SampleAsync(BenchDatabase db, CancellationToken cancellationToken)
    {
        var rows = new List<string>();
        await using var connection = await db.DataSource.OpenConnectionAsync(cancellationToken);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                await using var command = connection.CreateCommand();
                command.CommandText = Sql;
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                var holders = reader.IsDBNull(2) ? null : reader.GetString(2);
                var maintenance = string.Join("; ", new[] { 3, 4 }.Where(i => !reader.IsDBNull(i)).Select(reader.GetString));
                if (holders is not null || maintenance.Length > 0)
                {
                    rows.Add($"| {reader.GetString(0)} | {(reader.IsDBNull(1) ? "" : Stats.Count(reader.GetInt64(1)))} | {holders?.Replace("|", "\\|", StringComparison.Ordinal)} | {maintenance} |");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        return rows;
    }
}
