using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// WhatsApp Cloud API webhooks. POSTs carry <c>X-Hub-Signature-256: sha256=hex(HMAC-SHA256(app
/// secret, raw body))</c>; statuses sit in <c>entry[].changes[].value.statuses[]</c>, may arrive out
/// of order and twice, and <c>read</c> can come without <c>delivered</c>. Customer replies
/// (<c>messages[]</c> with a <c>context.id</c> of ours) record when the customer responded.
/// Only changes for the company's own phone number id (<c>value.metadata.phone_number_id</c>) are
/// read: companies onboarded through one Meta app share its app secret, so the signature alone
/// does not say whose account a body is about.
/// </summary>
public sealed class WhatsAppWebhook(IOptions<WebhookOptions> options, WebhookEventKeys eventKeys) : IDeliveryWebhook
{
    private readonly byte[]? deploymentSecret = string.IsNullOrEmpty(options.Value.WhatsAppAppSecret) ? null : WebhookSignatures.Utf8(options.Value.WhatsAppAppSecret);

    public string Route => "whatsapp";

    /// <summary>
    /// "This recipient has chosen to stop receiving marketing messages on WhatsApp from your
    /// business": the recipient's general updates stop on WhatsApp (ProviderOptOuts).
    /// </summary>
    internal const string MarketingStoppedCode = "131050";

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        byte[]? appSecret;
        if (settings.WhatsAppProvider == WhatsAppProvider.WhatsAppBusinessApi && settings.WhatsAppWebhookSecretEncrypted is null && deploymentSecret is not null)
        {
            appSecret = deploymentSecret;   // onboarded through the operator's Meta app (Webhooks:WhatsAppAppSecret)
        }
        else if ((appSecret = WebhookSignatures.WhatsAppSecret(settings, WhatsAppProvider.WhatsAppBusinessApi, "the WhatsApp Cloud API", secrets, out var refusal)) is null)
        {
            return refusal;
        }
        var expected = HMACSHA256.HashData(appSecret, WebhookSignatures.Utf8(request.Body));
        var presented = request.Header("X-Hub-Signature-256");
        return presented is not null && presented.StartsWith("sha256=", StringComparison.Ordinal)
            && WebhookSignatures.Matches(expected, presented["sha256=".Length..], WebhookSignatures.FromHex)
            ? null
            : "X-Hub-Signature-256 missing or wrong";
    }

    /// <summary>The GET handshake: echo the challenge when the verify token matches.</summary>
    public static string? Challenge(IReadOnlyDictionary<string, string> query, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (query.GetValueOrDefault("hub.mode") != "subscribe" || settings.WhatsAppVerifyTokenEncrypted is not { } encrypted
            || !query.TryGetValue("hub.verify_token", out var token) || !query.TryGetValue("hub.challenge", out var challenge))
        {
            return null;
        }
        byte[] expected;
        try
        {
            expected = WebhookSignatures.Utf8(secrets.Unprotect(encrypted, settings.Slot(nameof(CompanySettings.WhatsAppVerifyTokenEncrypted))));
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return null;   // unreadable: nothing to match, refused as a wrong token is
        }
        return CryptographicOperations.FixedTimeEquals(expected, WebhookSignatures.Utf8(token)) ? challenge : null;
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        var events = new List<DeliveryEvent>();
        using var document = JsonDocument.Parse(request.Body);
        foreach (var value in Values(document.RootElement))
        {
            if (settings.WhatsAppPhoneId is not { } phoneId || ChatMessageParts.Text(ChatMessageParts.Child(value, "metadata"), "phone_number_id") != phoneId)
            {
                continue;   // another business number's change (one Meta app, several companies): not this company's to apply
            }
            foreach (var status in Items(value, "statuses"))
            {
                if (Status(status) is { } parsed)
                {
                    events.Add(parsed);
                }
            }
            foreach (var choice in Items(value, "user_preferences"))
            {
                if (MarketingChoice(choice) is { } parsed)
                {
                    events.Add(parsed);
                }
            }
            foreach (var reply in Items(value, "messages"))
            {
                if (ChatMessageParts.Text(ChatMessageParts.Child(reply, "context"), "id") is { } repliedTo && ChatMessageParts.Text(reply, "id") is { } replyId)
                {
                    events.Add(new DeliveryEvent(repliedTo, DeliveryStatus.Read, Timestamp(reply), null, $"reply:{replyId}", ReplyRecord(reply)) { IsResponse = true });
                }
            }
        }
        return events;
    }

    /// <summary>
    /// What is kept of a client's reply: that it came, when, and to which message — not what they
    /// wrote (a PAN, an amount) nor their number: only the response time is used, and the practice
    /// reads replies in WhatsApp itself.
    /// </summary>
    private static string ReplyRecord(JsonElement reply) => new System.Text.Json.Nodes.JsonObject
    {
        ["id"] = ChatMessageParts.Text(reply, "id"),
        ["type"] = ChatMessageParts.Text(reply, "type"),
        ["timestamp"] = ChatMessageParts.Text(reply, "timestamp"),
        ["context"] = new System.Text.Json.Nodes.JsonObject { ["id"] = ChatMessageParts.Text(ChatMessageParts.Child(reply, "context"), "id") },
    }.ToJsonString();

    /// <summary>
    /// The objects of one of a change's arrays: an item of another shape (a field Meta adds or
    /// changes) is passed over, so the rest of the signed batch still applies — refusing it would
    /// only make Meta send the same body again, with the same result.
    /// </summary>
    internal static IEnumerable<JsonElement> Items(JsonElement value, string name) =>
        ChatMessageParts.Child(value, name) is { ValueKind: JsonValueKind.Array } items
            ? items.EnumerateArray().Where(item => item.ValueKind == JsonValueKind.Object)
            : [];

    /// <summary>The <c>entry[].changes[].value</c> objects of a Meta-shaped body (the Cloud API's, Gupshup's v3).</summary>
    internal static IEnumerable<JsonElement> Values(JsonElement root) =>
        Items(root, "entry").SelectMany(entry => Items(entry, "changes"))
            .Select(change => ChatMessageParts.Child(change, "value")).OfType<JsonElement>().Where(value => value.ValueKind == JsonValueKind.Object);

    private static DeliveryEvent? Status(JsonElement status)
    {
        if (ChatMessageParts.Text(status, "id") is not { } id)
        {
            return null;
        }
        var name = ChatMessageParts.Text(status, "status");
        DeliveryStatus? mapped = name switch
        {
            "sent" => DeliveryStatus.Sent,
            "delivered" => DeliveryStatus.Delivered,
            "read" => DeliveryStatus.Read,
            "failed" => DeliveryStatus.Failed,
            _ => null,
        };
        if (mapped is null)
        {
            return null;
        }
        string? error = null;
        var marketingStopped = false;
        var transient = false;
        string? code = null;
        if (mapped == DeliveryStatus.Failed && Items(status, "errors").FirstOrDefault() is { ValueKind: JsonValueKind.Object } first)
        {
            code = ChatMessageParts.Text(first, "code") ?? "?";
            marketingStopped = code == MarketingStoppedCode;
            transient = TransientFailures.WhatsApp.Contains(code);
            var title = ChatMessageParts.Text(first, "title");
            var detail = ChatMessageParts.Text(ChatMessageParts.Child(first, "error_data"), "details");
            error = $"WhatsApp {code}: {title}{(detail is null ? "" : $" ({detail})")}";
        }
        var occurred = Timestamp(status);
        return new DeliveryEvent(id, mapped.Value, occurred, error ?? (mapped == DeliveryStatus.Failed ? "WhatsApp: message failed" : null),
            $"{id}:{name}:{occurred?.ToUnixTimeSeconds()}", status.GetRawText())
        {
            StopsGeneralUpdates = marketingStopped ? ProviderOptOuts.GeneralUpdatesStop.WhatsAppMarketing : null,
            Free = Free(status),
            TransientFailure = transient,
            AccountWide = transient && TransientFailures.AccountWide(code!),
        };
    }

    /// <summary>
    /// Whether Meta charges nothing for the message a status names: a failed message is not charged
    /// (per-message pricing charges on delivery; a conversation opens on a delivered message), nor one
    /// whose <c>pricing</c> says <c>"billable": false</c> or a <c>free_customer_service</c> /
    /// <c>free_entry_point</c> type. A status without <c>pricing</c> says nothing.
    /// </summary>
    /// <param name="storedStatus">One <c>statuses[]</c> element as received (webhook_events.payload).</param>
    internal static bool Free(string storedStatus)
    {
        using var document = JsonDocument.Parse(storedStatus);
        return document.RootElement.ValueKind == JsonValueKind.Object && Free(document.RootElement);
    }

    private static bool Free(JsonElement status)
    {
        if (ChatMessageParts.Text(status, "status") == "failed")
        {
            return true;
        }
        if (!status.TryGetProperty("pricing", out var pricing) || pricing.ValueKind != JsonValueKind.Object)
        {
            return false;
        }
        return (pricing.TryGetProperty("billable", out var billable) && billable.ValueKind == JsonValueKind.False)
            || ChatMessageParts.Text(pricing, "type")?.StartsWith("free_", StringComparison.Ordinal) == true;
    }

    // {"wa_id":"919876543210","detail":"User requested to stop marketing messages","category":"marketing_messages","value":"stop","timestamp":1731705721}
    private DeliveryEvent? MarketingChoice(JsonElement choice)
    {
        if (ChatMessageParts.Text(choice, "category") != "marketing_messages" || ChatMessageParts.Text(choice, "wa_id") is not { Length: > 0 } waId)
        {
            return null;
        }
        bool? stopped = ChatMessageParts.Text(choice, "value") switch
        {
            "stop" => true,
            "resume" => false,
            _ => null,
        };
        if (stopped is null)
        {
            return null;
        }
        var occurred = Timestamp(choice);
        return DeliveryEvent.MarketingChoiceMade(new WhatsAppMarketingChoice(waId, stopped.Value), occurred,
            $"marketing:{eventKeys.Part(waId)}:{ChatMessageParts.Text(choice, "value")}:{occurred?.ToUnixTimeSeconds()}", choice.GetRawText());
    }

    private static DateTimeOffset? Timestamp(JsonElement element) =>
        element.TryGetProperty("timestamp", out var ts) && long.TryParse(ts.ValueKind == JsonValueKind.String ? ts.GetString() : ts.GetRawText(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds)
            ? UnixTime.FromSeconds(seconds)
            : null;
}
