using System.Diagnostics;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// The system clock set off by <see cref="Offset"/>, as a host whose time synchronisation failed:
/// its timers and monotonic timestamps are the real ones, so changing the offset is the wall clock
/// being set forward or back while time goes on. (A FakeTimeProvider can only go forward, and its
/// timestamps move with its wall clock.) <see cref="DatabaseStepped"/> moves the monotonic
/// timestamps with the wall clock instead: to the worker, PostgreSQL's clock stepped.
/// </summary>
public sealed class SkewedClock(TimeSpan offset) : TimeProvider
{
    private long offsetTicks = offset.Ticks;
    private long monotonicOffsetTicks;

    public TimeSpan Offset
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref offsetTicks));
        set => Interlocked.Exchange(ref offsetTicks, value.Ticks);
    }

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Offset;

    public override long GetTimestamp() =>
        base.GetTimestamp() + (long)(Interlocked.Read(ref monotonicOffsetTicks) * (double)Stopwatch.Frequency / TimeSpan.TicksPerSecond);

    /// <summary>
    /// As PostgreSQL's clock stepping by <paramref name="by"/> looks to this worker: its skew moves by
    /// minus that while its own wall clock keeps pace with its monotonic one (both move back by it,
    /// against the real database's clock, which the test cannot step).
    /// </summary>
    public void DatabaseStepped(TimeSpan by)
    {
        Interlocked.Add(ref offsetTicks, -by.Ticks);
        Interlocked.Add(ref monotonicOffsetTicks, -by.Ticks);
    }

    /// <summary>As this worker's host stepping its wall clock by <paramref name="by"/> together with PostgreSQL's (the same host): its skew stays, its wall clock moves unlike its monotonic one.</summary>
    public void SteppedWithDatabase(TimeSpan by) => Interlocked.Add(ref monotonicOffsetTicks, -by.Ticks);

    /// <summary>
    /// As this worker's host suspended for <paramref name="by"/> and resumed: its monotonic clock
    /// stopped meanwhile, its wall clock (and PostgreSQL's) did not. To the worker this reads exactly
    /// as <see cref="SteppedWithDatabase"/>: its wall clock moved unlike its monotonic one, its skew did not.
    /// </summary>
    public void Suspended(TimeSpan by) => SteppedWithDatabase(by);
}
