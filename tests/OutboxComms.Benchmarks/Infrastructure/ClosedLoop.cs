using System.Collections.Concurrent;
using System.Diagnostics;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// A closed-loop load: <c>clients</c> concurrent loops each take the next operation number until
/// <c>total</c> are done, and every operation is timed on its own.
/// </summary>
internal static class ClosedLoop
{
    public static async Task<(double PerSecond, Percentiles Latency)> RunAsync(int clients, long total, Func<long, Task> operation)
    {
        var latencies = new ConcurrentBag<double>();
        var next = -1L;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            long i;
            while ((i = Interlocked.Increment(ref next)) < total)
            {
                var t = Stopwatch.GetTimestamp();
                await operation(i);
                latencies.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
            }
        }));
        return (total / Stopwatch.GetElapsedTime(started).TotalSeconds, Stats.Of(latencies));
    }
}
