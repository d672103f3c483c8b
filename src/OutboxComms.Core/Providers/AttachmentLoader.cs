using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers;

/// <summary>An attachment's bytes, in hand.</summary>
public sealed record LoadedAttachment(string FileName, string ContentType, byte[] Content);

/// <summary>
/// Gives providers that need the bytes (SMTP, SES raw MIME, Mailgun) an attachment's content,
/// fetching a URL attachment when the producer supplied a link instead of bytes.
/// </summary>
public sealed class AttachmentLoader(IHttpClientFactory clients, Microsoft.Extensions.Options.IOptions<AttachmentOptions>? options = null)
{
    /// <summary>The named HttpClient that fetches links (public addresses only, see <see cref="PublicAddresses"/>).</summary>
    public const string ClientName = "attachments";

    /// <summary>Redirects a link may take to its file.</summary>
    public const int MaxRedirects = 5;

    /// <summary>
    /// A message's attachments together, stored or fetched: larger ones are refused rather than
    /// loaded into memory (email providers refuse a message of 25–40 MB once encoded anyway).
    /// </summary>
    public const long MaxBytes = 25 * 1024 * 1024;

    /// <summary>The time all of a message's links may take (<see cref="AttachmentOptions.FetchTimeout"/>).</summary>
    public TimeSpan FetchTimeout { get; init; } = options?.Value.FetchTimeout ?? TimeSpan.FromSeconds(20);

    public async Task<IReadOnlyList<LoadedAttachment>> LoadAsync(IReadOnlyList<CommunicationAttachment> attachments, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(attachments);
        var loaded = new List<LoadedAttachment>(attachments.Count);
        CancellationTokenSource? deadline = null;   // started by the first link: most sends have none
        try
        {
            long total = 0;
            foreach (var attachment in attachments)
            {
                byte[] content;
                if (attachment.Content is { } stored)
                {
                    content = stored;
                }
                else
                {
                    if (deadline is null)
                    {
                        deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                        deadline.CancelAfter(FetchTimeout);
                    }
                    try
                    {
                        content = await FetchAsync(attachment, MaxBytes - total, deadline.Token);
                    }
                    catch (OperationCanceledException ex) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                    {
                        throw new TimeoutException($"attachment {attachment.FileName}: its link did not answer in time (the message's links have {FetchTimeout.TotalSeconds:0.#} s together)", ex);
                    }
                }
                total += content.Length;
                if (total > MaxBytes)
                {
                    throw TooLarge(attachment);
                }
                loaded.Add(new LoadedAttachment(attachment.FileName, attachment.ContentType, content));
            }
            return loaded;
        }
        finally
        {
            deadline?.Dispose();
        }
    }

    /// <summary>
    /// A link as errors and logs show it: without its query, which in a presigned or shared link is
    /// the credential (an S3 signature, a token) that an error must not carry into the row, the
    /// attempt history and the worker's log; nor its user and password (https://user:token@host/…).
    /// A text that is no absolute URL is cut at its query likewise.
    /// </summary>
    internal static string Shown(string? url)
    {
        if (Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.IsAbsoluteUri && !uri.IsFile)
        {
            return uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped) + (uri.Query.Length > 1 ? "?…" : "");
        }
        var query = url?.IndexOf('?', StringComparison.Ordinal) ?? -1;
        return query >= 0 ? url![..query] + "?…" : url ?? "";
    }

    private async Task<byte[]> FetchAsync(CommunicationAttachment attachment, long maxBytes, CancellationToken cancellationToken)
    {
        var url = attachment.Url ?? throw new InvalidOperationException($"attachment {attachment.FileName} has neither content nor URL");
        HttpResponseMessage response;
        try
        {
            response = await clients.CreateClient(ClientName).GetAsync(new Uri(url), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        }
        catch (HttpRequestException ex) when (ex.InnerException is NonPublicAddressException refused)
        {
            // Not a passing outage: fails the message (permanent) rather than retrying it.
            throw new InvalidOperationException($"attachment {attachment.FileName} was not fetched: {refused.Message}", ex);
        }
        using var _ = response;
        if ((int)response.StatusCode is >= 300 and < 400)
        {
            // A redirect still standing after the ones followed (more than MaxRedirects, or from
            // HTTPS to HTTP): the link will not lead to its file later either.
            throw new InvalidOperationException(
                $"attachment {attachment.FileName} was not fetched: {Shown(url)} redirects (HTTP {(int)response.StatusCode}) past the {MaxRedirects} redirects followed, or from HTTPS to HTTP");
        }
        if (!response.IsSuccessStatusCode)
        {
            // Surfaces as a transient failure: the producer's file server may be back later.
            throw new HttpRequestException($"attachment {attachment.FileName} could not be fetched: HTTP {(int)response.StatusCode} from {Shown(url)}");
        }
        if (response.Content.Headers.ContentLength > maxBytes)
        {
            throw TooLarge(attachment);
        }
        // Counted as it streams too: a server that sends no Content-Length (or a wrong one) must not
        // fill the worker's memory.
        using var content = new MemoryStream();
        try
        {
            await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
            var chunk = new byte[81_920];
            int read;
            while ((read = await body.ReadAsync(chunk, cancellationToken)) > 0)
            {
                if (content.Length + read > maxBytes)
                {
                    throw TooLarge(attachment);
                }
                content.Write(chunk, 0, read);
            }
        }
        catch (IOException ex)
        {
            // The file server dropped the connection mid-file: its problem, and perhaps not for long.
            throw new HttpRequestException($"attachment {attachment.FileName} could not be fetched: {ex.Message} ({Shown(url)})", ex);
        }
        return content.ToArray();
    }

    private static InvalidOperationException TooLarge(CommunicationAttachment attachment) =>
        new($"attachment {attachment.FileName} takes the message's attachments past {MaxBytes / 1024 / 1024} MB");
}
