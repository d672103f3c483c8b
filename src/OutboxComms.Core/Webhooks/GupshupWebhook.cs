using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using static OutboxComms.Core.Providers.Messaging.ChatMessageParts;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// Gupshup WhatsApp callbacks: POST JSON <c>{ "type": "message-event", "payload": { "id", "gsId",
/// "type", "destination", "payload": { "code", "reason" } } }</c> with <c>type</c> enqueued, failed,
/// sent, delivered or read. Gupshup documents no signature, so the callback URL carries the
/// company's webhook secret: <c>/webhooks/gupshup/{companyId}?token={webhookSecret}</c> (compared in
/// constant time; only for a company that sends WhatsApp through Gupshup). Our provider message id
/// is Gupshup's <c>messageId</c>: <c>gsId</c> on sent/delivered/read (whose <c>id</c> is WhatsApp's),
/// <c>id</c> on enqueued/failed.
/// </summary>
public sealed class GupshupWebhook : IDeliveryWebhook
{
    public string Route => "gupshup";

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (WebhookSignatures.WhatsAppSecret(settings, WhatsAppProvider.Gupshup, "Gupshup", secrets, out var refusal) is not { } token)
        {
            return refusal;
        }
        var presented = System.Web.HttpUtility.ParseQueryString(request.Url.Query)["token"];
        return presented is { Length: > 0 }
               && CryptographicOperations.FixedTimeEquals(token, WebhookSignatures.Utf8(presented))
            ? null
            : "Gupshup callback token missing or wrong";
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var document = JsonDocument.Parse(request.Body);
        var root = document.RootElement;
        if (Text(root, "type") != "message-event" || Child(root, "payload") is not { } payload)
        {
            return []; // user messages, billing and system events carry no status of ours
        }
        var kind = Text(payload, "type");
        DeliveryStatus? status = kind switch
        {
            "sent" => DeliveryStatus.Sent,
            "delivered" => DeliveryStatus.Delivered,
            "read" => DeliveryStatus.Read,
            "failed" => DeliveryStatus.Failed,
            _ => null, // enqueued: accepted by Gupshup, nothing new
        };
        var id = kind is "sent" or "delivered" or "read" ? Text(payload, "gsId") ?? Text(payload, "id") : Text(payload, "id");
        if (status is null || id is null)
        {
            return [];
        }
        string? error = null;
        var optedOut = false;
        var marketingStopped = false;
        if (status == DeliveryStatus.Failed)
        {
            var detail = Child(payload, "payload");
            var code = Text(detail, "code");
            // 1012: the number opted out of the business's messages. Meta's own codes are passed
            // through: 131050, the customer stopped the business's marketing messages.
            optedOut = code == "1012";
            marketingStopped = code == WhatsAppWebhook.MarketingStoppedCode;
            error = $"Gupshup {code ?? "?"}: {Text(detail, "reason") ?? "message failed"}{(optedOut ? " (the customer opted out: their WhatsApp opt-in is withdrawn)" : "")}";
        }
        var occurred = Child(root, "timestamp") is { ValueKind: JsonValueKind.Number } ms && ms.TryGetInt64(out var millis)
            ? UnixTime.FromMilliseconds(millis)
            : null;
        return [new DeliveryEvent(id, status.Value, occurred, error, string.Create(CultureInfo.InvariantCulture, $"{id}:{kind}"), payload.GetRawText())
        {
            RecipientOptedOut = optedOut,
            StopsGeneralUpdates = marketingStopped ? ProviderOptOuts.GeneralUpdatesStop.WhatsAppMarketing : null,
        }];
    }
}
