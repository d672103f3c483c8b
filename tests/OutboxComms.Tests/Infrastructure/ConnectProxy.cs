using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// An HTTP proxy on loopback that serves CONNECT tunnels only, as an HTTPS client reaches a host
/// through a forward proxy (RFC 9110 §9.3.6). It records each tunnel's requested target and
/// carries the bytes to <paramref name="tunnelTo"/> whatever the target was, so a test can stand
/// a local server in for a public address. Any other method is answered 405.
/// </summary>
public sealed class ConnectProxy : IDisposable
{
    private readonly TcpListener listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint tunnelTo;
    private readonly CancellationTokenSource stopping = new();

    public ConnectProxy(IPEndPoint tunnelTo)
    {
        this.tunnelTo = tunnelTo;
        listener.Start();
        _ = Loopback.AcceptEachAsync(listener, ServeAsync, stopping.Token);
    }

    public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}");

    /// <summary>The first line of every request the proxy received, in order.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();


    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = await ReadHeadAsync(stream);
                var requestLine = head.Split("\r\n")[0];
                Requests.Enqueue(requestLine);
                if (!requestLine.StartsWith("CONNECT ", StringComparison.Ordinal))
                {
                    await stream.WriteAsync("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray(), stopping.Token);
                    return;
                }
                using var upstream = new TcpClient();
                await upstream.ConnectAsync(tunnelTo, stopping.Token);
                await stream.WriteAsync("HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray(), stopping.Token);
                var there = upstream.GetStream();
                // Either side closing ends the tunnel.
                await Task.WhenAny(stream.CopyToAsync(there, stopping.Token), there.CopyToAsync(stream, stopping.Token));
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // The client or the server went away: the tunnel is over.
            }
        }
    }

    /// <summary>The request line and headers, up to the blank line; nothing after it is read.</summary>
    private async Task<string> ReadHeadAsync(NetworkStream stream)
    {
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 8192 && !(head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
        {
            if (await stream.ReadAsync(one, stopping.Token) == 0)
            {
                break;
            }
            head.Add(one[0]);
        }
        return Encoding.ASCII.GetString([.. head]);
    }

    public void Dispose()
    {
        stopping.Cancel();
        listener.Stop();
        stopping.Dispose();
    }
}
