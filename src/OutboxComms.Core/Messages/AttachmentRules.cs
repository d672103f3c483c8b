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
            if (attachment.Content is null
                && !(Uri.TryCreate(attachment.Url?.Trim(), UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttps || url.Scheme == Uri.UriSchemeHttp)))
            {
                return $"attachment '{attachment.FileName}': url '{Providers.AttachmentLoader.Shown(attachment.Url)}' is not an absolute http(s) URL";
            }
        }
        return null;
    }
}
