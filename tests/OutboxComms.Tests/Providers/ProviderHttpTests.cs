using System.Net;
using System.Net.Sockets;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Tests.Providers;

/// <summary>The shared HTTP plumbing's reading of a provider that cannot be reached, against real sockets.</summary>
public sealed class ProviderHttpTests
{
    [Fact]
    public async Task An_address_that_swallows_connection_attempts_is_an_outage_not_a_request_timeout()
    {
        // A listener that never accepts, its queue filled: the kernel drops further connection
        // attempts unanswered, as a firewall that drops packets does.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var endpoint = (IPEndPoint)listener.LocalEndPoint!;
        var fillers = new List<Socket>();
        for (var i = 0; i < 4; i++)
        {
            var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            fillers.Add(filler);
            using var quick = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await filler.ConnectAsync(endpoint, quick.Token);
            }
            catch (OperationCanceledException)
            {
                break;   // the queue is full: this one already hangs
            }
        }
        using var handler = new SocketsHttpHandler { ConnectCallback = ProviderHttp.ConnectWithin(TimeSpan.FromMilliseconds(500)) };
        var http = new ProviderHttp(new OneClient(new HttpClient(handler)));

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var result = await http.SendAsync("Test", new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{endpoint.Port}/send"),
            _ => SendResult.Sent("never"), TestContext.Current.CancellationToken);
        var waited = System.Diagnostics.Stopwatch.GetElapsedTime(started);

        fillers.ForEach(f => f.Dispose());
        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("Test: could not connect (ConnectionError)", result.Error, StringComparison.Ordinal);
        Assert.Contains("timed out", result.Error, StringComparison.OrdinalIgnoreCase);   // says why, for status_reason
        Assert.True(waited >= TimeSpan.FromMilliseconds(450), $"the attempt was refused at once ({waited.TotalMilliseconds:0} ms: {result.Error}), not swallowed");
    }

    private sealed class OneClient(HttpClient client) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => client;
    }
}
