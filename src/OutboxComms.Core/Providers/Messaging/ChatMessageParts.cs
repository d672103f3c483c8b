using System.Globalization;
using System.Text.Json;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers.Messaging;

/// <summary>
/// What the WhatsApp/SMS clients share beyond HTTP: settings checks, number formats, which document a
/// chat message can carry, and reading loosely typed JSON answers. Each provider's file keeps its
/// own wire format; only these rules are common to them.
/// </summary>
internal static class ChatMessageParts
{
    /// <summary>The first setting (by its name in company settings) that is empty, or null when all are set.</summary>
    public static string? Missing(params ReadOnlySpan<(string? Value, string Setting)> settings)
    {
        foreach (var (value, setting) in settings)
        {
            if (string.IsNullOrWhiteSpace(value))
            {
                return setting;
            }
        }
        return null;
    }

    public static SendResult NotConfigured(string provider, string setting) =>
        SendResult.Permanent($"{provider}: the {setting} is not configured in the company's settings");

    public static ConnectionCheck NotConfiguredCheck(string provider, string setting) =>
        new(false, $"{provider}: the {setting} is not configured in the company's settings.");

    /// <summary>An E.164 number as bare digits (no '+', spaces or dashes), as Gupshup and MessageBird SMS take it.</summary>
    public static string Digits(string number) => string.Concat(number.Where(char.IsAsciiDigit));

    /// <summary>WhatsApp shows at most this many characters with a document (the caption).</summary>
    public const int MaxCaptionLength = 1024;

    /// <summary>
    /// The document a WhatsApp message carries. These APIs take one file per message, by public link
    /// (the Cloud API also takes the bytes, <paramref name="uploads"/>), with the text as its caption;
    /// anything else cannot be sent as asked, so it is refused rather than dropped or cut short.
    /// </summary>
    public static bool TryGetDocument(string provider, OutboundMessage message, out CommunicationAttachment? document, out SendResult? refusal, bool uploads = false)
    {
        document = null;
        refusal = message.Attachments switch
        {
            [] => null,
            [var one] when one.Url is not { Length: > 0 } && !(uploads && one.Content is not null) =>
                SendResult.Permanent($"{provider}: attachment {one.FileName} has no URL; WhatsApp providers fetch documents from a public link"),
            [_] when message.ProviderTemplate is null && message.Body.Length > MaxCaptionLength =>
                SendResult.Permanent($"{provider}: WhatsApp shows at most {MaxCaptionLength} characters with a document and this text has {message.Body.Length}; shorten it, or send the document and the text as two messages"),
            [_] => null,
            _ => SendResult.Permanent($"{provider}: a WhatsApp message carries one document, this one has {message.Attachments.Count}"),
        };
        if (refusal is null && message.Attachments is [var single])
        {
            document = single;
        }
        return refusal is null;
    }

    /// <summary>
    /// For a provider whose template call has no place for a document: a template message with one
    /// is refused, so the invoice is never silently left out of what the customer receives.
    /// </summary>
    public static SendResult? RefuseTemplateWithDocument(string provider, OutboundMessage message, CommunicationAttachment? document) =>
        message.ProviderTemplate is not null && document is not null
            ? SendResult.Permanent($"{provider}: a WhatsApp template message cannot carry the attached document {document.FileName} through {provider}; send it without a provider template (inside the customer's 24-hour window) or through the WhatsApp Cloud API or Gupshup")
            : null;

    /// <summary>A property as text whether the API sent a string or a number; null when absent or null.</summary>
    public static string? Text(JsonElement? element, string property) =>
        element is { ValueKind: JsonValueKind.Object } e && e.TryGetProperty(property, out var value)
            ? value.ValueKind switch
            {
                JsonValueKind.String => value.GetString(),
                JsonValueKind.Number => value.GetRawText(),
                _ => null,
            }
            : null;

    /// <summary>A property as an integer code whether sent as a number or a numeric string.</summary>
    public static int? Code(JsonElement? element, string property) =>
        int.TryParse(Text(element, property), NumberStyles.Integer, CultureInfo.InvariantCulture, out var code) ? code : null;

    public static JsonElement? Child(JsonElement? element, string property) =>
        element is { ValueKind: JsonValueKind.Object } e && e.TryGetProperty(property, out var value) ? value : null;
}
