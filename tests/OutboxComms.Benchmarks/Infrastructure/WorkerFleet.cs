using System.Diagnostics;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// N worker processes: this executable re-launched in <c>worker</c> mode against the benchmark
/// database. They log warnings and errors only (to our console); closing their standard input
/// stops them gracefully.
/// </summary>
internal sealed class WorkerFleet : IAsyncDisposable
{
    private readonly List<Process> processes;

    private WorkerFleet(List<Process> processes) => this.processes = processes;

    public IReadOnlyList<int> ProcessIds => [.. processes.Select(p => p.Id)];

    public static WorkerFleet Start(int count, string connectionString, string encryptionKey, string provider)
    {
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("cannot find this executable to start workers");
        var processes = new List<Process>();
        for (var i = 0; i < count; i++)
        {
            var start = new ProcessStartInfo(self) { UseShellExecute = false, RedirectStandardInput = true };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            {
                start.ArgumentList.Add(typeof(WorkerFleet).Assembly.Location);
            }
            foreach (var argument in new[] { "worker", "--provider", provider })
            {
                start.ArgumentList.Add(argument);
            }
            start.Environment["ConnectionStrings__Outbox"] = connectionString;
            start.Environment["OUTBOXCOMMS_ENCRYPTION_KEY"] = encryptionKey;
            start.Environment["Providers__AllowPrivateNetworks"] = "true";   // the fake Cloud API listens on loopback
            start.Environment["Logging__LogLevel__Default"] = "Warning";
            start.Environment["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Warning";
            start.Environment["DOTNET_ENVIRONMENT"] = "Production";
            processes.Add(Process.Start(start)!);
        }
        return new WorkerFleet(processes);
    }

    /// <summary>CPU used by the workers so far (they are still running).</summary>
    public TimeSpan Cpu() => processes.Aggregate(TimeSpan.Zero, (sum, p) => sum + (ProcFs.Cpu(p.Id) ?? TimeSpan.Zero));

    /// <summary>Resident memory of each worker now.</summary>
    public IReadOnlyList<long> Rss() => [.. processes.Select(p => ProcFs.Rss(p.Id) ?? 0)];

    public void ThrowIfExited()
    {
        if (processes.FirstOrDefault(p => p.HasExited) is { } dead)
        {
            throw new InvalidOperationException($"worker process {dead.Id} exited with code {dead.ExitCode}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in processes.Where(p => !p.HasExited))
        {
            process.StandardInput.Close();
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        foreach (var process in processes)
        {
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
            }
            process.Dispose();
        }
    }
}
