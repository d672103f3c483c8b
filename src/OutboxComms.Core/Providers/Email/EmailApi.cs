using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MimeKit.Utils;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// What the HTTP email APIs (SendGrid, Resend, Mailgun, SES) share before their wire formats part:
/// the settings check, attachment bytes as a send outcome, and mailboxes written as text.
/// </summary>
internal static class EmailApi
{
    /// <summary>
    /// The name under which our message id rides along (SendGrid custom arg, Resend tag, Mailgun
    /// variable, SES tag), so delivery webhooks can be matched to the message.
    /// </summary>
    public const string MessageIdTag = "outbox-message-id";

    /// <summary>RFC 5322 specials: a display name holding one must be quoted.</summary>
    private static readonly SearchValues<char> Specials = SearchValues.Create("()<>[]:;@\\,.\"");

    public static string MessageIdValue(OutboundMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return message.MessageId.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Null when the account has what <paramref name="provider"/> needs, else a sentence naming what is
    /// missing. <paramref name="userSetting"/> names the second credential where the API has one
    /// (Mailgun's sending domain, SES's access key id).
    /// </summary>
    public static string? MissingSettings(string provider, ProviderAccount account, string? userSetting = null, bool needsFrom = true)
    {
        ArgumentNullException.ThrowIfNull(account);
        List<string> missing = [];
        if (string.IsNullOrWhiteSpace(account.ApiKey))
        {
            missing.Add("API key");
        }
        if (userSetting is not null && string.IsNullOrWhiteSpace(account.ApiUser))
        {
            missing.Add(userSetting);
        }
        if (needsFrom && string.IsNullOrWhiteSpace(account.From))
        {
            missing.Add("from address");
        }
        return missing.Count == 0
            ? null
            : $"{provider}: the {string.Join(" and ", missing)} {(missing.Count == 1 ? "is" : "are")} missing from the company's email settings";
    }

    /// <summary>
    /// The attachments' bytes (URL attachments fetched), or why the send cannot go ahead: settings
    /// missing (permanent), the producer's file server failing (transient), a file over the size
    /// limit (permanent).
    /// </summary>
    public static async Task<(IReadOnlyList<LoadedAttachment> Attachments, SendResult? Refusal)> PrepareAsync(
        AttachmentLoader loader, string provider, OutboundMessage message, ProviderAccount account, string? userSetting, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(loader);
        ArgumentNullException.ThrowIfNull(message);
        if (MissingSettings(provider, account, userSetting) is { } missing)
        {
            return ([], SendResult.Permanent(missing));
        }
        return await LoadAttachmentsAsync(loader, provider, message, cancellationToken);
    }

    /// <summary>
    /// The attachments' bytes, or why not: the producer's file server failing or slow (transient),
    /// a file over the size limit, on a private address or without content (permanent). Every
    /// email provider, SMTP included, fails a message the same way for the same file.
    /// </summary>
    public static async Task<(IReadOnlyList<LoadedAttachment> Attachments, SendResult? Refusal)> LoadAttachmentsAsync(
        AttachmentLoader loader, string provider, OutboundMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(loader);
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            return (await loader.LoadAsync(message.Attachments, cancellationToken), null);
        }
        catch (HttpRequestException ex)
        {
            return ([], SendResult.TransientForThisMessage($"{provider}: {ex.Message}"));
        }
        catch (TimeoutException ex)
        {
            return ([], SendResult.TransientForThisMessage($"{provider}: {ex.Message}"));
        }
        catch (Exception ex) when (Http.ProviderHttp.IsTimeout(ex, cancellationToken))
        {
            return ([], SendResult.TransientForThisMessage($"{provider}: an attachment's link did not answer in time"));
        }
        catch (InvalidOperationException ex)
        {
            return ([], SendResult.Permanent($"{provider}: {ex.Message}"));
        }
    }

    /// <summary><see cref="EmailComposition.ExtraHeaders"/> as the JSON header map SendGrid and Resend take.</summary>
    public static JsonObject HeadersObject(OutboundMessage message, string fromEmail)
    {
        var headers = new JsonObject();
        foreach (var (name, value) in EmailComposition.ExtraHeaders(message, fromEmail))
        {
            headers[name] = value;
        }
        return headers;
    }

    /// <summary>A string property of a JSON error body, or null when absent or not a string.</summary>
    public static string? StringProperty(JsonElement? element, string name) =>
        element is { ValueKind: JsonValueKind.Object } json && json.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    /// <summary>
    /// <c>Name &lt;address&gt;</c> as the APIs document it, the name quoted only when it holds RFC 5322
    /// specials (<c>"Sharma, Priya" &lt;…&gt;</c>); the bare address when there is no name.
    /// </summary>
    public static string Mailbox(string? name, string address)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            return address;
        }
        var phrase = name.AsSpan().IndexOfAny(Specials) >= 0 ? MimeUtils.Quote(name) : name;
        return $"{phrase} <{address}>";
    }
}
