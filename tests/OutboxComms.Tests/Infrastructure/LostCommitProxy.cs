using System.Net;
using System.Net.Sockets;
using System.Text;
using Npgsql;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A TCP proxy on loopback in front of the test PostgreSQL that can lose one acknowledgement, as a
/// failover or a dropped network does: once armed with a piece of SQL, the connection that sends
/// a statement containing it has its next <c>COMMIT</c> carried to the server and committed there,
/// but the server's answer is never passed on: both sides are closed instead. Everything else is
/// carried unchanged, byte for byte.
/// </summary>
public sealed class LostCommitProxy : IDisposable
{
    private static readonly byte[] CommitComplete = Encoding.ASCII.GetBytes("COMMIT\0");   // CommandComplete's tag
    private readonly TcpListener listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint server;
    private readonly CancellationTokenSource stopping = new();
    private byte[]? marker;
    private int armed;
    private int lost;
    private int sightings;

    public LostCommitProxy(string serverConnectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(serverConnectionString);
        server = new IPEndPoint(IPAddress.Parse(builder.Host!), builder.Port);
        listener.Start();
        _ = Loopback.AcceptEachAsync(listener, CarryAsync, stopping.Token);
    }

    /// <summary>The connection string through this proxy, otherwise <paramref name="original"/>.</summary>
    public string Through(string original) => new NpgsqlConnectionStringBuilder(original)
    {
        Host = "127.0.0.1",
        Port = ((IPEndPoint)listener.LocalEndpoint).Port,
    }.ConnectionString;

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


    private async Task CarryAsync(TcpClient client)
    {
        using (client)
        using (var upstream = new TcpClient())
        {
            try
            {
                await upstream.ConnectAsync(server, stopping.Token);
                var watching = false;
                using var cut = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token);
                var toServer = PumpAsync(client.GetStream(), upstream.GetStream(), chunk =>
                {
                    if (Volatile.Read(ref marker) is { } sql && chunk.AsSpan().IndexOf(sql) >= 0)
                    {
                        Interlocked.Increment(ref sightings);
                        watching = true;
                    }
                    return true;
                }, cut.Token);
                var toClient = PumpAsync(upstream.GetStream(), client.GetStream(), chunk =>
                {
                    if (watching && chunk.AsSpan().IndexOf(CommitComplete) >= 0 && Interlocked.Exchange(ref armed, 0) == 1)
                    {
                        Interlocked.Increment(ref lost);
                        return false;   // committed on the server; the client never hears it
                    }
                    return true;
                }, cut.Token);
                await Task.WhenAny(toServer, toClient);
                await cut.CancelAsync();
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // a side closed: so does the other, as the using blocks end
            }
        }
    }

    /// <summary>Copies until either side closes or <paramref name="pass"/> refuses a chunk.</summary>
    private static async Task PumpAsync(NetworkStream from, NetworkStream to, Func<byte[], bool> pass, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var read = await from.ReadAsync(buffer, cancellationToken);
                if (read == 0)
                {
                    return;
                }
                var chunk = buffer[..read];
                if (!pass(chunk))
                {
                    return;
                }
                await to.WriteAsync(chunk, cancellationToken);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // a side closed
        }
    }

    public void Dispose()
    {
        stopping.Cancel();
        listener.Stop();
        stopping.Dispose();
    }
}
