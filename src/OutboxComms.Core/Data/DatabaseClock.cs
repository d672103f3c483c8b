namespace OutboxComms.Core.Data;

/// <summary>
/// The system clock at PostgreSQL's precision (microseconds): an instant the service stores and
/// answers in the same response (a customer's <c>updatedAt</c>, a preference's ETag) is the one a
/// later read gives back, not one 100-nanosecond tick apart.
/// </summary>
public sealed class DatabaseClock : TimeProvider
{
    public static DatabaseClock Instance { get; } = new();

    private DatabaseClock()
    {
    }

    public override DateTimeOffset GetUtcNow()
    {
        var now = System.GetUtcNow();
        return now.AddTicks(-(now.Ticks % TimeSpan.TicksPerMicrosecond));
    }
}
