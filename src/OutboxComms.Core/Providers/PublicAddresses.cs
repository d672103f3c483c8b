using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace OutboxComms.Core.Providers;

/// <summary>Attachment fetching settings (<c>Attachments</c> section).</summary>
public sealed class AttachmentOptions
{
    public const string Section = "Attachments";

    /// <summary>
    /// Lets attachment links reach loopback, private, link-local and similar addresses (a file
    /// server on the practice's own network). Off by default: a tenant could otherwise make the
    /// worker fetch an internal address (a cloud metadata endpoint, an admin page) and mail the
    /// answer to a customer address the tenant controls.
    /// </summary>
    public bool AllowPrivateNetworks { get; set; }

    /// <summary>
    /// The time all of one message's links may take, headers and bodies (20 s by default). Keep it
    /// below the workers' Dispatch:SendTimeout (30 s), which also covers the provider's call: a
    /// slow file server is then that message's transient failure, not taken for its email
    /// provider's outage. Raise both for large files behind slow links.
    /// </summary>
    public TimeSpan FetchTimeout { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Days a message's files are kept after it stopped being PENDING (sent, delivered, failed,
    /// cancelled…), 90 by default; 0 keeps them for ever. Invoices and filings are the most
    /// sensitive personal data held here (India's DPDP Act: kept no longer than their purpose),
    /// and once sent they are the provider's and the client's. A message replayed after its files
    /// went fails with that reason rather than going out without them.
    /// </summary>
    public int RetentionDays { get; set; } = 90;
}

/// <summary>Provider connection settings (<c>Providers</c> section).</summary>
public sealed class ProviderNetworkOptions
{
    public const string Section = "Providers";

    /// <summary>
    /// Lets provider connections reach loopback, private, link-local and similar addresses: a
    /// company's SMTP server or a provider base URL on the deployment's own network (a mail sink in
    /// development, a relay of a single-practice installation). Off by default: a tenant could
    /// otherwise point its SMTP host or a provider's base URL at an internal address and read what
    /// answers there in its settings' connection test or its messages' errors.
    /// </summary>
    public bool AllowPrivateNetworks { get; set; }
}

/// <summary>The host resolved only to addresses that attachment links or providers may not reach.</summary>
public sealed class NonPublicAddressException(string message) : Exception(message);

/// <summary>
/// Keeps the connections a tenant can aim (attachment links, providers' hosts) to public
/// addresses. Checked when the connection is made, on the addresses actually dialled (so a DNS
/// answer that changes between a check and the connect, or a redirect to an internal host, cannot
/// get past it); through a proxy, which the operator chose and may be anywhere, each target and
/// each redirect hop is checked by <see cref="Guard"/> instead.
/// </summary>
public static class PublicAddresses
{
    /// <summary>
    /// A host that is plainly internal without asking DNS: localhost (or a name under it), or an
    /// address literal that is not public. Settings and requests naming one are refused at once; a
    /// name that resolves to such an address is refused when dialled.
    /// </summary>
    public static bool IsPlainlyInternal(string host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var name = host.TrimEnd('.');
        return name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase)
            || (IPAddress.TryParse(host.Trim('[', ']'), out var address) && !IsPublic(address));
    }

    /// <summary>What an attachment link on a private network is refused with.</summary>
    public const string AttachmentRefusal = "attachment links may not reach (Attachments:AllowPrivateNetworks)";

    /// <summary>
    /// Dials public addresses only unless <paramref name="allowPrivateNetworks"/>, or the proxy
    /// <paramref name="proxy"/> names for the request; within <paramref name="timeout"/> when given,
    /// failing then with a socket error ("could not connect").
    /// </summary>
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> ConnectCallback(
        bool allowPrivateNetworks, string refusal, IWebProxy? proxy = null, TimeSpan? timeout = null) =>
        async (context, cancellationToken) =>
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (timeout is { } limit)
            {
                deadline.CancelAfter(limit);
            }
            // An HTTPS target through a proxy is reached by a CONNECT tunnel, which only the handler
            // itself sends (our clients send GET and POST), and only to its proxy.
            var dialsProxy = proxy is not null && context.InitialRequestMessage.Method == HttpMethod.Connect
                             || context.InitialRequestMessage.RequestUri is { } target && ProxyFor(proxy, target) is { } via
                                && string.Equals(via.IdnHost, context.DnsEndPoint.Host, StringComparison.OrdinalIgnoreCase) && via.Port == context.DnsEndPoint.Port;
            try
            {
                var socket = await ConnectAsync(context.DnsEndPoint.Host, context.DnsEndPoint.Port, allowPrivateNetworks || dialsProxy, refusal, deadline.Token);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new SocketException((int)SocketError.TimedOut);
            }
        };

    /// <summary>The proxy <paramref name="target"/> goes through, or null when it goes direct.</summary>
    public static Uri? ProxyFor(IWebProxy? proxy, Uri target) =>
        proxy is null || proxy.IsBypassed(target) ? null : proxy.GetProxy(target);

    /// <summary>
    /// Around a handler that follows no redirects itself: follows up to <paramref name="maxRedirects"/>
    /// (GET only), and, unless <paramref name="allowPrivateNetworks"/>, checks every target that goes
    /// through the proxy — the first and each redirect hop — by resolving its host here. A plain-HTTP
    /// proxy connection serves every host, so the connect check cannot see them. A host found public
    /// is looked up again after <paramref name="recheck"/> (.NET keeps no DNS cache; zero: every
    /// time, for hosts whose DNS a tenant controls); the proxy resolves it itself, so the proxy's
    /// own rules are the last guard. Where this machine cannot resolve public names, allow private
    /// networks and let the proxy's policy decide. <paramref name="cacheable"/>, when given, names
    /// the hosts whose answer may be kept that long (the others are looked up every time).
    /// </summary>
    public sealed class Guard(HttpMessageHandler inner, IWebProxy proxy, bool allowPrivateNetworks, string refusal, int maxRedirects, TimeSpan recheck,
        Func<string, bool>? cacheable = null) : DelegatingHandler(inner)
    {
        private readonly long recheckMs = (long)recheck.TotalMilliseconds;
        private readonly ConcurrentDictionary<string, long> publicUntil = new(StringComparer.OrdinalIgnoreCase);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            for (var hops = 0; ; hops++)
            {
                await CheckAsync(request.RequestUri, cancellationToken);
                var response = await base.SendAsync(request, cancellationToken);
                if (hops >= maxRedirects || request.Method != HttpMethod.Get || (int)response.StatusCode is not (301 or 302 or 303 or 307 or 308)
                    || response.Headers.Location is not { } location || request.RequestUri is not { } from
                    || new Uri(from, location) is not { Scheme: "http" or "https" } next || (from.Scheme == "https" && next.Scheme == "http"))
                {
                    return response;
                }
                response.Dispose();
                var hop = new HttpRequestMessage(HttpMethod.Get, next);
                foreach (var header in request.Headers.Where(h => h.Key is not ("Authorization" or "Cookie")))
                {
                    hop.Headers.TryAddWithoutValidation(header.Key, header.Value);
                }
                request = hop;
            }
        }

        private async Task CheckAsync(Uri? target, CancellationToken cancellationToken)
        {
            if (allowPrivateNetworks || target is null || ProxyFor(proxy, target) is null)
            {
                return;
            }
            var host = target.IdnHost.Trim('[', ']');
            if (publicUntil.TryGetValue(host, out var until) && Environment.TickCount64 < until)
            {
                return;
            }
            try
            {
                await ResolveAsync(host, allowPrivateNetworks: false, refusal, cancellationToken);
            }
            catch (NonPublicAddressException refused)
            {
                publicUntil.TryRemove(host, out _);
                throw new HttpRequestException(HttpRequestError.ConnectionError, refused.Message, refused);
            }
            catch (SocketException failed)
            {
                // As the handler reports a name it cannot resolve, so callers read it the same way.
                throw new HttpRequestException(HttpRequestError.NameResolutionError, $"{failed.Message} ({host})", failed);
            }
            if (recheckMs > 0 && (cacheable?.Invoke(host) ?? true))
            {
                publicUntil[host] = Environment.TickCount64 + recheckMs;
            }
        }
    }

    /// <summary>
    /// A TCP connection to <paramref name="host"/> on one of the addresses <see cref="ResolveAsync"/>
    /// allows: what every outbound connection a tenant can aim (attachment links, providers) dials through.
    /// </summary>
    public static async Task<Socket> ConnectAsync(string host, int port, bool allowPrivateNetworks, string refusal, CancellationToken cancellationToken)
    {
        var addresses = await ResolveAsync(host, allowPrivateNetworks, refusal, cancellationToken);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, port, cancellationToken);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The addresses <paramref name="host"/> may be dialled on: all it resolves to with
    /// <paramref name="allowPrivateNetworks"/>, else its public ones, and none at all is a
    /// <see cref="NonPublicAddressException"/> ending "which <paramref name="refusal"/>".
    /// </summary>
    public static async Task<IPAddress[]> ResolveAsync(string host, bool allowPrivateNetworks, string refusal, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(host);
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
        var allowed = allowPrivateNetworks ? addresses : [.. addresses.Where(IsPublic)];
        return allowed.Length > 0 ? allowed
            : throw new NonPublicAddressException($"{host} resolves only to loopback, private or link-local addresses, which {refusal}");
    }

    /// <summary>Whether an address is on the public internet (not loopback, private, link-local, shared, multicast or reserved).</summary>
    public static bool IsPublic(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            var b = address.GetAddressBytes();
            return !(b[0] is 0 or 10 or 127 or >= 224
                || (b[0] == 169 && b[1] == 254)
                || (b[0] == 172 && b[1] is >= 16 and <= 31)
                || (b[0] == 192 && b[1] == 168)
                || (b[0] == 100 && b[1] is >= 64 and <= 127)
                || (b[0] == 192 && b[1] == 0 && b[2] == 0)
                || (b[0] == 198 && b[1] is 18 or 19));
        }
        if (address.AddressFamily == AddressFamily.InterNetworkV6 && EmbeddedIPv4(address.GetAddressBytes()) is { } embedded)
        {
            // NAT64 (64:ff9b::/96), 6to4 (2002::/16) and IPv4-compatible (::/96) addresses reach the
            // IPv4 address inside them: 64:ff9b::a9fe:a9fe is 169.254.169.254.
            return IsPublic(embedded);
        }
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var b = address.GetAddressBytes();
            return !(IPAddress.IsLoopback(address) || address.Equals(IPAddress.IPv6Any) || address.IsIPv6LinkLocal || address.IsIPv6SiteLocal
                || address.IsIPv6Multicast || (b[0] & 0xFE) == 0xFC
                || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1));   // 64:ff9b:1::/48, local-use NAT64
        }
        return false;
    }

    /// <summary>The IPv4 address an IPv6 address of a translation or tunnelling prefix carries, if any.</summary>
    private static IPAddress? EmbeddedIPv4(byte[] b)
    {
        bool Zero(int from, int to) => b[from..to].All(x => x == 0);
        if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && Zero(4, 12))
        {
            return new IPAddress(b[12..16]);   // NAT64, the well-known prefix
        }
        if (b[0] == 0x20 && b[1] == 0x02)
        {
            return new IPAddress(b[2..6]);     // 6to4
        }
        if (Zero(0, 12) && !Zero(12, 16) && !(Zero(12, 15) && b[15] == 1))
        {
            return new IPAddress(b[12..16]);   // IPv4-compatible (deprecated), not ::1
        }
        return null;
    }
}
