using System.Net.Http.Headers;

namespace OutboxComms.Core.Messages;

/// <summary>
/// What an attachment must be for a provider to carry it: the API checks a request by these, and
/// the worker checks a row a business app wrote by plain SQL, so that a content type of "pdf" or a
/// relative link fails that message with the reason instead of throwing inside a provider (an
/// internal error, retried, and counted against the company's provider by its circuit breaker).
/// </summary>
public static class AttachmentRules
{
    /// <summary>A media type such as application/pdf, as HTTP and MIME both read it.</summary>
    public static bool IsMediaType(string? contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var mediaType) && mediaType.MediaType?.Contains('/', StringComparison.Ordinal) == true
        && MimeKit.ContentType.TryParse(contentType, out _);

    /// <summary>
    /// Why these attachments cannot go out on <paramref name="channel"/>, or null. SMS carries none:
    /// an invoice on SMS fails rather than going out without its file (a PREFERRED one goes by
    /// another channel the customer consented to, when one can carry it).
    /// </summary>
    public static string? Problem(IReadOnlyList<CommunicationAttachment> attachments, Channel channel)
    {
        ArgumentNullException.ThrowIfNull(attachments);
        if (attachments.Count == 0)
        {
            return null;
        }
        if (channel == Channel.Sms)
        {
            return $"SMS cannot carry attachments ({string.Join(", ", attachments.Select(a => a.FileName))})";
        }
        // Every WhatsApp API takes one document per message (ChatMessageParts): a PREFERRED message
        // with more goes by another channel the customer consented to.
        if (channel == Channel.WhatsApp && attachments.Count > 1)
        {
            return $"a WhatsApp message carries one document, this one has {attachments.Count} ({string.Join(", ", attachments.Select(a => a.FileName))})";
        }
        foreach (var attachment in attachments)
        {
            if (string.IsNullOrWhiteSpace(attachment.FileName))
            {
                return "an attachment has no file name";
            }
            if (!IsMediaType(attachment.ContentType))
            {
                return $"attachment '{attachment.FileName}': content type '{attachment.ContentType}' is not a media type such as application/pdf";
            }
            if (attachment.PurgedAt is { } purged)
            {
                // Retention cleared it (Attachments:RetentionDays): a replay this late must not go out without it.
                return string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"attachment '{attachment.FileName}' was cleared on {purged.UtcDateTime:yyyy-MM-dd} by attachment retention (Attachments:RetentionDays): send the message again with the file");
            }
            if (attachment.Content is not null && (attachment.SizeBytes ?? attachment.Content.Length) == 0)
            {
                // A PDF generator that returned nothing: an invoice mailed with an empty file says nothing is wrong.
                return $"attachment '{attachment.FileName}' is empty (0 bytes)";
            }
            if (attachment.Content is null && !IsAllowedUrl(attachment.Url, out _))
            {
                return $"attachment '{attachment.FileName}': url '{Providers.AttachmentLoader.Shown(attachment.Url)}' is not an absolute https URL (http only for localhost)";
            }
        }
        return null;
    }

    /// <summary>
    /// A link a file may be fetched from: https anywhere; plain http only to a loopback host (a
    /// local file server in development and tests). Over plain http anyone on the way could swap
    /// the invoice (its bank details) that then goes out under the practice's name.
    /// </summary>
    public static bool IsAllowedUrl(string? url, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Uri? uri)
    {
        uri = null;
        return url is not null && Uri.TryCreate(url.Trim(), UriKind.Absolute, out uri)
            && (uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && uri.IsLoopback));
    }
}
