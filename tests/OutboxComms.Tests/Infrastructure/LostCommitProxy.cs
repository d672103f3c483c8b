using System.Text;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A proxy in front of the test PostgreSQL that can lose one acknowledgement, as a
/// failover or a dropped network does: once armed with a piece of SQL, the connection that sends
/// a statement containing it has its next <c>COMMIT</c> carried to the server and committed there,
/// but the server's answer is never passed on: both sides are closed instead. Everything else is
/// carried unchanged, byte for byte.
/// </summary>
public sealed class LostCommitProxy(string serverConnectionString) : PostgresProxy(serverConnectionString)
{
    private static readonly byte[] CommitComplete = Encoding.ASCII.GetBytes("COMMIT\0");   // CommandComplete's tag
    private byte[]? marker;
    private int armed;
    private int lost;
    private int sightings;

    /// <summary>
    /// Loses the acknowledgement of the next commit of a transaction that sent <paramref name="sql"/> (once).
    /// The text is looked for in each chunk read: it must reach the server whole in one (a statement
    /// the connection has not prepared yet, short enough not to be split across writes).
    /// </summary>
    public void LoseCommitAfter(string sql)
    {
        Volatile.Write(ref marker, Encoding.UTF8.GetBytes(sql));
        Volatile.Write(ref armed, 1);
    }

    /// <summary>How many acknowledgements were lost.</summary>
    public int Lost => Volatile.Read(ref lost);

    /// <summary>How many times a client sent the armed text, before and after the loss (a retry sends it again).</summary>
    public int Sightings => Volatile.Read(ref sightings);

    protected override (Filter ToServer, Filter ToClient) Connect()
    {
        var watching = false;
        return ((chunk, _) =>
        {
            if (Volatile.Read(ref marker) is { } sql && chunk.AsSpan().IndexOf(sql) >= 0)
            {
                Interlocked.Increment(ref sightings);
                watching = true;
            }
            return ValueTask.FromResult(true);
        }, (chunk, _) =>
        {
            if (watching && chunk.AsSpan().IndexOf(CommitComplete) >= 0 && Interlocked.Exchange(ref armed, 0) == 1)
            {
                Interlocked.Increment(ref lost);
                return ValueTask.FromResult(false);   // committed on the server; the client never hears it
            }
            return ValueTask.FromResult(true);
        });
    }
}
