using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A TCP proxy on loopback in front of the test PostgreSQL that holds each of the server's answers
/// for <see cref="AnswerDelay"/> before passing it on, as a congested network or a paused client
/// does on the way back only. Bytes are carried unchanged.
/// </summary>
public sealed class SlowAnswersProxy : IDisposable
{
    private readonly TcpListener listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint server;
    private readonly CancellationTokenSource stopping = new();
    private long delayTicks;

    public SlowAnswersProxy(string serverConnectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(serverConnectionString);
        server = new IPEndPoint(IPAddress.Parse(builder.Host!), builder.Port);
        listener.Start();
        _ = Loopback.AcceptEachAsync(listener, CarryAsync, stopping.Token);
    }

    /// <summary>How long each chunk the server sends is held; zero passes them on at once.</summary>
    public TimeSpan AnswerDelay
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref delayTicks));
        set => Interlocked.Exchange(ref delayTicks, value.Ticks);
    }

    /// <summary>The connection string through this proxy, otherwise <paramref name="original"/>.</summary>
    public string Through(string original) => new NpgsqlConnectionStringBuilder(original)
    {
        Host = "127.0.0.1",
        Port = ((IPEndPoint)listener.LocalEndpoint).Port,
    }.ConnectionString;

    private async Task CarryAsync(TcpClient client)
    {
        using (client)
        using (var upstream = new TcpClient())
        {
            try
            {
                await upstream.ConnectAsync(server, stopping.Token);
                using var cut = CancellationTokenSource.CreateLinkedTokenSource(stopping.Token);
                var toServer = PumpAsync(client.GetStream(), upstream.GetStream(), hold: false, cut.Token);
                var toClient = PumpAsync(upstream.GetStream(), client.GetStream(), hold: true, cut.Token);
                await Task.WhenAny(toServer, toClient);
                await cut.CancelAsync();
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // a side closed: so does the other, as the using blocks end
            }
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool hold, CancellationToken cancellationToken)
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
                if (hold && AnswerDelay > TimeSpan.Zero)
                {
                    await Task.Delay(AnswerDelay, cancellationToken);
                }
                await to.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
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
