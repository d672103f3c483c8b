using System.Diagnostics;
using System.Text;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// Brackets one measurement and accounts for the CPU it used: our worker processes, PostgreSQL
/// (every server process), this harness (producers, pollers, the fake provider API), and whatever
/// else ran on the machine meanwhile. With WAL volume, flushes and write transactions this answers
/// "where does the time go" without a profiler.
/// </summary>
internal sealed class LoadWindow
{
    // Backends publish their statistics within a second of going idle (PGSTAT_MIN_INTERVAL).
    private static readonly TimeSpan StatisticsDelay = TimeSpan.FromSeconds(1.2);

    private readonly BenchDatabase db;
    private readonly ServerSnapshot server;
    private readonly TimeSpan? serverCpu;
    private readonly (TimeSpan Busy, TimeSpan Total)? machine;
    private readonly TimeSpan harness;
    private readonly long started;
    private WorkerFleet? fleet;
    private TimeSpan fleetCpu;

    private LoadWindow(BenchDatabase db, ServerSnapshot server)
    {
        this.db = db;
        this.server = server;
        serverCpu = db.ServerCpu();
        machine = ProcFs.Machine();
        harness = Process.GetCurrentProcess().TotalProcessorTime;
        started = Stopwatch.GetTimestamp();
    }

    /// <param name="fleet">Workers already running whose CPU counts from now; or see <see cref="Track"/>.</param>
    public static async Task<LoadWindow> StartAsync(BenchDatabase db, WorkerFleet? fleet = null)
    {
        await Task.Delay(StatisticsDelay);
        var window = new LoadWindow(db, await db.SnapshotAsync());
        if (fleet is not null)
        {
            window.Track(fleet);
        }
        return window;
    }

    /// <summary>Counts the CPU of these workers (started now, or earlier: only their use from now counts).</summary>
    public void Track(WorkerFleet workers)
    {
        fleet = workers;
        fleetCpu = workers.Cpu();
    }

    /// <summary>Ends the window. Call while the tracked workers still run (their CPU is read from /proc).</summary>
    public async Task<LoadUsage> StopAsync()
    {
        var elapsed = Stopwatch.GetElapsedTime(started);
        var harnessCpu = Process.GetCurrentProcess().TotalProcessorTime - harness;
        var machineNow = ProcFs.Machine();
        var workers = fleet?.Cpu() - fleetCpu;
        var serverNow = db.ServerCpu();
        await Task.Delay(StatisticsDelay);
        var end = await db.SnapshotAsync();
        return new LoadUsage(
            elapsed,
            workers,
            serverNow - serverCpu,
            harnessCpu,
            machineNow is { } m && machine is { } s ? m.Busy - s.Busy : null,
            end.WalPosition - server.WalPosition,
            end.WalFullPages - server.WalFullPages,
            end.WalSyncs - server.WalSyncs,
            end.WalSyncMilliseconds - server.WalSyncMilliseconds,
            end.NextTransactionId - server.NextTransactionId);
    }
}

internal sealed record LoadUsage(
    TimeSpan Elapsed, TimeSpan? Workers, TimeSpan? Postgres, TimeSpan Harness, TimeSpan? MachineBusy,
    long WalBytes, long WalFullPages, long WalSyncs, double WalSyncMilliseconds, long WriteTransactions)
{
    /// <summary>One line: CPU per item by process group, cores busy, WAL, flushes and transactions.</summary>
    public string Describe(long items, string unit)
    {
        var perItem = Math.Max(1, items);
        var parts = new List<string>();
        if (Workers is { } w)
        {
            parts.Add($"workers {Micro(w, perItem)}");
        }
        if (Postgres is { } p)
        {
            parts.Add($"PostgreSQL {Micro(p, perItem)}");
        }
        parts.Add($"harness {Micro(Harness, perItem)}");
        var text = new StringBuilder($"CPU per {unit}: {string.Join(", ", parts)}");
        if (MachineBusy is { } busy)
        {
            var others = busy - (Workers ?? TimeSpan.Zero) - (Postgres ?? TimeSpan.Zero) - Harness;
            text.Append($"; {Stats.Fixed(busy / Elapsed, "0.00")} of {Environment.ProcessorCount} cores busy, other processes {Stats.Fixed(Math.Max(0, others / Elapsed), "0.00")}");
        }
        text.Append($"; WAL {Stats.Fixed(WalBytes / (double)perItem, "0")} B/{unit}, {Stats.Fixed(WalFullPages / (double)perItem, "0.00")} full-page images/{unit}")
            .Append($"; {Stats.Fixed(WalSyncs / Elapsed.TotalSeconds, "0")} WAL flushes/s")
            .Append(WalSyncs > 0 && WalSyncMilliseconds > 0 ? $" (fsync mean {Stats.Fixed(WalSyncMilliseconds / WalSyncs, "0.00")} ms)" : "")
            .Append($", {Stats.Fixed(WriteTransactions / Elapsed.TotalSeconds, "0")} write transactions/s");
        return text.ToString();
    }

    private static string Micro(TimeSpan cpu, long items) => Stats.Fixed(cpu.TotalMicroseconds / items, "0") + " µs";
}
