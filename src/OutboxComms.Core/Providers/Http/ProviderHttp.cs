using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers.Http;

/// <summary>
/// The HTTP plumbing every HTTP provider shares: send, read the body, turn transport failures and
/// the statuses every API agrees on into a <see cref="SendResult"/>, parse Retry-After. A provider's
/// own file only builds its request and reads its own success and error shapes.
/// </summary>
public sealed class ProviderHttp(IHttpClientFactory clients)
{
    public const string ClientName = "providers";

    /// <summary>Provider requests one process has in flight at once; beyond them, up to <see cref="MaxRequestsQueued"/> wait.</summary>
    public const int MaxRequestsInFlight = 256;

    /// <summary>Provider requests that wait for a place; one more is not sent ("at their limit").</summary>
    public const int MaxRequestsQueued = 1024;

    /// <summary>How long a provider's TCP connection may take to open, well inside the request's 25 s.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long setting up a connection may take in all, the TLS handshake included: a load balancer
    /// that accepts connections and then says nothing is an outage too, not a request timeout.
    /// </summary>
    public static readonly TimeSpan SetupTimeout = TimeSpan.FromSeconds(15);

    /// <summary>What a provider address on a private network is refused with.</summary>
    public const string PrivateNetworkRefusal = "providers may not reach (Providers:AllowPrivateNetworks)";

    /// <summary>
    /// The handler the providers' client sends through: TCP connections opened within
    /// <paramref name="connectTimeout"/> (to public addresses only unless <paramref name="allowPrivateNetworks"/>,
    /// see <see cref="PublicAddresses"/>), connections set up (TLS included) within <paramref name="setupTimeout"/>,
    /// through <paramref name="proxy"/> (default: the environment's, HTTP_PROXY / HTTPS_PROXY / NO_PROXY),
    /// never following a redirect (no provider API answers a send with one).
    /// Its client must have no timeout of its own (the resilience pipeline bounds each request), so
    /// that a <see cref="TimeoutException"/> under a cancellation can only mean the setup ran out.
    /// </summary>
    public static HttpMessageHandler CreateHandler(TimeSpan connectTimeout, TimeSpan setupTimeout, bool allowPrivateNetworks, IWebProxy? proxy = null)
    {
        proxy ??= HttpClient.DefaultProxy;
        var sockets = new SocketsHttpHandler
        {
            Proxy = proxy,
            ConnectCallback = ConnectWithin(connectTimeout, allowPrivateNetworks, proxy),
            ConnectTimeout = setupTimeout,
            AllowAutoRedirect = false,
        };
        // The providers' own hosts are looked up once a minute; a company's base URL (its settings
        // may name any host, whose DNS the tenant may control) at every request.
        return new PublicAddresses.Guard(sockets, proxy, allowPrivateNetworks, PrivateNetworkRefusal, maxRedirects: 0, recheck: TimeSpan.FromMinutes(1), IsProvidersOwnHost);
    }

    // The hosts of the providers' APIs (their DNS is the provider's, not a tenant's), and Amazon's.
    private static readonly HashSet<string> ProviderHosts = new(StringComparer.OrdinalIgnoreCase)
    {
        "graph.facebook.com", "api.mailgun.net", "api.eu.mailgun.net", "api.sendgrid.com", "api.resend.com",
        "api.twilio.com", "conversations.messagebird.com", "rest.messagebird.com", "api.gupshup.io",
    };

    /// <summary>A provider's own API host, whose public address may be kept for a minute behind a proxy.</summary>
    internal static bool IsProvidersOwnHost(string host) =>
        ProviderHosts.Contains(host.TrimEnd('.')) || host.TrimEnd('.').EndsWith(".amazonaws.com", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Opens the connection within <paramref name="timeout"/>, failing with a socket error: a
    /// provider whose address swallows connection attempts is then "could not connect" (an
    /// outage: nothing was sent), not a request timeout, which could have come after the provider
    /// took the message. Only to public addresses unless <paramref name="allowPrivateNetworks"/>
    /// (see <see cref="PublicAddresses.ConnectCallback"/>): a tenant's base URL override cannot
    /// reach the deployment's internal network.
    /// </summary>
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> ConnectWithin(TimeSpan timeout, bool allowPrivateNetworks, IWebProxy? proxy = null) =>
        PublicAddresses.ConnectCallback(allowPrivateNetworks, PrivateNetworkRefusal, proxy, timeout);

    /// <summary>Sends <paramref name="request"/>; <paramref name="interpret"/> reads any answer that arrived.</summary>
    public async Task<SendResult> SendAsync(string provider, HttpRequestMessage request, Func<ProviderResponse, SendResult> interpret, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(interpret);
        ProviderResponse response;
        var client = clients.CreateClient(ClientName);
        try
        {
            response = await ReadAsync(client, request, cancellationToken);
        }
        catch (Polly.RateLimiting.RateLimiterRejectedException)
        {
            // This worker already has as many provider requests in flight and queued as it allows
            // (ProviderExtensions): nothing was sent, and it is this process's load, not the message.
            return SendResult.Unavailable($"{provider}: not sent: this worker's provider requests in flight and queued are at their limit");
        }
        catch (HttpRequestException ex) when (ex.InnerException is NonPublicAddressException refused)
        {
            // The settings point the provider at an internal address: no retry will change that.
            return SendResult.Permanent($"{provider}: {refused.Message}");
        }
        catch (HttpRequestException ex)
        {
            // No connection (refused, not opened in time, or the proxy refused the tunnel): certainly
            // not taken, so an outage. A name that does not resolve or a certificate that does not
            // validate is certainly not taken either, but far more often the settings than an outage:
            // those use up retries, so the practice hears of it in minutes. A connection lost after
            // the request went out may have delivered it: that uses up a retry too.
            return ex.HttpRequestError switch
            {
                HttpRequestError.ConnectionError or HttpRequestError.ProxyTunnelError =>
                    SendResult.Unavailable($"{provider}: could not connect ({ex.HttpRequestError}): {ex.Message}"),
                HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError =>
                    SendResult.Transient($"{provider}: could not connect ({ex.HttpRequestError}): {ex.Message}"),
                _ => SendResult.Transient($"{provider}: connection lost after sending ({ex.HttpRequestError}): {ex.Message}"),
            };
        }
        catch (TaskCanceledException ex) when (ex.InnerException is TimeoutException setup && !cancellationToken.IsCancellationRequested
                                                && client.Timeout == Timeout.InfiniteTimeSpan)
        {
            // The handler's ConnectTimeout (see CreateHandler): the connection was never set up, so
            // nothing was sent. Only so when the client has no timeout of its own: an HttpClient
            // timeout has the same shape, and may come after the provider took the request.
            return SendResult.Unavailable($"{provider}: could not connect (ConnectTimeout): {setup.Message}");
        }
        catch (Exception ex) when (IsTimeout(ex, cancellationToken))
        {
            // The provider may have taken it and not answered in time: a resend may duplicate it.
            return SendResult.Transient($"{provider}: the request timed out");
        }
        return interpret(response);
    }

    /// <summary>An authenticated read-only call for "test connection", answered in a practice's words.</summary>
    public Task<ConnectionCheck> CheckAsync(string provider, HttpRequestMessage request, CancellationToken cancellationToken) =>
        CheckAsync(provider, request, _ => null, cancellationToken);

    /// <summary>
    /// As <see cref="CheckAsync(string, HttpRequestMessage, CancellationToken)"/>, with the provider's own
    /// reading of answers first (e.g. a key that may send but not read is fine); null leaves an answer
    /// to the generic wording.
    /// </summary>
    public async Task<ConnectionCheck> CheckAsync(string provider, HttpRequestMessage request, Func<ProviderResponse, ConnectionCheck?> interpret, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(interpret);
        try
        {
            var response = await ReadAsync(clients.CreateClient(ClientName), request, cancellationToken);
            return interpret(response) ?? response.Status switch
            {
                _ when response.IsSuccess => new ConnectionCheck(true, $"Connected to {provider} and the credentials were accepted."),
                HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden =>
                    new ConnectionCheck(false, $"{provider} rejected the credentials (HTTP {(int)response.Status}). Check the API key or token."),
                HttpStatusCode.NotFound =>
                    new ConnectionCheck(false, $"{provider} does not know this account (HTTP 404). Check the account, phone number or domain id."),
                _ => new ConnectionCheck(false, $"{provider} answered HTTP {(int)response.Status}: {Truncate(response.Body, 300)}"),
            };
        }
        catch (HttpRequestException ex)
        {
            return new ConnectionCheck(false, $"Could not reach {provider} at {(request.RequestUri is { } url ? UrlText.Origin(url) : null)}: {ex.Message}");
        }
        catch (Exception ex) when (IsTimeout(ex, cancellationToken))
        {
            return new ConnectionCheck(false, $"{provider} did not answer in time.");
        }
    }

    /// <summary>
    /// A file name for a multipart form's Content-Disposition: .NET refuses one with a double quote
    /// inside (Invoice "Final".pdf), which the API and MIME mail take; it goes as single quotes.
    /// </summary>
    public static string FormFileName(string fileName) => fileName.Replace('"', '\'');

    /// <summary>
    /// A request that ran out of time: the client pipeline's own timeout (Polly's rejection), or
    /// HttpClient's; not a cancellation of ours (shutdown, the send timeout), which propagates.
    /// </summary>
    public static bool IsTimeout(Exception exception, CancellationToken cancellationToken) =>
        exception is Polly.Timeout.TimeoutRejectedException || exception is TaskCanceledException && !cancellationToken.IsCancellationRequested;

    private static async Task<ProviderResponse> ReadAsync(HttpClient client, HttpRequestMessage request, CancellationToken cancellationToken)
    {
        using var response = await client.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        return new ProviderResponse(response.StatusCode, body, RetryAfter(response.Headers.RetryAfter)) { Headers = HeadersOf(response) };
    }

    private static Dictionary<string, string> HeadersOf(HttpResponseMessage response) =>
        response.Headers.Concat(response.Content.Headers)
            .GroupBy(h => h.Key, StringComparer.OrdinalIgnoreCase)
            .ToDictionary(g => g.Key, g => string.Join(", ", g.SelectMany(h => h.Value)), StringComparer.OrdinalIgnoreCase);

    private static TimeSpan? RetryAfter(RetryConditionHeaderValue? header) =>
        header?.Delta ?? (header?.Date is { } date ? date - DateTimeOffset.UtcNow : null);

    public static string Truncate(string text, int length) => StorableText.Truncate(text, length);

    public static AuthenticationHeaderValue Basic(string user, string password) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}")));

    public static AuthenticationHeaderValue Bearer(string token) => new("Bearer", token);

    /// <summary>
    /// <paramref name="relative"/> (built from a company's ids) under the provider's base URL, never
    /// elsewhere: an id written as an absolute URL ("https://elsewhere/x") or "//elsewhere" would
    /// replace the base, and the request's credentials would go to that host.
    /// </summary>
    public static Uri Endpoint(Uri? configured, string defaultBase, string relative)
    {
        var root = configured ?? new Uri(defaultBase);
        var endpoint = new Uri(root, relative);
        if (Uri.Compare(endpoint, root, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) != 0)
        {
            throw new InvalidOperationException($"the provider account's ids would send the request away from {UrlText.Origin(root)}: check the settings' ids");
        }
        return endpoint;
    }
}

/// <summary>An HTTP answer from a provider, read whole.</summary>
public sealed record ProviderResponse(HttpStatusCode Status, string Body, TimeSpan? RetryAfter)
{
    public bool IsSuccess => (int)Status is >= 200 and < 300;

    /// <summary>
    /// The response headers (content headers included, names case-insensitive), for APIs that answer
    /// in them: SendGrid's <c>X-Message-Id</c>, AWS's <c>x-amzn-ErrorType</c>.
    /// </summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;

    /// <summary>
    /// A 2xx: sent, with the provider's message id when the answer has one — unless the body is
    /// not a JSON object at all, which no answer of these providers is: then it is not the
    /// provider's answer (a wrong base URL, a proxy's page) and is retried, as SENT with no id
    /// would never be matched by a delivery webhook.
    /// </summary>
    public SendResult SentWithId(string provider, string? messageId, decimal? cost = null, string? costCurrency = null) =>
        Json is { ValueKind: JsonValueKind.Object }
            ? SendResult.Sent(messageId, cost, costCurrency)
            : SendResult.Transient($"{provider} (HTTP {(int)Status}) answered without its JSON: check the base URL; {ProviderHttp.Truncate(Body, 200)}");

    private JsonElement? json;
    private bool jsonRead;

    /// <summary>The body as JSON, or null when it is not JSON (some providers answer HTML on errors); parsed once.</summary>
    public JsonElement? Json
    {
        get
        {
            if (!jsonRead)
            {
                try
                {
                    using var document = JsonDocument.Parse(Body);
                    json = document.RootElement.Clone();
                }
                catch (JsonException)
                {
                    json = null;
                }
                jsonRead = true;
            }
            return json;
        }
    }

    /// <summary>
    /// What every HTTP API agrees on, for errors a provider's own codes do not decide:
    /// 408/429/503 the provider unavailable and other 5xx transient (both honouring Retry-After), 401/403 an authentication failure, other 4xx permanent.
    /// <paramref name="error"/> is already in the provider's words with its own code, e.g. "Twilio 21211: invalid To".
    /// </summary>
    public SendResult Classify(string error) => (int)Status switch
    {
        // 408, 429 and 503 say the request was not processed; after another 5xx it may have been,
        // and a resend may duplicate the message, so those use up a retry.
        408 or 429 or 503 => SendResult.Unavailable(error, RetryAfter),
        >= 500 => SendResult.Transient(error, RetryAfter),
        401 or 403 => SendResult.Permanent($"{error} (authentication failed: check the credentials in settings)"),
        _ => SendResult.Permanent(error),
    };
}
