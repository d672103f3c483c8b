namespace OutboxComms.Benchmarks;

/// <summary>
/// <c>OutboxComms.Benchmarks [options]</c> runs the scenarios against a PostgreSQL server and
/// prints a markdown table; <c>OutboxComms.Benchmarks worker --provider noop|whatsapp</c> is one
/// dispatch worker process, started by the scenarios themselves.
/// </summary>
internal static class Program
{
    public static Task<int> Main(string[] args) =>
        args.Length > 0 && args[0] == BenchWorker.Verb ? BenchWorker.RunAsync(args[1..]) : BenchRunner.RunAsync(args);
}
