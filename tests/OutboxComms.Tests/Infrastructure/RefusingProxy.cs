namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A proxy in front of the test PostgreSQL that, while <see cref="Refuse"/> is set, closes every
/// connection through it at its first bytes, as a database that is down does; otherwise bytes are
/// carried unchanged. (Use it with <c>Pooling=false</c>, so each use opens a connection anew.)
/// </summary>
public sealed class RefusingProxy(string serverConnectionString) : PostgresProxy(serverConnectionString)
{
    private volatile bool refuse;

    public bool Refuse
    {
        get => refuse;
        set => refuse = value;
    }

    protected override (Filter ToServer, Filter ToClient) Connect() =>
        ((_, _) => ValueTask.FromResult(!Refuse), (_, _) => ValueTask.FromResult(!Refuse));
}
