using MailKit.Net.Smtp;
using MailKit.Security;

namespace OutboxComms.Core.Providers.Email;

/// <summary>One company's login on one SMTP server: clients are shared only between sends with the same endpoint.</summary>
internal readonly record struct SmtpEndpoint(Guid CompanyId, string Host, int Port, SecureSocketOptions Security, string? Username);

/// <summary>
/// Connected, authenticated SMTP clients kept between sends, so a batch pays for TCP, TLS and AUTH
/// once per connection instead of once per message. A client serves one send at a time (taken, then
/// returned); one idle for <see cref="IdleTimeout"/> is closed with QUIT, well before servers drop idle
/// sessions themselves (RFC 5321 4.5.3.2.7 lets them after 5 minutes); a client that failed is never returned.
/// </summary>
internal sealed class SmtpConnectionPool : IAsyncDisposable
{
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(30);
    /// <summary>Idle clients kept per endpoint; more concurrent sends than this open and close their own.</summary>
    private const int MaxIdlePerEndpoint = 4;

    private readonly TimeProvider time;
    private readonly Lock gate = new();
    private readonly Dictionary<SmtpEndpoint, List<IdleClient>> idle = [];
    private readonly ITimer sweeper;
    private bool disposed;

    public SmtpConnectionPool(TimeProvider time)
    {
        this.time = time;
        sweeper = time.CreateTimer(_ => CloseExpired(), null, IdleTimeout / 3, IdleTimeout / 3);
    }

    /// <summary>The most recently used idle client of the endpoint, or null when a new one must be opened.</summary>
    public SmtpClient? TryTake(SmtpEndpoint endpoint)
    {
        var now = time.GetTimestamp();
        List<SmtpClient>? stale = null;
        SmtpClient? taken = null;
        lock (gate)
        {
            if (idle.TryGetValue(endpoint, out var clients))
            {
                while (taken is null && clients.Count > 0)
                {
                    var last = clients[^1];
                    clients.RemoveAt(clients.Count - 1);
                    if (IsUsable(last, now))
                    {
                        taken = last.Client;
                    }
                    else
                    {
                        (stale ??= []).Add(last.Client);
                    }
                }
                if (clients.Count == 0)
                {
                    idle.Remove(endpoint);
                }
            }
        }
        Quit(stale);
        return taken;
    }

    /// <summary>Gives back a client whose send succeeded, for the next send to the same endpoint.</summary>
    public void Return(SmtpEndpoint endpoint, SmtpClient client)
    {
        lock (gate)
        {
            if (!disposed && client.IsConnected)
            {
                if (!idle.TryGetValue(endpoint, out var clients))
                {
                    idle[endpoint] = clients = [];
                }
                if (clients.Count < MaxIdlePerEndpoint)
                {
                    clients.Add(new IdleClient(client, time.GetTimestamp()));
                    return;
                }
            }
        }
        Quit([client]);
    }

    public async ValueTask DisposeAsync()
    {
        await sweeper.DisposeAsync();
        List<SmtpClient> all;
        lock (gate)
        {
            disposed = true;
            all = [.. idle.Values.SelectMany(clients => clients).Select(c => c.Client)];
            idle.Clear();
        }
        await Task.WhenAll(all.Select(QuitAsync));
    }

    private void CloseExpired()
    {
        var now = time.GetTimestamp();
        List<SmtpClient>? expired = null;
        lock (gate)
        {
            foreach (var (endpoint, clients) in idle)
            {
                clients.RemoveAll(entry =>
                {
                    if (IsUsable(entry, now))
                    {
                        return false;
                    }
                    (expired ??= []).Add(entry.Client);
                    return true;
                });
                if (clients.Count == 0)
                {
                    idle.Remove(endpoint);
                }
            }
        }
        Quit(expired);
    }

    private bool IsUsable(IdleClient entry, long now) =>
        entry.Client.IsConnected && time.GetElapsedTime(entry.IdleSince, now) < IdleTimeout;

    /// <summary>Closes politely in the background: nobody waits for a goodbye.</summary>
    private static void Quit(List<SmtpClient>? clients)
    {
        foreach (var client in clients ?? [])
        {
            _ = QuitAsync(client);
        }
    }

    private static async Task QuitAsync(SmtpClient client)
    {
        try
        {
            await client.DisconnectAsync(quit: true);
        }
        catch (Exception ex) when (ex is IOException or SmtpProtocolException or SmtpCommandException or TimeoutException or ObjectDisposedException)
        {
            // The server went first; the socket is closed either way.
        }
        finally
        {
            client.Dispose();
        }
    }

    private readonly record struct IdleClient(SmtpClient Client, long IdleSince);
}
