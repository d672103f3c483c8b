using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace OutboxComms.Tests.Providers;

/// <summary>Attachment links as the worker fetches them (AddProviders' own client): public addresses only, unless allowed.</summary>
public sealed class AttachmentLoaderTests : IDisposable
{
    private static readonly byte[] Pdf = "%PDF-1.7 statement"u8.ToArray();
    private readonly WireMockServer files = WireMockServer.Start();

    public AttachmentLoaderTests() =>
        files.Given(Request.Create().WithPath("/files/statement.pdf").UsingGet())
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/pdf").WithBody(Pdf));

    public void Dispose() => files.Stop();

    private static IHost Worker(bool allowPrivateNetworks, string? fetchTimeout = null)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration["Encryption:Keys"] = TestKeys.Encryption;
        builder.Configuration["Attachments:AllowPrivateNetworks"] = allowPrivateNetworks ? "true" : "false";
        if (fetchTimeout is not null)
        {
            builder.Configuration["Attachments:FetchTimeout"] = fetchTimeout;
        }
        builder.AddProviders();
        return builder.Build();
    }

    [Fact]
    public async Task A_link_to_a_loopback_address_is_refused_without_a_request_unless_private_networks_are_allowed()
    {
        // A tenant's link to an internal address (here the loopback file server) would have the worker mail its answer to them.
        var attachment = new CommunicationAttachment { FileName = "statement.pdf", ContentType = "application/pdf", Url = files.Url + "/files/statement.pdf" };

        using (var locked = Worker(allowPrivateNetworks: false))
        {
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() =>
                locked.Services.GetRequiredService<AttachmentLoader>().LoadAsync([attachment], TestContext.Current.CancellationToken));
            Assert.Contains("resolves only to loopback, private or link-local addresses", refused.Message, StringComparison.Ordinal);
            Assert.Empty(files.LogEntries);
        }

        using var open = Worker(allowPrivateNetworks: true);
        var loaded = await open.Services.GetRequiredService<AttachmentLoader>().LoadAsync([attachment], TestContext.Current.CancellationToken);
        Assert.Equal(Pdf, Assert.Single(loaded).Content);
    }

    [Fact]
    public async Task A_link_is_followed_through_its_redirects_to_the_file()
    {
        files.Given(Request.Create().WithPath("/share/abc").UsingGet()).RespondWith(Response.Create().WithStatusCode(302).WithHeader("Location", "/download/abc"));
        files.Given(Request.Create().WithPath("/download/abc").UsingGet()).RespondWith(Response.Create().WithStatusCode(307).WithHeader("Location", files.Url + "/files/statement.pdf"));
        using var worker = Worker(allowPrivateNetworks: true);

        var loaded = await worker.Services.GetRequiredService<AttachmentLoader>().LoadAsync(
            [new CommunicationAttachment { FileName = "statement.pdf", ContentType = "application/pdf", Url = files.Url + "/share/abc" }], TestContext.Current.CancellationToken);

        Assert.Equal(Pdf, Assert.Single(loaded).Content);

        // A link that keeps redirecting fails its message, rather than being retried.
        files.Given(Request.Create().WithPath("/loop").UsingGet()).RespondWith(Response.Create().WithStatusCode(302).WithHeader("Location", "/loop"));
        var looping = await Assert.ThrowsAsync<InvalidOperationException>(() => worker.Services.GetRequiredService<AttachmentLoader>().LoadAsync(
            [new CommunicationAttachment { FileName = "statement.pdf", ContentType = "application/pdf", Url = files.Url + "/loop" }], TestContext.Current.CancellationToken));
        Assert.Contains("redirects (HTTP 302) past the 5 redirects followed", looping.Message, StringComparison.Ordinal);
        Assert.Equal(6, files.LogEntries.Count(e => e.RequestMessage.Path == "/loop"));

        // A presigned link's query is its credential: an error shows the link without it.
        var gone = await Assert.ThrowsAsync<HttpRequestException>(() => worker.Services.GetRequiredService<AttachmentLoader>().LoadAsync(
            [new CommunicationAttachment { FileName = "inv.pdf", ContentType = "application/pdf", Url = files.Url + "/gone/inv.pdf?X-Amz-Signature=s3cr3t" }], TestContext.Current.CancellationToken));
        Assert.Equal($"attachment inv.pdf could not be fetched: HTTP 404 from {files.Url}/gone/inv.pdf?…", gone.Message);
    }

    [Fact]
    public async Task A_message_s_attachments_are_held_to_25_MB_together_its_links_to_one_time_limit_and_a_dropped_file_is_the_links_problem()
    {
        using var worker = Worker(allowPrivateNetworks: true);
        var loader = worker.Services.GetRequiredService<AttachmentLoader>();
        var thirteen = new byte[13 * 1024 * 1024];

        // Each under the limit, together past it (a worker sends up to 128 messages at once: the limit is per message).
        var together = await Assert.ThrowsAsync<InvalidOperationException>(() => loader.LoadAsync(
            [new CommunicationAttachment { FileName = "a.pdf", ContentType = "application/pdf", Content = thirteen },
             new CommunicationAttachment { FileName = "b.pdf", ContentType = "application/pdf", Content = thirteen }], TestContext.Current.CancellationToken));
        Assert.Equal("attachment b.pdf takes the message's attachments past 25 MB", together.Message);

        // A link's user and password are no more shown than its query.
        var credentials = await Assert.ThrowsAsync<HttpRequestException>(() => loader.LoadAsync(
            [new CommunicationAttachment { FileName = "inv.pdf", ContentType = "application/pdf", Url = files.Url!.Replace("http://", "http://files:s3cr3t@", StringComparison.Ordinal) + "/gone/inv.pdf" }], TestContext.Current.CancellationToken));
        Assert.Equal($"attachment inv.pdf could not be fetched: HTTP 404 from {files.Url}/gone/inv.pdf", credentials.Message);

        // A file server that drops the connection mid-file, or answers slower than the message's links may take.
        using var broken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        broken.Start();
        var serving = Task.Run(async () =>
        {
            using var socket = await broken.AcceptSocketAsync(TestContext.Current.CancellationToken);
            await socket.ReceiveAsync(new byte[8192], System.Net.Sockets.SocketFlags.None, TestContext.Current.CancellationToken);
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 100000\r\n\r\n%PDF-1.7 the first part"u8.ToArray(), System.Net.Sockets.SocketFlags.None, TestContext.Current.CancellationToken);
            socket.Shutdown(System.Net.Sockets.SocketShutdown.Both);
        }, TestContext.Current.CancellationToken);
        files.Given(Request.Create().WithPath("/slow.pdf").UsingGet()).RespondWith(Response.Create().WithStatusCode(200).WithBody(Pdf).WithDelay(TimeSpan.FromSeconds(3)));
        var dropped = await Assert.ThrowsAsync<HttpRequestException>(() => loader.LoadAsync(
            [new CommunicationAttachment { FileName = "broken.pdf", ContentType = "application/pdf", Url = $"http://127.0.0.1:{((IPEndPoint)broken.LocalEndpoint).Port}/broken.pdf" }], TestContext.Current.CancellationToken));
        await serving;
        Assert.StartsWith("attachment broken.pdf could not be fetched: ", dropped.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<IOException>(dropped.InnerException);
        using var configured = Worker(allowPrivateNetworks: true, fetchTimeout: "00:00:00.3");
        var quick = configured.Services.GetRequiredService<AttachmentLoader>();
        var slow = await Assert.ThrowsAsync<TimeoutException>(() => quick.LoadAsync(
            [new CommunicationAttachment { FileName = "slow.pdf", ContentType = "application/pdf", Url = files.Url + "/slow.pdf" }], TestContext.Current.CancellationToken));
        Assert.Equal("attachment slow.pdf: its link did not answer in time (the message's links have 0.3 s together)", slow.Message);
    }

    [Fact]
    public async Task Through_a_proxy_each_link_and_each_redirect_hop_is_checked_not_the_proxy()
    {
        // The operator's proxy listens on loopback (and answers for the hosts behind it here).
        using var proxy = WireMockServer.Start();
        proxy.Given(Request.Create().WithPath("/ok.pdf").UsingGet()).RespondWith(Response.Create().WithStatusCode(200).WithBody(Pdf));
        proxy.Given(Request.Create().WithPath("/moved.pdf").UsingGet()).RespondWith(Response.Create().WithStatusCode(302).WithHeader("Location", "http://10.1.2.3/secret"));
        var webProxy = new WebProxy(proxy.Url);
        var sockets = new SocketsHttpHandler
        {
            Proxy = webProxy,
            ConnectCallback = PublicAddresses.ConnectCallback(false, PublicAddresses.AttachmentRefusal, webProxy),
            AllowAutoRedirect = false,
        };
        using var client = new HttpClient(new PublicAddresses.Guard(sockets, webProxy, allowPrivateNetworks: false, PublicAddresses.AttachmentRefusal, AttachmentLoader.MaxRedirects, TimeSpan.Zero));
        var loader = new AttachmentLoader(new OneClient(client));
        Task<IReadOnlyList<LoadedAttachment>> LoadAsync(string url) =>
            loader.LoadAsync([new CommunicationAttachment { FileName = "statement.pdf", ContentType = "application/pdf", Url = url }], TestContext.Current.CancellationToken);

        var inside = await Assert.ThrowsAsync<InvalidOperationException>(() => LoadAsync("http://10.1.2.3/statement.pdf"));
        Assert.Empty(proxy.LogEntries);
        Assert.Equal(Pdf, Assert.Single(await LoadAsync("http://93.184.216.34/ok.pdf")).Content);
        var redirected = await Assert.ThrowsAsync<InvalidOperationException>(() => LoadAsync("http://93.184.216.34/moved.pdf"));

        Assert.Contains("10.1.2.3 resolves only to loopback, private or link-local addresses, which attachment links may not reach", inside.Message, StringComparison.Ordinal);
        Assert.Contains("10.1.2.3 resolves only to", redirected.Message, StringComparison.Ordinal);
        Assert.Equal(2, proxy.LogEntries.Count());   // the file, and the redirect; never the internal address
    }

    private sealed class OneClient(HttpClient client) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => client;
    }

    [Theory]
    [InlineData("169.254.169.254", false)] // cloud metadata
    [InlineData("10.1.2.3", false)]
    [InlineData("172.20.0.1", false)]
    [InlineData("192.168.1.10", false)]
    [InlineData("127.0.0.1", false)]
    [InlineData("100.64.0.1", false)]
    [InlineData("0.0.0.0", false)]
    [InlineData("::1", false)]
    [InlineData("::ffff:127.0.0.1", false)]
    [InlineData("fd00::1", false)]
    [InlineData("fe80::1", false)]
    [InlineData("64:ff9b::a9fe:a9fe", false)] // NAT64 of 169.254.169.254
    [InlineData("64:ff9b:1::a00:1", false)]   // local-use NAT64 of 10.0.0.1
    [InlineData("2002:a00:1::1", false)]      // 6to4 of 10.0.0.1
    [InlineData("::10.0.0.1", false)]         // IPv4-compatible
    [InlineData("64:ff9b::808:808", true)]    // NAT64 of 8.8.8.8
    [InlineData("8.8.8.8", true)]
    [InlineData("172.32.0.1", true)]
    [InlineData("2606:4700:4700::1111", true)]
    [InlineData("2002:808:808::1", true)]     // 6to4 of 8.8.8.8
    public void Public_addresses_are_told_from_internal_ones(string address, bool isPublic) =>
        Assert.Equal(isPublic, PublicAddresses.IsPublic(IPAddress.Parse(address)));
}
