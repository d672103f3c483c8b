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
/// Gupshup WhatsApp callbacks, in either of Gupshup's formats. v2: POST JSON <c>{ "type":
/// "message-event", "payload": { "id", "gsId", "type", "destination", "payload": { "code", "reason" } } }</c>
/// with <c>type</c> enqueued, failed, sent, delivered or read. v3 (Meta's shape): <c>{ "object":
/// "whatsapp_business_account", "entry": [ { "changes": [ { "value": { "statuses": [ { "id", "gs_id",
/// "status", "timestamp", "errors": [ { "code", "title" } ] } ] } } ] } ] }</c>. Gupshup documents no
/// signature, so the callback URL carries the company's webhook secret:
/// <c>/webhooks/gupshup/{companyId}?token={webhookSecret}</c> (compared in constant time; only for a
/// company that sends WhatsApp through Gupshup). Our provider message id is Gupshup's
/// <c>messageId</c>: on every delivery report (sent, delivered, read, and a failure WhatsApp
/// reported) it is <c>gsId</c> (v3: <c>gs_id</c>), whose <c>id</c> is WhatsApp's; an event without
/// it (enqueued, a failure Gupshup itself decided, or a report more than a week after the send,
/// which Gupshup sends without it) names Gupshup's id in <c>id</c>.
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
        if (Text(root, "object") == "whatsapp_business_account")
        {
            return [.. V3Statuses(root)];
        }
        if (Text(root, "type") != "message-event" || Child(root, "payload") is not { } payload)
        {
            return []; // user messages, billing and system events carry no status of ours
        }
        var kind = Text(payload, "type");
        var detail = Child(payload, "payload");
        var occurred = Child(root, "timestamp") is { ValueKind: JsonValueKind.Number } ms && ms.TryGetInt64(out var millis)
            ? UnixTime.FromMilliseconds(millis)
            : null;
        return Event(Text(payload, "gsId") ?? Text(payload, "id"), kind, occurred, Text(detail, "code"), Text(detail, "reason"), payload.GetRawText()) is { } parsed ? [parsed] : [];
    }

    /// <summary>The v3 (Meta-shaped) callback's statuses; an item of another shape is passed over, as for the Cloud API.</summary>
    private static IEnumerable<DeliveryEvent> V3Statuses(JsonElement root)
    {
        foreach (var status in WhatsAppWebhook.Values(root).SelectMany(value => WhatsAppWebhook.Items(value, "statuses")))
        {
            var error = WhatsAppWebhook.Items(status, "errors").FirstOrDefault();   // Meta's: { code, title, message, error_data.details }
            var reason = Text(error, "title") ?? Text(error, "message") ?? Text(Child(error, "error_data"), "details");
            if (Event(Text(status, "gs_id") ?? Text(status, "id"), Text(status, "status"), V3Timestamp(status), Text(error, "code"), reason, status.GetRawText()) is { } parsed)
            {
                yield return parsed;
            }
        }
    }

    /// <summary>v3 times a status in milliseconds (Gupshup's examples) or, passed through from Meta, in seconds.</summary>
    private static DateTimeOffset? V3Timestamp(JsonElement status) =>
        long.TryParse(Text(status, "timestamp"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value >= 100_000_000_000 ? UnixTime.FromMilliseconds(value) : UnixTime.FromSeconds(value)
            : null;

    /// <summary>One status of either format: <paramref name="kind"/> enqueued (nothing new), failed, sent, delivered or read.</summary>
    private static DeliveryEvent? Event(string? id, string? kind, DateTimeOffset? occurred, string? code, string? reason, string payload)
    {
        DeliveryStatus? status = kind switch
        {
            "sent" => DeliveryStatus.Sent,
            "delivered" => DeliveryStatus.Delivered,
            "read" => DeliveryStatus.Read,
            "failed" => DeliveryStatus.Failed,
            _ => null, // enqueued: accepted by Gupshup, nothing new
        };
        if (status is null || id is null)
        {
            return null;
        }
        string? error = null;
        var optedOut = false;
        var marketingStopped = false;
        if (status == DeliveryStatus.Failed)
        {
            // 1012: the number opted out of the business's messages. Meta's own codes are passed
            // through: 131050, the customer stopped the business's marketing messages.
            optedOut = code == "1012";
            marketingStopped = code == WhatsAppWebhook.MarketingStoppedCode;
            error = $"Gupshup {code ?? "?"}: {reason ?? "message failed"}{(optedOut ? " (the customer opted out: their WhatsApp opt-in is withdrawn)" : "")}";
        }
        return new DeliveryEvent(id, status.Value, occurred, error, string.Create(CultureInfo.InvariantCulture, $"{id}:{kind}"), payload)
        {
            RecipientOptedOut = optedOut,
            StopsGeneralUpdates = marketingStopped ? ProviderOptOuts.GeneralUpdatesStop.WhatsAppMarketing : null,
            TransientFailure = status == DeliveryStatus.Failed && code is not null && TransientFailures.Gupshup.Contains(code),
            AccountWide = status == DeliveryStatus.Failed && code is not null && TransientFailures.Gupshup.Contains(code) && TransientFailures.AccountWide(code),
        };
    }
}
