using System.Net.Sockets;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>What the test's TCP servers on loopback share.</summary>
public static class Loopback
{
    /// <summary>Hands each connection <paramref name="listener"/> accepts to <paramref name="serve"/>, without waiting for it, until stopped.</summary>
    public static async Task AcceptEachAsync(TcpListener listener, Func<TcpClient, Task> serve, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            _ = serve(client);
        }
    }
}
