namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A clock moved by hand whose wall clock can also be set back on its own, as NTP stepping a host's
/// time does: <see cref="Advance"/> moves both the wall clock and the monotonic timestamps,
/// <see cref="SetBack"/> only the wall clock. (A FakeTimeProvider's timestamps follow its wall clock.)
/// </summary>
public sealed class SteppableClock(DateTimeOffset start) : TimeProvider
{
    private readonly Lock gate = new();
    private DateTimeOffset wall = start;
    private long elapsedTicks;

    public override DateTimeOffset GetUtcNow()
    {
        lock (gate)
        {
            return wall;
        }
    }

    public override long GetTimestamp()
    {
        lock (gate)
        {
            return elapsedTicks;
        }
    }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public void Advance(TimeSpan by)
    {
        lock (gate)
        {
            wall += by;
            elapsedTicks += by.Ticks;
        }
    }

    public void SetBack(TimeSpan by)
    {
        lock (gate)
        {
            wall -= by;
        }
    }
}
