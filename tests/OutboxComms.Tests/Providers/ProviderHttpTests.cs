using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Http;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;
using WireMock.Settings;

namespace OutboxComms.Tests.Providers;

/// <summary>The shared HTTP plumbing's reading of a provider that cannot be reached, against real sockets.</summary>
public sealed class ProviderHttpTests
{
    [Theory]
    [InlineData("https://elsewhere.example/x/messages")]
    [InlineData("//elsewhere.example/x/messages")]
    [InlineData("http://graph.facebook.com/x/messages")]   // not even another scheme on the same host
    public void A_company_id_written_as_a_url_cannot_send_a_request_and_its_credentials_to_another_host(string relative) =>
        Assert.Throws<InvalidOperationException>(() => ProviderHttp.Endpoint(null, "https://graph.facebook.com/v25.0/", relative));

    [Fact]
    public void A_relative_path_stays_under_the_providers_base() =>
        Assert.Equal("https://graph.facebook.com/v25.0/106540352242922/messages",
            ProviderHttp.Endpoint(null, "https://graph.facebook.com/v25.0/", "106540352242922/messages").AbsoluteUri);

    [Fact]
    public async Task An_address_that_swallows_connection_attempts_is_an_outage_not_a_request_timeout()
    {
        using var swallowing = await SwallowingListener.StartAsync();
        using var handler = new SocketsHttpHandler { ConnectCallback = ProviderHttp.ConnectWithin(TimeSpan.FromMilliseconds(500), allowPrivateNetworks: true) };
        var http = new ProviderHttp(new OneClient(new HttpClient(handler)));

        var (result, waited) = await SendTimedAsync(http, $"http://127.0.0.1:{swallowing.Port}/send", TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("Test: could not connect (ConnectionError)", result.Error, StringComparison.Ordinal);
        Assert.Contains("timed out", result.Error, StringComparison.OrdinalIgnoreCase);   // says why, for status_reason
        Assert.True(waited >= TimeSpan.FromMilliseconds(450), $"the attempt was refused at once ({waited.TotalMilliseconds:0} ms: {result.Error}), not swallowed");
    }

    [Fact]
    public async Task The_providers_client_the_services_register_gives_up_connecting_after_ten_seconds_as_an_outage()
    {
        using var swallowing = await SwallowingListener.StartAsync();
        using var host = ProvidersHost();
        var http = host.Services.GetRequiredService<ProviderHttp>();

        var (result, waited) = await SendTimedAsync(http, $"http://127.0.0.1:{swallowing.Port}/send", TestContext.Current.CancellationToken);

        // ProviderHttp.ConnectTimeout, well before the request's 25 s timeout would call it "timed out" (a retry used up).
        Assert.InRange(waited, ProviderHttp.ConnectTimeout - TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(20));
        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
    }

    [Fact]
    public async Task A_server_that_accepts_the_connection_but_never_answers_the_tls_handshake_is_an_outage()
    {
        using var silent = SilentListener();
        using var handler = ProviderHttp.CreateHandler(TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(500), allowPrivateNetworks: true);
        var http = new ProviderHttp(new OneClient(new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan }));
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        bounded.CancelAfter(TimeSpan.FromSeconds(20));

        var (result, waited) = await SendTimedAsync(http, $"https://127.0.0.1:{Port(silent)}/send", bounded.Token);

        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("Test: could not connect (ConnectTimeout): ", result.Error, StringComparison.Ordinal);
        Assert.True(waited >= TimeSpan.FromMilliseconds(450), $"the handshake failed at once ({waited.TotalMilliseconds:0} ms: {result.Error}), it did not hang");
    }

    [Fact]
    public async Task A_request_that_went_out_and_was_never_answered_uses_up_a_retry_even_when_its_client_timed_it_out()
    {
        // Plain HTTP: the connection is set up at once and the request sent, then nothing answers.
        // The client's own timeout has the same shape as a connection that was never set up, but
        // here the provider may have taken the message.
        using var silent = SilentListener();
        using var handler = ProviderHttp.CreateHandler(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), allowPrivateNetworks: true);
        var http = new ProviderHttp(new OneClient(new HttpClient(handler) { Timeout = TimeSpan.FromMilliseconds(500) }));

        var (result, _) = await SendTimedAsync(http, $"http://127.0.0.1:{Port(silent)}/send", TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Transient, false, "Test: the request timed out"), (result.Outcome, result.ProviderUnavailable, result.Error));
    }

    [Fact]
    public async Task The_providers_client_the_services_register_gives_up_on_a_silent_tls_handshake_after_fifteen_seconds_as_an_outage()
    {
        using var silent = SilentListener();
        using var host = ProvidersHost();
        var http = host.Services.GetRequiredService<ProviderHttp>();

        var (result, waited) = await SendTimedAsync(http, $"https://127.0.0.1:{Port(silent)}/send", TestContext.Current.CancellationToken);

        // ProviderHttp.SetupTimeout, before the request's 25 s timeout would call it "timed out" (a retry used up).
        Assert.InRange(waited, ProviderHttp.SetupTimeout - TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(24));
        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_provider_address_on_a_private_network_is_refused_as_a_settings_mistake_unless_the_operator_allows_it(bool allowed)
    {
        using var provider = WireMockServer.Start();
        provider.Given(Request.Create().WithPath("/send").UsingPost()).RespondWith(Response.Create().WithStatusCode(200).WithBody("{}"));
        using var host = ProvidersHost(allowPrivateNetworks: allowed);
        var http = host.Services.GetRequiredService<ProviderHttp>();

        var (result, _) = await SendTimedAsync(http, $"{provider.Url}/send", TestContext.Current.CancellationToken);
        var check = await http.CheckAsync("Test", new HttpRequestMessage(HttpMethod.Get, $"{provider.Url}/send"), TestContext.Current.CancellationToken);

        if (allowed)
        {
            Assert.Equal(SendOutcome.Sent, result.Outcome);
            return;
        }
        const string Refusal = "localhost resolves only to loopback, private or link-local addresses, which providers may not reach (Providers:AllowPrivateNetworks)";
        Assert.Equal((SendOutcome.Permanent, $"Test: {Refusal}"), (result.Outcome, result.Error));
        Assert.False(check.Ok);
        Assert.Contains(Refusal, check.Detail, StringComparison.Ordinal);
        Assert.Empty(provider.LogEntries);
    }

    [Theory]
    [InlineData("graph.facebook.com", true)]
    [InlineData("API.SENDGRID.COM.", true)]
    [InlineData("email.ap-south-1.amazonaws.com", true)]
    [InlineData("api.twilio.com", true)]
    [InlineData("relay.practice.example", false)]
    [InlineData("graph.facebook.com.rebind.example", false)]
    [InlineData("amazonaws.com.rebind.example", false)]
    public void Behind_a_proxy_only_the_providers_own_hosts_are_trusted_for_a_minute_a_companys_base_url_at_every_request(string host, bool cached)
    {
        // A company's settings may name any host; one whose DNS it controls could answer public
        // for the check and internal for the proxy a moment later, for a minute if it were kept.
        Assert.Equal(cached, ProviderHttp.IsProvidersOwnHost(host));
    }

    [Fact]
    public async Task Through_a_proxy_the_provider_behind_it_is_checked_not_the_proxy()
    {
        // The operator's proxy listens on loopback; the providers behind it are what a tenant names.
        using var proxy = WireMockServer.Start();
        proxy.Given(Request.Create().WithPath("/send").UsingPost()).RespondWith(Response.Create().WithStatusCode(200).WithBody("{}"));
        using var handler = ProviderHttp.CreateHandler(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), allowPrivateNetworks: false, new WebProxy(proxy.Url));
        var http = new ProviderHttp(new OneClient(new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan }));

        var (internalTarget, _) = await SendTimedAsync(http, "http://10.1.2.3/send", TestContext.Current.CancellationToken);
        Assert.Equal((SendOutcome.Permanent, "Test: 10.1.2.3 resolves only to loopback, private or link-local addresses, which providers may not reach (Providers:AllowPrivateNetworks)"),
            (internalTarget.Outcome, internalTarget.Error));
        Assert.Empty(proxy.LogEntries);

        // A name that does not resolve reads as it does without a proxy: a settings mistake, not a crash.
        var (unknown, _) = await SendTimedAsync(http, "http://api.provider.invalid/send", TestContext.Current.CancellationToken);
        Assert.Equal((SendOutcome.Transient, false), (unknown.Outcome, unknown.ProviderUnavailable));
        Assert.StartsWith("Test: could not connect (NameResolutionError)", unknown.Error, StringComparison.Ordinal);
        Assert.Empty(proxy.LogEntries);

        // A public address goes through the proxy (which answers for it here).
        var (publicTarget, _) = await SendTimedAsync(http, "http://93.184.216.34/send", TestContext.Current.CancellationToken);
        Assert.Equal(SendOutcome.Sent, publicTarget.Outcome);
        Assert.Single(proxy.LogEntries);
    }

    [Fact]
    public async Task Through_a_proxy_an_https_provider_is_reached_by_a_connect_tunnel_and_an_internal_one_is_refused_before_it()
    {
        // The provider speaks TLS; the proxy carries every tunnel to it, whatever address was asked for.
        var pfx = SelfSignedPfx();
        using var provider = WireMockServer.Start(new WireMockServerSettings
        {
            UseSSL = true,
            CertificateSettings = new WireMockCertificateSettings { X509CertificateFilePath = pfx, X509CertificatePassword = "test" },
        });
        File.Delete(pfx);
        provider.Given(Request.Create().WithPath("/send").UsingPost()).RespondWith(Response.Create().WithStatusCode(200).WithBody("{}"));
        using var proxy = new ConnectProxy(new IPEndPoint(IPAddress.Loopback, provider.Ports[0]));
        using var handler = ProviderHttp.CreateHandler(TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), allowPrivateNetworks: false, new WebProxy(proxy.Url));
        // The stand-in's certificate is its own: accept it, and note whose it was, to show the TLS session reached the provider.
        string? certificate = null;
        ((SocketsHttpHandler)((DelegatingHandler)handler).InnerHandler!).SslOptions.RemoteCertificateValidationCallback =
            (_, presented, _, _) => (certificate = presented?.Subject) == "CN=provider.test";
        var http = new ProviderHttp(new OneClient(new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan }));

        var (internalTarget, _) = await SendTimedAsync(http, "https://10.1.2.3/send", TestContext.Current.CancellationToken);
        Assert.Equal((SendOutcome.Permanent, "Test: 10.1.2.3 resolves only to loopback, private or link-local addresses, which providers may not reach (Providers:AllowPrivateNetworks)"),
            (internalTarget.Outcome, internalTarget.Error));
        Assert.Empty(proxy.Requests);

        var (publicTarget, _) = await SendTimedAsync(http, "https://93.184.216.34/send", TestContext.Current.CancellationToken);
        Assert.Equal((SendOutcome.Sent, null), (publicTarget.Outcome, publicTarget.Error));
        Assert.Equal(["CONNECT 93.184.216.34:443 HTTP/1.1"], proxy.Requests);
        Assert.Equal("CN=provider.test", certificate);
        var seen = Assert.Single(provider.LogEntries);
        Assert.Equal("POST", seen.RequestMessage.Method);
    }

    [Fact]
    public async Task A_request_the_workers_concurrency_limit_refuses_is_an_outage_not_a_bug()
    {
        using var refusing = new RefusingHandler();
        var http = new ProviderHttp(new OneClient(new HttpClient(refusing)));

        var result = await http.SendAsync("Test", new HttpRequestMessage(HttpMethod.Post, "http://127.0.0.1:9/send"),
            answer => answer.Classify("unreachable"), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.True(result.ProviderUnavailable);   // uses up no retry: nothing was sent
        Assert.Contains("at their limit", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Test_connection_names_the_unreachable_host_without_the_user_info_of_its_url()
    {
        using var listener = SilentListener();
        var port = Port(listener);
        listener.Dispose();   // nothing listens there now: the connection is refused
        using var handler = new SocketsHttpHandler { ConnectCallback = ProviderHttp.ConnectWithin(TimeSpan.FromSeconds(5), allowPrivateNetworks: true) };
        var http = new ProviderHttp(new OneClient(new HttpClient(handler)));

        var check = await http.CheckAsync("Test", new HttpRequestMessage(HttpMethod.Get, $"http://practice-user:s3cret@127.0.0.1:{port}/v1/account"), TestContext.Current.CancellationToken);

        Assert.False(check.Ok);
        Assert.StartsWith($"Could not reach Test at http://127.0.0.1:{port}: ", check.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", check.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("practice-user", check.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("https://user:pa@ss@graph facebook.com/v25.0", "https://graph facebook.com/v25.0")]
    [InlineData("ftp://user:secret@files.example/x", "ftp://files.example/x")]
    [InlineData("user:secret@graph.facebook.com/v25.0", "graph.facebook.com/v25.0")]
    [InlineData("graph.facebook.com/v25.0", "graph.facebook.com/v25.0")]
    [InlineData("https://api.example/v1?contact=ops@example.com", "https://api.example/v1?contact=ops@example.com")]
    public void A_url_as_shown_keeps_everything_but_its_user_info(string written, string shown) =>
        Assert.Equal(shown, UrlText.WithoutUserInfo(written));

    /// <summary>As the resilience pipeline's concurrency limiter answers when its queue is full.</summary>
    private sealed class RefusingHandler : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            throw new Polly.RateLimiting.RateLimiterRejectedException();
    }

    [Fact]
    public async Task The_providers_client_never_follows_a_redirect()
    {
        using var provider = WireMockServer.Start();
        provider.Given(Request.Create().WithPath("/send").UsingPost()).RespondWith(Response.Create().WithStatusCode(307).WithHeader("Location", "/elsewhere"));
        provider.Given(Request.Create().WithPath("/elsewhere")).RespondWith(Response.Create().WithStatusCode(200));
        using var host = ProvidersHost();
        var http = host.Services.GetRequiredService<ProviderHttp>();

        var result = await http.SendAsync("Test", new HttpRequestMessage(HttpMethod.Post, $"{provider.Url}/send"),
            answer => answer.Classify($"Test HTTP {(int)answer.Status}"), TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Permanent, "Test HTTP 307"), (result.Outcome, result.Error));
        Assert.Single(provider.LogEntries);
    }

    [Fact]
    public async Task A_host_name_that_does_not_resolve_uses_up_a_retry_as_a_settings_mistake_not_an_outage()
    {
        using var handler = new SocketsHttpHandler { ConnectCallback = ProviderHttp.ConnectWithin(TimeSpan.FromSeconds(5), allowPrivateNetworks: true) };
        var http = new ProviderHttp(new OneClient(new HttpClient(handler)));

        var result = await http.SendAsync("Test", new HttpRequestMessage(HttpMethod.Post, "http://api.provider.invalid/send"),
            _ => SendResult.Sent("never"), TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Transient, false), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("Test: could not connect (NameResolutionError)", result.Error, StringComparison.Ordinal);
    }

    /// <summary>The services as the worker registers them; the test listeners are on loopback.</summary>
    private static IHost ProvidersHost(bool allowPrivateNetworks = true, Action<HostApplicationBuilder>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration["OUTBOXCOMMS_ENCRYPTION_KEY"] = TestKeys.Encryption;
        if (allowPrivateNetworks)
        {
            builder.Configuration["Providers:AllowPrivateNetworks"] = "true";
            builder.Configuration["Attachments:AllowPrivateNetworks"] = "true";
        }
        builder.AddProviders();
        configure?.Invoke(builder);
        return builder.Build();
    }

    [Fact]
    public async Task The_http_clients_log_nothing_per_request()
    {
        // HttpClientFactory's default handlers log four lines per request at Information: at
        // thousands of sends a second, a flood of log lines naming tenants' endpoints.
        using var server = WireMockServer.Start();
        server.Given(Request.Create().UsingAnyMethod()).RespondWith(Response.Create().WithStatusCode(200).WithBody("{}"));
        using var host = ProvidersHost(configure: builder =>
        {
            builder.AddDeliveryWebhooks();
            builder.Services.AddFakeLogging();
            builder.Logging.SetMinimumLevel(LogLevel.Trace);
        });
        var clients = host.Services.GetRequiredService<IHttpClientFactory>();

        foreach (var name in new[] { ProviderHttp.ClientName, AttachmentLoader.ClientName, AwsSesWebhook.ClientName })
        {
            using var response = await clients.CreateClient(name).GetAsync(new Uri($"{server.Url}/{name}"), TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(3, server.LogEntries.Count());
        Assert.DoesNotContain(host.Services.GetFakeLogCollector().GetSnapshot(), r => r.Category?.StartsWith("System.Net.Http", StringComparison.Ordinal) == true);
    }

    /// <summary>A POST to <paramref name="url"/>, and how long its result took.</summary>
    private static async Task<(SendResult Result, TimeSpan Waited)> SendTimedAsync(ProviderHttp http, string url, CancellationToken cancellationToken)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var result = await http.SendAsync("Test", new HttpRequestMessage(HttpMethod.Post, url), _ => SendResult.Sent("never"), cancellationToken);
        return (result, System.Diagnostics.Stopwatch.GetElapsedTime(started));
    }

    /// <summary>A self-signed certificate for a test server, as a PFX file (password "test").</summary>
    private static string SelfSignedPfx()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=provider.test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var path = Path.Combine(Path.GetTempPath(), $"provider-{Guid.NewGuid():N}.pfx");
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, "test"));
        return path;
    }

    /// <summary>A port whose connections the kernel completes (the backlog has room) but nobody ever answers: a TLS handshake on it hangs.</summary>
    private static Socket SilentListener()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        return listener;
    }

    private static int Port(Socket listener) => ((IPEndPoint)listener.LocalEndPoint!).Port;

    private sealed class OneClient(HttpClient client) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => client;
    }
}
