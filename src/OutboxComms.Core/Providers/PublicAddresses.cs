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
}

/// <summary>The attachment host resolved only to addresses attachment links may not reach.</summary>
public sealed class NonPublicAddressException(string message) : Exception(message);

/// <summary>
/// Connects attachment fetches only to public addresses. Checked when the connection is made, on
/// the addresses actually dialled (so a DNS answer that changes between a check and the connect,
/// or a redirect to an internal host, cannot get past it).
/// </summary>
public static class PublicAddresses
{
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> ConnectCallback(bool allowPrivateNetworks) =>
        async (context, cancellationToken) =>
        {
            var host = context.DnsEndPoint.Host;
            var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, cancellationToken);
            var allowed = allowPrivateNetworks ? addresses : [.. addresses.Where(IsPublic)];
            if (allowed.Length == 0)
            {
                throw new NonPublicAddressException(
                    $"{host} resolves only to loopback, private or link-local addresses, which attachment links may not reach (Attachments:AllowPrivateNetworks)");
            }
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        };

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
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var first = address.GetAddressBytes()[0];
            return !(IPAddress.IsLoopback(address) || address.Equals(IPAddress.IPv6Any) || address.IsIPv6LinkLocal || address.IsIPv6SiteLocal
                || address.IsIPv6Multicast || (first & 0xFE) == 0xFC);
        }
        return false;
    }
}
