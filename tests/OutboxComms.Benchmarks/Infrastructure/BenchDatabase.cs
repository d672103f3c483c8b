using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OutboxComms.Core.Data;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// The benchmark's own database on the given server: created fresh, migrated with the production
/// migrator, with pg_stat_statements when the server preloads it. Messages are truncated between
/// scenarios; companies, customers and templates stay.
/// </summary>
internal sealed class BenchDatabase : IAsyncDisposable
{
    public const string Name = "outbox_bench";

    private BenchDatabase(string connectionString, bool statements, int? postmasterPid)
    {
        ConnectionString = connectionString;
        DataSource = NpgsqlDataSource.Create(connectionString);
        HasStatementStats = statements;
        PostmasterPid = postmasterPid;
    }

    public string ConnectionString { get; }

    public NpgsqlDataSource DataSource { get; }

    public bool HasStatementStats { get; }

    /// <summary>The PostgreSQL server process, when it runs on this machine (for CPU accounting).</summary>
    public int? PostmasterPid { get; }

    public static async Task<BenchDatabase> CreateAsync(string adminConnectionString)
    {
        var admin = new NpgsqlConnectionStringBuilder(adminConnectionString) { Pooling = false };
        await using (var connection = new NpgsqlConnection(admin.ConnectionString))
        {
            await connection.OpenAsync();
            await Execute(connection, $"DROP DATABASE IF EXISTS {Name} WITH (FORCE)");
            await Execute(connection, $"CREATE DATABASE {Name}");
        }
        var connectionString = new NpgsqlConnectionStringBuilder(adminConnectionString) { Database = Name, Pooling = true, MaxPoolSize = 100 }.ConnectionString;
        bool statements;
        int? postmaster;
        await using (var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString))
        {
            await connection.OpenAsync();
            statements = await Scalar<bool>(connection, "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'");
            if (statements)
            {
                await Execute(connection, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
            }
            // The backend's parent is the postmaster, if the server runs here and /proc shows it.
            postmaster = ProcFs.ParentOf(connection.ProcessID) is { } parent and > 1 ? parent : null;
        }
        await using (var migrate = NpgsqlDataSource.Create(connectionString))
        {
            await new SchemaMigrator(migrate, NullLogger<SchemaMigrator>.Instance).ApplyAsync(CancellationToken.None);
        }
        return new BenchDatabase(connectionString, statements, postmaster);
    }

    public async Task<string> ServerVersionAsync() =>
        await ScalarAsync<string>("SELECT split_part(version(), ' on ', 1) || ' (' || current_setting('server_version') || ')'");

    /// <summary>Empties the outbox and everything hanging off it.</summary>
    public Task ResetMessagesAsync() =>
        ExecuteAsync("TRUNCATE communication_logs, communication_attachments, communication_attempts, reminder_frequency_state RESTART IDENTITY");

    /// <summary>
    /// After seeding a backlog: fresh statistics and visibility map (as autovacuum would soon
    /// give), and a checkpoint, so the seed's own writes do not land in the measurement.
    /// </summary>
    public async Task SettleAsync()
    {
        await ExecuteAsync("VACUUM ANALYZE communication_logs");
        await ExecuteAsync("CHECKPOINT");
    }

    public async Task ResetStatementStatsAsync()
    {
        if (HasStatementStats)
        {
            await ExecuteAsync("SELECT pg_stat_statements_reset()");
        }
    }

    /// <summary>The statements that took the most server time since the last reset, as a markdown table.</summary>
    public async Task<string> TopStatementsAsync(int limit = 8)
    {
        if (!HasStatementStats)
        {
            return "(pg_stat_statements is not preloaded on this server)";
        }
        await using var command = DataSource.CreateCommand("""
            SELECT calls, total_exec_time, mean_exec_time, max_exec_time, rows, shared_blks_hit + shared_blks_read, wal_bytes,
                   left(regexp_replace(query, '\s+', ' ', 'g'), 110)
              FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY total_exec_time DESC
             LIMIT $1
            """);
        command.Parameters.AddWithValue(limit);
        var text = new StringBuilder();
        text.AppendLine("| calls | total ms | mean ms | max ms | rows | buffers | WAL bytes | statement |");
        text.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            text.AppendLine($"| {Stats.Count(reader.GetInt64(0))} | {Stats.Count(reader.GetDouble(1))} | {Stats.Fixed(reader.GetDouble(2), "0.000")} | {Stats.Fixed(reader.GetDouble(3), "0.0")} | {Stats.Count(reader.GetInt64(4))} | {Stats.Count(reader.GetInt64(5))} | {Stats.Count((double)reader.GetDecimal(6))} | `{reader.GetString(7).Replace("|", "\\|", StringComparison.Ordinal)}` |");
        }
        return text.ToString().TrimEnd();
    }

    /// <summary>Server-side execution time of the dispatcher's claim statement since the last reset.</summary>
    public async Task<(long Calls, double MeanMs, double MaxMs)?> ClaimStatementStatsAsync()
    {
        if (!HasStatementStats)
        {
            return null;
        }
        await using var command = DataSource.CreateCommand("""
            SELECT sum(calls)::bigint, sum(total_exec_time) / nullif(sum(calls), 0), max(max_exec_time)
              FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query LIKE '%FOR UPDATE SKIP LOCKED%'
            """);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return reader.IsDBNull(0) ? null : (reader.GetInt64(0), reader.GetDouble(1), reader.GetDouble(2));
    }

    /// <summary>
    /// WAL position and transaction ids are exact at any instant; the WAL flush and full-page
    /// counters are cumulative statistics that each backend publishes within about a second of
    /// going idle, so callers let a second pass before reading them.
    /// </summary>
    public async Task<ServerSnapshot> SnapshotAsync()
    {
        await using var command = DataSource.CreateCommand("""
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, pg_snapshot_xmax(pg_current_snapshot())::text::bigint,
                   wal_fpi, wal_sync, wal_sync_time
              FROM pg_stat_wal
            """);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return new ServerSnapshot(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetDouble(4));
    }

    /// <summary>
    /// A fixed piece of CPU-bound work in one PostgreSQL backend (best of three, milliseconds): the
    /// same number at every point of a run on a steady host. The machine is shared, so its speed
    /// drifts; this tells a slower host apart from slower code.
    /// </summary>
    public async Task<double> ReferenceQueryMillisecondsAsync()
    {
        var best = double.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            await ScalarAsync<long>("SELECT sum(g) FROM generate_series(1, 2000000) g");
            best = Math.Min(best, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        return best;
    }

    /// <summary>CPU used so far by every PostgreSQL process, when the server runs on this machine.</summary>
    public TimeSpan? ServerCpu() => PostmasterPid is { } pid ? ProcFs.TreeCpu(pid) : null;

    public async Task ExecuteAsync(string sql, params object[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var parameter in parameters)
        {
            command.Parameters.AddWithValue(parameter);
        }
        command.CommandTimeout = 0;
        await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql, params object[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql);
        foreach (var parameter in parameters)
        {
            command.Parameters.AddWithValue(parameter);
        }
        command.CommandTimeout = 0;
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async ValueTask DisposeAsync() => await DataSource.DisposeAsync();

    private static async Task Execute(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> Scalar<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}

/// <summary>Server counters at one instant: WAL position, next transaction id, WAL full-page images and flushes.</summary>
/// <param name="WalSyncMilliseconds">Time spent in WAL fsyncs (0 unless the server runs with track_wal_io_timing, as ops/bench.sh starts it).</param>
internal sealed record ServerSnapshot(long WalPosition, long NextTransactionId, long WalFullPages, long WalSyncs, double WalSyncMilliseconds);
