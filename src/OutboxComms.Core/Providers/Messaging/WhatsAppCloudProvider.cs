using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Messaging;

/// <summary>
/// Meta's WhatsApp Business Cloud API: <c>POST {base}/{phone-number-id}/messages</c> with a bearer
/// token. Sends an approved template when the company template maps to one (the only kind allowed
/// outside the 24-hour customer service window), else free text; an invoice PDF goes as a document
/// (as the template's header, or as a document message with the text as caption). Attachments given
/// as bytes are uploaded to <c>/{phone-number-id}/media</c> first.
/// </summary>
public sealed class WhatsAppCloudProvider(ProviderHttp http) : IMessageProvider
{
    /// <summary>
    /// Graph API v25.0 (released 18 February 2026, available until 29 July 2028, per Meta's version
    /// table); v21.0, used before, expires on 21 January 2027. A practice pins another version by
    /// its <c>baseUrl</c> setting. Move this default forward about once a year.
    /// </summary>
    public const string DefaultBaseUrl = "https://graph.facebook.com/v25.0/";
    private const string Provider = "WhatsApp";

    public string Name => "WHATSAPP_BUSINESS_API";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.WhatsApp];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        if (account.SenderId is null || account.ApiKey is null)
        {
            return SendResult.Permanent("WhatsApp: the phone number id or access token is missing from settings");
        }

        if (!ChatMessageParts.TryGetDocument("WhatsApp", message, out var attachment, out var refusal, uploads: true))
        {
            return refusal!;
        }
        JsonObject? document = null;
        if (attachment is not null)
        {
            string? mediaId = null;
            if (attachment.Url is null)
            {
                var upload = await UploadAsync(account, attachment, cancellationToken);
                if (upload.Outcome != SendOutcome.Sent)
                {
                    return upload;
                }
                mediaId = upload.ProviderMessageId;
            }
            document = mediaId is null
                ? new JsonObject { ["link"] = attachment.Url, ["filename"] = attachment.FileName }
                : new JsonObject { ["id"] = mediaId, ["filename"] = attachment.FileName };
        }

        var payload = new JsonObject
        {
            ["messaging_product"] = "whatsapp",
            ["recipient_type"] = "individual",
            ["to"] = message.To.TrimStart('+'),
            ["biz_opaque_callback_data"] = message.MessageId.ToString(CultureInfo.InvariantCulture),
        };
        if (message.ProviderTemplate is { } template)
        {
            var components = new JsonArray();
            if (document is not null)
            {
                components.Add(new JsonObject { ["type"] = "header", ["parameters"] = new JsonArray(new JsonObject { ["type"] = "document", ["document"] = document }) });
            }
            if (template.Parameters.Count > 0)
            {
                components.Add(new JsonObject
                {
                    ["type"] = "body",
                    ["parameters"] = new JsonArray([.. template.Parameters.Select(p => (JsonNode)new JsonObject { ["type"] = "text", ["text"] = p })]),
                });
            }
            payload["type"] = "template";
            payload["template"] = new JsonObject { ["name"] = template.Name, ["language"] = new JsonObject { ["code"] = template.Language }, ["components"] = components };
        }
        else if (document is not null)
        {
            document["caption"] = message.Body;
            payload["type"] = "document";
            payload["document"] = document;
        }
        else
        {
            payload["type"] = "text";
            payload["text"] = new JsonObject { ["preview_url"] = false, ["body"] = message.Body };
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, $"{account.SenderId}/messages"))
        {
            Content = JsonContent.Create(payload),
        };
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey);
        var freeText = message.ProviderTemplate is null;
        return await http.SendAsync(Provider, request, response => Interpret(response, freeText), cancellationToken);
    }

    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (account.SenderId is null || account.ApiKey is null)
        {
            return new ConnectionCheck(false, "Enter the WhatsApp phone number id and access token first.");
        }
        using var request = new HttpRequestMessage(HttpMethod.Get, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, $"{account.SenderId}?fields=display_phone_number,verified_name"));
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey);
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    private async Task<SendResult> UploadAsync(ProviderAccount account, CommunicationAttachment attachment, CancellationToken cancellationToken)
    {
        var file = new ByteArrayContent(attachment.Content!);
        file.Headers.ContentType = MediaTypeHeaderValue.Parse(attachment.ContentType);
        using var form = new MultipartFormDataContent
        {
            { new StringContent("whatsapp"), "messaging_product" },
            { new StringContent(attachment.ContentType), "type" },
            { file, "file", ProviderHttp.FormFileName(attachment.FileName) },
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, $"{account.SenderId}/media")) { Content = form };
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey!);
        return await http.SendAsync(Provider, request, response =>
            response.IsSuccess && response.Json is { } json && json.TryGetProperty("id", out var id)
                ? SendResult.Sent(id.GetString())
                : Interpret(response, freeText: false), cancellationToken);
    }

    private static SendResult Interpret(ProviderResponse response, bool freeText)
    {
        var json = response.Json;
        if (response.IsSuccess)
        {
            if (ChatMessageParts.Child(json, "messages") is { ValueKind: JsonValueKind.Array } messages && messages.GetArrayLength() > 0
                && ChatMessageParts.Text(messages[0], "id") is { } id)
            {
                return SendResult.Sent(id);
            }
            // Graph's own answer (it names the product) took the message even without an id to
            // show for it: sending again would deliver it twice. Any other 2xx is not Graph's (a
            // wrong base URL, a proxy's page), so nothing was sent and a retry is right.
            return "whatsapp".Equals(ChatMessageParts.Text(json, "messaging_product"), StringComparison.Ordinal)
                ? SendResult.Sent(null) with { Note = $"WhatsApp accepted the message without a message id ({ProviderHttp.Truncate(response.Body, 200)}): its delivery events cannot be matched to it" }
                : SendResult.Transient($"WhatsApp: unexpected answer without a message id: {ProviderHttp.Truncate(response.Body, 200)}");
        }

        // Read defensively: Graph's error_data is an object for most errors and a string for some.
        if (ChatMessageParts.Child(json, "error") is not { ValueKind: JsonValueKind.Object } error)
        {
            return response.Classify($"WhatsApp HTTP {(int)response.Status}: {ProviderHttp.Truncate(response.Body, 200)}");
        }
        var code = error.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.Number && c.TryGetInt32(out var number) ? number : 0;
        var text = ChatMessageParts.Text(error, "message");
        var details = ChatMessageParts.Text(ChatMessageParts.Child(error, "error_data"), "details")
            ?? (ChatMessageParts.Child(error, "error_data") is { ValueKind: JsonValueKind.String } plain ? plain.GetString() : null);
        var described = $"WhatsApp {code}: {text}{(details is null ? "" : $" ({details})")}";
        return code switch
        {
            // Rate limits come back as HTTP 400 as well as 429: decide by the code.
            // Throughput and account rate limits are Meta's; 131056 limits messages to this one recipient.
            130429 or 80007 or 4 => SendResult.Unavailable(described, response.RetryAfter),
            // The number's spam rate limit (too many blocked or reported messages) and the account's
            // payment problem are the account's, not this message's: its messages wait, as for an
            // empty MessageBird balance, and fail only once the outage budget is spent.
            131048 or 131042 => SendResult.Unavailable(described, response.RetryAfter),
            131056 => SendResult.TransientForThisMessage(described, response.RetryAfter),
            131047 when freeText => SendResult.Permanent($"{described}. More than 24 hours have passed since the customer last replied: send an approved template instead of free text."),
            131047 => SendResult.Permanent(described),
            131050 => SendResult.Permanent($"{described}. The customer stopped this business's marketing messages in WhatsApp: general updates to them on WhatsApp stop; use a utility template for invoices and reminders.") with { MarketingStopped = true },
            190 => SendResult.Permanent($"{described}. The access token is invalid or expired: update it in settings."),
            // 131016 and 2: Meta's service is down. 131000 ("something went wrong") may be about the message.
            131016 or 2 => SendResult.Unavailable(described, response.RetryAfter),
            131000 => SendResult.Transient(described, response.RetryAfter),
            _ => response.Classify(described),
        };
    }
}
