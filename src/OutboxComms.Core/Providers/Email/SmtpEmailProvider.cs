using System.Globalization;
using System.Net.Sockets;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using Microsoft.Extensions.Options;
using MimeKit;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// Sends through the company's own SMTP server with MailKit. Connections are kept between sends
/// (<see cref="SmtpConnectionPool"/>) so a batch does not pay TCP, TLS and AUTH per message.
/// No cost is reported: the company's rate card prices SMTP mail.
/// </summary>
public sealed class SmtpEmailProvider(AttachmentLoader attachmentLoader, TimeProvider time, IOptions<ProviderNetworkOptions> network) : IMessageProvider, IAsyncDisposable
{
    private const string AuthenticationFailed = "SMTP authentication failed: check the username and password in settings";
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(30);
    private readonly SmtpConnectionPool pool = new(time);

    public string Name { get; } = WireName<EmailProvider>.Of(EmailProvider.Smtp);

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.Email];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        if (MissingSetting(account) is { } missing)
        {
            return SendResult.Permanent($"SMTP: {missing}");
        }
        // Attachments are fetched before a connection is taken, so a slow file server never holds one.
        var (attachments, notLoaded) = await EmailApi.LoadAttachmentsAsync(attachmentLoader, "SMTP", message, cancellationToken);
        if (notLoaded is not null)
        {
            return notLoaded;
        }
        var mime = EmailComposition.Build(message, account, attachments);
        var endpoint = EndpointOf(account);
        SmtpClient? client = null;
        var connecting = true;
        try
        {
            client = pool.TryTake(endpoint);
            var pooled = client is not null;
            client ??= await OpenAsync(endpoint, account.SmtpPassword, cancellationToken);
            connecting = false;
            try
            {
                await SendTrackedAsync(client, mime, cancellationToken);
            }
            catch (Exception ex) when (pooled && !RecipientAccepted(client)
                                       && (IsConnectionFailure(ex) || ex is SmtpCommandException { StatusCode: SmtpStatusCode.ServiceNotAvailable }))
            {
                // An idle connection the server had closed meanwhile, silently or with a 421 (its
                // idle timeout, its messages-per-connection limit): none of this message reached
                // it, and the server itself may be fine. Once more, on a fresh connection.
                client.Dispose();
                client = null;
                connecting = true;
                client = await OpenAsync(endpoint, account.SmtpPassword, cancellationToken);
                connecting = false;
                await SendTrackedAsync(client, mime, cancellationToken);
            }
            pool.Return(endpoint, client);
            client = null;
            return SendResult.Sent(mime.MessageId);
        }
        catch (NonPublicAddressException ex)
        {
            // The settings point at an internal address: no retry will change that.
            return SendResult.Permanent($"SMTP: {ex.Message}");
        }
        catch (AuthenticationException ex) when (ex.InnerException is SmtpCommandException refusal && IsTemporary(refusal))
        {
            // e.g. 454 4.7.0: the server could not check the password just now; it may well be right.
            return Classify(refusal);
        }
        catch (AuthenticationException)
        {
            return SendResult.Permanent(AuthenticationFailed);
        }
        catch (SmtpCommandException ex)
        {
            return Classify(ex);
        }
        catch (NotSupportedException ex)
        {
            // The server lacks what the settings ask for (STARTTLS, AUTH): a retry will not grow it.
            return SendResult.Permanent($"SMTP {endpoint.Host}:{endpoint.Port}: {ex.Message}");
        }
        catch (Exception ex) when (IsConnectionFailure(ex))
        {
            // Not connected, or lost before the server accepted a recipient: the server has nothing
            // of ours, an outage. Lost later: the message may have gone, so a resend may duplicate
            // it and uses up a retry. A host name that does not resolve or a certificate that does
            // not validate is far more often the settings than an outage: those use up retries, so
            // the practice hears of it in minutes rather than a day.
            var error = $"SMTP connection to {endpoint.Host}:{endpoint.Port} failed: {FirstLine(ex.Message)}";
            var misconfigured = ex is SslHandshakeException or SocketException { SocketErrorCode: SocketError.HostNotFound or SocketError.NoData };
            return (connecting || !RecipientAccepted(client)) && !misconfigured ? SendResult.Unavailable(error) : SendResult.Transient(error);
        }
        finally
        {
            // A client that failed in any way may be mid-transaction: it is never reused.
            client?.Dispose();
        }
    }

    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (account.SmtpHost is not { Length: > 0 })
        {
            return new ConnectionCheck(false, "No SMTP server is configured: enter its host name in settings.");
        }
        var endpoint = EndpointOf(account);
        var server = $"{endpoint.Host}:{endpoint.Port}";
        try
        {
            using var client = await OpenAsync(endpoint, account.SmtpPassword, cancellationToken);
            await client.NoOpAsync(cancellationToken);
            var how = endpoint.Security switch
            {
                SecureSocketOptions.StartTls => "with STARTTLS",
                SecureSocketOptions.SslOnConnect => "over SSL/TLS",
                SecureSocketOptions.None => "without encryption",
                _ => client.IsSecure ? "with TLS" : "without encryption",
            };
            await client.DisconnectAsync(quit: true, cancellationToken);
            return new ConnectionCheck(true, endpoint.Username is { } user
                ? $"Connected to {server} {how} and logged in as {user}."
                : $"Connected to {server} {how} (no login is configured).");
        }
        catch (NonPublicAddressException ex)
        {
            return new ConnectionCheck(false, ex.Message);
        }
        catch (AuthenticationException ex) when (ex.InnerException is SmtpCommandException refusal && IsTemporary(refusal))
        {
            return new ConnectionCheck(false, $"{server} could not check the login just now ({(int)refusal.StatusCode} {OneLine(refusal.Message)}); try again later.");
        }
        catch (AuthenticationException)
        {
            return new ConnectionCheck(false, "The server rejected the username or password.");
        }
        catch (SmtpCommandException ex)
        {
            return new ConnectionCheck(false, $"{server} answered {(int)ex.StatusCode}: {OneLine(ex.Message)}");
        }
        catch (Exception ex) when (ex is NotSupportedException || IsConnectionFailure(ex))
        {
            return new ConnectionCheck(false, $"Could not connect to {server}: {FirstLine(ex.Message)}");
        }
    }

    public ValueTask DisposeAsync() => pool.DisposeAsync();

    private static Task SendTrackedAsync(SmtpClient client, MimeMessage mime, CancellationToken cancellationToken)
    {
        if (client is TrackedSmtpClient tracked)
        {
            tracked.RecipientAccepted = false;
        }
        return client.SendAsync(mime, cancellationToken);
    }

    private static bool RecipientAccepted(SmtpClient? client) => client is not TrackedSmtpClient { RecipientAccepted: false };

    /// <summary>An SMTP client that knows whether the server accepted a recipient of the message being sent.</summary>
    private sealed class TrackedSmtpClient : SmtpClient
    {
        public bool RecipientAccepted { get; set; }

        protected override void OnRecipientAccepted(MimeMessage message, MailboxAddress mailbox, SmtpResponse response)
        {
            RecipientAccepted = true;
            base.OnRecipientAccepted(message, mailbox, response);
        }
    }

    /// <summary>
    /// How long connecting (TCP, TLS, the greeting) may take: well inside the send timeout, so a
    /// server whose address swallows connection attempts is "could not connect" (an outage: nothing
    /// was sent), not a send that timed out, which could have come after the server took the message.
    /// </summary>
    internal TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    private async Task<SmtpClient> OpenAsync(SmtpEndpoint endpoint, string? password, CancellationToken cancellationToken)
    {
        var client = new TrackedSmtpClient { Timeout = (int)CommandTimeout.TotalMilliseconds };
        try
        {
            using (var connecting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                connecting.CancelAfter(ConnectTimeout);
                try
                {
                    // Dialled here, to public addresses only unless Providers:AllowPrivateNetworks:
                    // a tenant's SMTP host cannot reach the deployment's internal network.
                    var socket = await PublicAddresses.ConnectAsync(endpoint.Host, endpoint.Port, network.Value.AllowPrivateNetworks,
                        "a company's SMTP server may not use (Providers:AllowPrivateNetworks)", connecting.Token);
                    try
                    {
                        await client.ConnectAsync(socket, endpoint.Host, endpoint.Port, endpoint.Security, connecting.Token);
                    }
                    catch
                    {
                        socket.Dispose();
                        throw;
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new SocketException((int)SocketError.TimedOut);
                }
            }
            if (endpoint.Username is { } username)
            {
                await client.AuthenticateAsync(username, password ?? "", cancellationToken);
            }
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private static SmtpEndpoint EndpointOf(ProviderAccount account)
    {
        var security = account.SmtpSecurity switch
        {
            SmtpSecurity.StartTls => SecureSocketOptions.StartTls,
            SmtpSecurity.SslOnConnect => SecureSocketOptions.SslOnConnect,
            SmtpSecurity.None => SecureSocketOptions.None,
            _ => SecureSocketOptions.Auto,
        };
        var port = account.SmtpPort ?? security switch
        {
            SecureSocketOptions.SslOnConnect => 465,
            SecureSocketOptions.None => 25,
            _ => 587,
        };
        var username = string.IsNullOrWhiteSpace(account.SmtpUsername) ? null : account.SmtpUsername;
        return new SmtpEndpoint(account.CompanyId, account.SmtpHost!.Trim(), port, security, username);
    }

    private static string? MissingSetting(ProviderAccount account) =>
        account.SmtpHost is not { Length: > 0 } ? "no SMTP server is configured (host name missing in settings)"
        : account.From is not { Length: > 0 } ? "no from address is configured in settings"
        : null;

    /// <summary>
    /// 4xx is the server asking us to come back later; 5xx is final, except where RFC 3463 calls the
    /// condition persistent transient and the servers we send through use a 5xx for it anyway: a
    /// full mailbox (X.2.2) is this message's retry, and the account's sending quota used up
    /// (X.4.5, Gmail's "550 5.4.5 Daily user sending quota exceeded", Microsoft 365's
    /// "554 5.2.0 …SubmissionQuotaExceededException") is an outage that waits for the quota to lift
    /// (at Gmail within 24 hours), using up no retries within the outage budget. Another 5xx refusal
    /// of the recipient is a bounce, unless it is a security/policy refusal (enhanced code 5.7.x,
    /// e.g. "relay access denied"), which is about our account, not the recipient's address.
    /// </summary>
    private static SendResult Classify(SmtpCommandException ex)
    {
        var code = (int)ex.StatusCode;
        var reply = OneLine(ex.Message);
        var error = string.Create(CultureInfo.InvariantCulture, $"SMTP {code} {reply}");
        if (code >= 500 && reply.StartsWith("5.2.2", StringComparison.Ordinal))
        {
            return SendResult.TransientForThisMessage($"{error} (the recipient's mailbox is full: tried again later)");
        }
        if (code >= 500 && IsSendingQuota(reply))
        {
            return SendResult.Unavailable($"{error} (this SMTP account's sending quota is used up: messages wait for it to lift)", QuotaRetry);
        }
        if (IsTemporary(ex))
        {
            // Before any recipient (the greeting's or AUTH's 421/454, MAIL FROM's 451) the server is
            // not taking mail from us now; at RCPT TO it is this recipient's mailbox (full,
            // greylisted), and after DATA this message.
            return ex.ErrorCode is SmtpErrorCode.RecipientNotAccepted or SmtpErrorCode.MessageNotAccepted ? SendResult.TransientForThisMessage(error) : SendResult.Unavailable(error);
        }
        if (code < 400)
        {
            return SendResult.Transient($"SMTP: unexpected reply {code} {reply}");
        }
        var bounced = ex.ErrorCode == SmtpErrorCode.RecipientNotAccepted && !reply.StartsWith("5.7.", StringComparison.Ordinal);
        return SendResult.Permanent(error, bounced);
    }

    private static bool IsTemporary(SmtpCommandException ex) => (int)ex.StatusCode is >= 400 and < 500;

    /// <summary>How long sends wait once the account's sending quota is used up: an hour, then they try again.</summary>
    internal static readonly TimeSpan QuotaRetry = TimeSpan.FromHours(1);

    /// <summary>The account's sending quota, by enhanced code (X.4.5) or by the words Gmail and Microsoft 365 use.</summary>
    private static bool IsSendingQuota(string reply) =>
        reply.StartsWith("5.4.5", StringComparison.Ordinal)
        || reply.Contains("SubmissionQuotaExceeded", StringComparison.OrdinalIgnoreCase)
        || reply.Contains("sending quota", StringComparison.OrdinalIgnoreCase)
        || reply.Contains("sending limit", StringComparison.OrdinalIgnoreCase);

    private static bool IsConnectionFailure(Exception ex) =>
        ex is IOException or SocketException or TimeoutException or SslHandshakeException or SmtpProtocolException or ServiceNotConnectedException;

    private static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();

    /// <summary>MailKit's TLS errors run to paragraphs of advice; the first sentence says what happened.</summary>
    private static string FirstLine(string text) => text.ReplaceLineEndings("\n").Split('\n', 2)[0].Trim();
}
