using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A TCP proxy on loopback in front of the test PostgreSQL: each connection through it is carried
/// chunk by chunk in both directions, through the filters <see cref="Connect"/> gives it, which may
/// hold a chunk or close both sides instead of passing it on.
/// </summary>
public abstract class PostgresProxy : IDisposable
{
    private readonly TcpListener listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint server;
    private readonly CancellationTokenSource stopping = new();

    /// <summary>Decides what becomes of one chunk: true passes it on, false closes the connection's both sides.</summary>
    protected delegate ValueTask<bool> Filter(byte[] chunk, CancellationToken cancellationToken);

    protected PostgresProxy(string serverConnectionString)
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

    /// <summary>The filters of a new connection, for what the client sends and for what the server answers.</summary>
    protected abstract (Filter ToServer, Filter ToClient) Connect();

    private async Task CarryAsync(TcpClient client)
    {
        using (client)
        using (var upstream = new TcpClient())
        {
            try
            {
                await upstream.ConnectAsync(server, stopping.Token);
                var (toServerFilter, toClientFilter) = Connect();
                using var cut = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token);
                var toServer = PumpAsync(client.GetStream(), upstream.GetStream(), toServerFilter, cut.Token);
                var toClient = PumpAsync(upstream.GetStream(), client.GetStream(), toClientFilter, cut.Token);
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
    private static async Task PumpAsync(NetworkStream from, NetworkStream to, Filter pass, CancellationToken cancellationToken)
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
                if (!await pass(chunk, cancellationToken))
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
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            stopping.Cancel();
            listener.Stop();
            stopping.Dispose();
        }
    }
}
