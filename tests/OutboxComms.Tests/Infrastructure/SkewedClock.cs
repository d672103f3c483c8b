namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// The system clock set off by <see cref="Offset"/>, as a host whose time synchronisation failed:
/// its timers and monotonic timestamps are the real ones, so changing the offset is the wall clock
/// being set forward or back while time goes on. (A FakeTimeProvider can only go forward, and its
/// timestamps move with its wall clock.)
/// </summary>
public sealed class SkewedClock(TimeSpan offset) : TimeProvider
{
    private long offsetTicks = offset.Ticks;

    public TimeSpan Offset
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref offsetTicks));
        set => Interlocked.Exchange(ref offsetTicks, value.Ticks);
    }

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Offset;
}
