namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A proxy in front of the test PostgreSQL that holds each of the server's answers for
/// <see cref="AnswerDelay"/> before passing it on, as a congested network or a paused client
/// does on the way back only. Bytes are carried unchanged.
/// </summary>
public sealed class SlowAnswersProxy(string serverConnectionString) : PostgresProxy(serverConnectionString)
{
    private long delayTicks;

    /// <summary>How long each chunk the server sends is held; zero passes them on at once.</summary>
    public TimeSpan AnswerDelay
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref delayTicks));
        set => Interlocked.Exchange(ref delayTicks, value.Ticks);
    }

    protected override (Filter ToServer, Filter ToClient) Connect() =>
        ((_, _) => ValueTask.FromResult(true), async (_, cancellationToken) =>
        {
            if (AnswerDelay > TimeSpan.Zero)
            {
                await Task.Delay(AnswerDelay, cancellationToken);
            }
            return true;
        });
}
