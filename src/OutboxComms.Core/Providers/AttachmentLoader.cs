using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers;

/// <summary>An attachment's bytes, in hand.</summary>
public sealed record LoadedAttachment(string FileName, string ContentType, byte[] Content);

/// <summary>
/// Gives providers that need the bytes (SMTP, SES raw MIME, Mailgun) an attachment's content,
/// fetching a URL attachment when the producer supplied a link instead of bytes.
/// </summary>
public sealed class AttachmentLoader(IHttpClientFactory clients)
{
    /// <summary>Larger attachments are refused rather than loaded into memory.</summary>
    public const long MaxBytes = 25 * 1024 * 1024;

    public async Task<IReadOnlyList<LoadedAttachment>> LoadAsync(IReadOnlyList<CommunicationAttachment> attachments, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(attachments);
        var loaded = new List<LoadedAttachment>(attachments.Count);
        foreach (var attachment in attachments)
        {
            var content = attachment.Content ?? await FetchAsync(attachment, cancellationToken);
            loaded.Add(new LoadedAttachment(attachment.FileName, attachment.ContentType, content));
        }
        return loaded;
    }

    private async Task<byte[]> FetchAsync(CommunicationAttachment attachment, CancellationToken cancellationToken)
    {
        var url = attachment.Url ?? throw new InvalidOperationException($"attachment {attachment.FileName} has neither content nor URL");
        using var response = await clients.CreateClient(ProviderHttp.ClientName).GetAsync(new Uri(url), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            // Surfaces as a transient failure: the producer's file server may be back later.
            throw new HttpRequestException($"attachment {attachment.FileName} could not be fetched: HTTP {(int)response.StatusCode} from {url}");
        }
        if (response.Content.Headers.ContentLength > MaxBytes)
        {
            throw new InvalidOperationException($"attachment {attachment.FileName} is larger than {MaxBytes / 1024 / 1024} MB");
        }
        return await response.Content.ReadAsByteArrayAsync(cancellationToken);
    }
}
