using System.Diagnostics;
using Microsoft.Extensions.Options;
using OutboxComms.Benchmarks.Infrastructure;
using OutboxComms.Benchmarks.Scenarios;
using OutboxComms.Core.Security;

namespace OutboxComms.Benchmarks;

/// <summary>
/// Prepares a fresh database with the practices every scenario uses, runs the chosen scenarios in
/// order, and writes the report. A scenario that breaks is reported as FAILED (exit code 1) and
/// the rest still run: in CI the smoke run exists to catch exactly that.
/// </summary>
internal static class BenchRunner
{
    private static readonly (string Name, Func<Bench, Task> Run)[] Scenarios =
    [
        ("enqueue", EnqueueScenario.RunAsync),
        ("api", ApiEnqueueScenario.RunAsync),
        ("dispatch", DispatchScenario.RunAsync),
        ("latency", LatencyScenario.RunAsync),
        ("backlog", BacklogScenario.RunAsync),
    ];

    public static async Task<int> RunAsync(string[] args)
    {
        var options = BenchOptions.Parse(args, Console.Error);
        if (options is null)
        {
            return 2;
        }
        var clock = Stopwatch.StartNew();
        Console.Out.WriteLine($"==> preparing database {BenchDatabase.Name}");
        await using var db = await BenchDatabase.CreateAsync(options.Connection);
        var machine = MachineInfo.Read(await db.ServerVersionAsync(), options.ServerSettings);
        Console.Out.WriteLine(machine.Describe());

        var encryptionKey = SecretProtector.NewKey("bench");
        var secrets = new SecretProtector(Options.Create(new EncryptionKeyOptions { Keys = encryptionKey }));
        var practices = await Practices.SeedAsync(db, options.Customers, secrets);
        var report = new Report(machine, options);
        var bench = new Bench(options, db, practices, report, encryptionKey);

        foreach (var (name, run) in Scenarios.Where(s => options.Runs(s.Name)))
        {
            Console.Out.WriteLine($"==> {name} ({clock.Elapsed.TotalMinutes:0.0} min)");
            try
            {
                report.HostSpeed(name, await db.ReferenceQueryMillisecondsAsync());
                await run(bench);
            }
            catch (Exception ex)
            {
                report.Fail(name, ex);
            }
        }

        var output = Path.GetFullPath(options.Output);
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        await File.WriteAllTextAsync(output, report.Markdown(clock.Elapsed));
        Console.Out.WriteLine();
        Console.Out.WriteLine(report.Table());
        Console.Out.WriteLine($"Report written to {output} ({clock.Elapsed.TotalMinutes:0.0} min).");
        return report.Failed ? 1 : 0;
    }
}
