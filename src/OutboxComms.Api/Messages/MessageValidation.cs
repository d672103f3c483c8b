using System.Buffers.Text;
using System.Text.Json;
using OutboxComms.Api.Common;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;

namespace OutboxComms.Api.Messages;

/// <summary>One message to send, as a producer writes it (the body of POST /v1/messages, an item of a bulk request).</summary>
public sealed record SendMessageRequest(
    Guid? CustomerId, string? CustomerExternalId,
    [property: OpenApiValues("INVOICE", "COMPLIANCE_REMINDER", "PAYMENT_REMINDER", "GENERAL_UPDATE")] string? Type,
    [property: OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH", "PREFERRED")] string? Channel,
    string? TemplateKey, JsonElement? Data, string? Subject, string? Content,
    IReadOnlyList<AttachmentRequest?>? Attachments, DateTimeOffset? NotBefore, DateTimeOffset? ExpiresAt, int? MaxRetries, JsonElement? Metadata);

/// <summary>A file with the message: inline bytes (base64) or a link the provider or worker fetches.</summary>
public sealed record AttachmentRequest(string? FileName, string? ContentType, string? ContentBase64, string? Url);

/// <summary>A send request that passed validation. <see cref="Channels"/> has one entry per outbox row it becomes.</summary>
internal sealed record MessageDraft(
    Guid? CustomerId, string? CustomerExternalId, MessageType Type, IReadOnlyList<Channel> Channels, Channel? RequestedChannel,
    string? Subject, string? Content, string? TemplateKey, string TemplateData, string Metadata, int MaxRetries,
    DateTimeOffset? NotBefore, DateTimeOffset? ExpiresAt, IReadOnlyList<AttachmentDraft> Attachments);

internal sealed record AttachmentDraft(string FileName, string ContentType, byte[]? Content, string? Url);

/// <summary>
/// Checks a send request field by field (everything that needs no database), so that a client gets
/// every problem at once, each under its JSON name.
/// </summary>
internal static class MessageValidation
{
    public const int MaxAttachmentBytes = 10 * 1024 * 1024;
    public const int MaxAttachmentsBytes = 20 * 1024 * 1024;
    public const int MaxAttachments = 10;
    public const int MaxRetriesLimit = CommunicationLog.MaxRetriesLimit;
    private const int MaxContentLength = 100_000;
    private const int MaxSubjectLength = 998;  // RFC 5322's line limit
    private const int MaxJsonLength = 64 * 1024;

    private static readonly Channel[] Requestable = [Channel.Email, Channel.WhatsApp, Channel.Sms, Channel.Both, Channel.Preferred];

    // Built once: a bulk request validates up to 10,000 items, and a message is only needed on failure.
    private static readonly string TypeMessage = $"type must be one of {string.Join(", ", WireName<MessageType>.All)}.";
    private static readonly string ChannelMessage = $"channel must be one of {string.Join(", ", Requestable.Select(WireName<Channel>.Of))}.";
    private static readonly string ContentLengthMessage = $"content is at most {MaxContentLength} characters.";
    private static readonly string SubjectLengthMessage = $"subject is at most {MaxSubjectLength} characters.";
    private static readonly string MaxRetriesMessage = $"maxRetries is between 0 and {MaxRetriesLimit}.";

    /// <param name="privateLinks">Attachments:AllowPrivateNetworks: attachment links may name internal hosts (the worker may fetch them).</param>
    public static MessageDraft? Validate(SendMessageRequest request, DateTimeOffset now, bool privateLinks, Validation validation)
    {
        var externalId = request.CustomerExternalId?.Trim();
        validation
            .When(request.CustomerId is null && string.IsNullOrEmpty(externalId), "customerId", "customerId or customerExternalId is required.")
            .When(request.CustomerId == Guid.Empty, "customerId", "customerId is not a customer id.")
            .When(request.CustomerId is not null && externalId is { Length: > 0 }, "customerExternalId", "Give customerId or customerExternalId, not both.")
            .When(externalId is { Length: > 200 }, "customerExternalId", "customerExternalId is at most 200 characters.");

        var typeOk = WireName<MessageType>.TryParse(request.Type, out var type);
        validation.When(!typeOk, "type", TypeMessage);
        var channelOk = WireName<Channel>.TryParse(request.Channel, out var channel) && Requestable.Contains(channel);
        validation.When(!channelOk, "channel", ChannelMessage);

        var templateKey = request.TemplateKey?.Trim();
        var hasTemplate = !string.IsNullOrEmpty(templateKey);
        var hasContent = !string.IsNullOrWhiteSpace(request.Content);
        validation
            .When(!hasTemplate && !hasContent, "content", "content (with subject for email) or templateKey (with data) is required.")
            .When(hasTemplate && hasContent, "templateKey", "Give templateKey or content, not both.")
            .When(templateKey is { Length: > 200 }, "templateKey", "templateKey is at most 200 characters.")
            .When(request.Content is { Length: > MaxContentLength }, "content", ContentLengthMessage)
            .When(request.Subject is { Length: > MaxSubjectLength }, "subject", SubjectLengthMessage)
            .When(hasContent && channelOk && (channel is Channel.Email or Channel.Both or Channel.Preferred) && string.IsNullOrWhiteSpace(request.Subject),
                "subject", channel == Channel.Preferred
                    ? "subject is required for PREFERRED without a template: the customer's channel may be email."
                    : "subject is required for an email without a template.")
            .When(request.Data is not null && !hasTemplate, "data", "data fills a template: give templateKey too.")
            .When(HasNul(externalId), "customerExternalId", Validation.NulMessage("customerExternalId"))
            .When(HasNul(templateKey), "templateKey", Validation.NulMessage("templateKey"))
            .When(HasNul(request.Subject), "subject", Validation.NulMessage("subject"))
            .When(HasNul(request.Content), "content", Validation.NulMessage("content"));
        var data = JsonObject(request.Data, "data", validation);
        validation.TemplateDataNames("data", request.Data);
        var metadata = JsonObject(request.Metadata, "metadata", validation);

        validation
            .When(request.MaxRetries is < 0 or > MaxRetriesLimit, "maxRetries", MaxRetriesMessage)
            .When(request.ExpiresAt is { } expires && expires <= now, "expiresAt", "expiresAt must be in the future.")
            .When(request.ExpiresAt is { } e && request.NotBefore is { } n && e <= n, "expiresAt", "expiresAt must be after notBefore.");

        var attachments = Attachments(request.Attachments, privateLinks, validation);
        validation.When(attachments.Count > 0 && channelOk && channel == Channel.Sms, "attachments", "SMS cannot carry attachments.")
            .When(attachments.Count > 1 && channelOk && channel == Channel.WhatsApp, "attachments", "A WhatsApp message carries one document: send the others as messages of their own, or by EMAIL.")
            // Its WhatsApp half would fail: refused now rather than half sent.
            .When(attachments.Count > 1 && channelOk && channel == Channel.Both, "attachments", "A message to BOTH channels goes by WhatsApp too, which carries one document: send the others as messages of their own, or by EMAIL.");

        if (!validation.IsValid)
        {
            return null;
        }
        return new MessageDraft(
            request.CustomerId, request.CustomerId is null ? externalId : null, type,
            channel == Channel.Both ? [Channel.Email, Channel.WhatsApp] : [channel], channel == Channel.Both ? Channel.Both : null,
            request.Subject?.Trim(), request.Content, hasTemplate ? templateKey : null, data, metadata, request.MaxRetries ?? 3,
            request.NotBefore, request.ExpiresAt, attachments);
    }

    private static string JsonObject(JsonElement? element, string field, Validation validation)
    {
        if (element is not { ValueKind: not JsonValueKind.Null } value)
        {
            return "{}";
        }
        if (value.ValueKind != JsonValueKind.Object)
        {
            validation.Add(field, $"{field} must be a JSON object.");
            return "{}";
        }
        var raw = value.GetRawText();
        validation.StorableJson(field, value, raw);
        if (raw.Length > MaxJsonLength)
        {
            validation.Add(field, $"{field} is at most {MaxJsonLength / 1024} KB of JSON.");
        }
        return raw;
    }

    // PostgreSQL stores no NUL character in text or jsonb: refused here with the field's name rather
    // than failing the INSERT.
    private static bool HasNul(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal);

    private static List<AttachmentDraft> Attachments(IReadOnlyList<AttachmentRequest?>? attachments, bool privateLinks, Validation validation)
    {
        var drafts = new List<AttachmentDraft>();
        if (attachments is null)
        {
            return drafts;
        }
        validation.When(attachments.Count > MaxAttachments, "attachments", $"At most {MaxAttachments} attachments per message.");
        long total = 0;
        for (var i = 0; i < attachments.Count; i++)
        {
            var field = $"attachments[{i}]";
            if (attachments[i] is not { } attachment)
            {
                validation.Add(field, "An attachment object is required.");
                continue;
            }
            var draft = Attachment(attachment, field, privateLinks, validation);
            if (draft is not null)
            {
                drafts.Add(draft);
                total += draft.Content?.Length ?? 0;
            }
        }
        validation.When(total > MaxAttachmentsBytes, "attachments", $"Attachments are at most {MaxAttachmentsBytes / 1024 / 1024} MB together.");
        return drafts;
    }

    private static AttachmentDraft? Attachment(AttachmentRequest attachment, string field, bool privateLinks, Validation validation)
    {
        var ok = true;
        void Fail(string name, string message)
        {
            validation.Add($"{field}.{name}", message);
            ok = false;
        }

        var fileName = attachment.FileName?.Trim();
        if (string.IsNullOrEmpty(fileName))
        {
            Fail("fileName", "fileName is required.");
        }
        else if (fileName.Length > 255 || fileName.Any(c => c is '/' or '\\' || char.IsControl(c)))
        {
            Fail("fileName", "fileName is a plain file name (no path, no control characters), at most 255 characters.");
        }

        var contentType = string.IsNullOrWhiteSpace(attachment.ContentType) ? "application/octet-stream" : attachment.ContentType.Trim();
        if (!AttachmentRules.IsMediaType(contentType))
        {
            Fail("contentType", "contentType is a MIME type such as application/pdf.");
        }

        byte[]? content = null;
        var hasContent = !string.IsNullOrEmpty(attachment.ContentBase64);
        var hasUrl = !string.IsNullOrWhiteSpace(attachment.Url);
        if (hasContent == hasUrl)
        {
            Fail("contentBase64", "Give contentBase64 or url (exactly one).");
        }
        else if (hasContent)
        {
            if (!Base64.IsValid(attachment.ContentBase64, out var length))
            {
                Fail("contentBase64", "contentBase64 is not valid base64.");
            }
            else if (length > MaxAttachmentBytes)
            {
                Fail("contentBase64", $"An attachment is at most {MaxAttachmentBytes / 1024 / 1024} MB.");
            }
            else if (length == 0)
            {
                Fail("contentBase64", "The attachment is empty.");
            }
            else
            {
                content = Convert.FromBase64String(attachment.ContentBase64!);
            }
        }
        else if (!AttachmentRules.IsAllowedUrl(attachment.Url, out var link))
        {
            Fail("url", "url must be an absolute https URL (http only for localhost).");
        }
        else if (!privateLinks && PublicAddresses.IsPlainlyInternal(link.IdnHost))
        {
            // The worker would refuse to fetch it and fail the message: said now instead.
            Fail("url", $"url names an internal address, which {PublicAddresses.AttachmentRefusal}.");
        }
        return ok ? new AttachmentDraft(fileName!, contentType, content, hasUrl ? attachment.Url!.Trim() : null) : null;
    }
}
