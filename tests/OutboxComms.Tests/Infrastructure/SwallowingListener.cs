using System.Net;
using System.Net.Sockets;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A loopback port whose connection attempts go unanswered, as behind a firewall that drops
/// packets: a listener that never accepts, with its accept queue filled, so the kernel drops
/// further attempts rather than refusing them.
/// </summary>
public sealed class SwallowingListener : IDisposable
{
    private readonly Socket listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly List<Socket> queued = [];

    private SwallowingListener()
    {
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
    }

    public int Port => ((IPEndPoint)listener.LocalEndPoint!).Port;

    public static async Task<SwallowingListener> StartAsync()
    {
        var swallowing = new SwallowingListener();
        for (var i = 0; i < 8; i++)
        {
            var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            swallowing.queued.Add(filler);
            using var quick = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await filler.ConnectAsync(new IPEndPoint(IPAddress.Loopback, swallowing.Port), quick.Token);
            }
            catch (OperationCanceledException)
            {
                return swallowing;   // the queue is full: attempts now hang
            }
        }
        throw new InvalidOperationException("the accept queue never filled, so connection attempts would not hang");
    }

    public void Dispose()
    {
        queued.ForEach(s => s.Dispose());
        listener.Dispose();
    }
}
