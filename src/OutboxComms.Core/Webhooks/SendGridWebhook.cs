using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// SendGrid's signed Event Webhook: an ECDSA (P-256, SHA-256) signature, base64 DER in
/// <c>X-Twilio-Email-Event-Webhook-Signature</c>, over the timestamp header followed by the raw
/// body, checked with the verification public key from SendGrid's settings (base64 DER, stored as
/// the company's email webhook secret). The body is an array of events.
/// </summary>
public sealed class SendGridWebhook(TimeProvider time) : IDeliveryWebhook
{
    public const string SignatureHeader = "X-Twilio-Email-Event-Webhook-Signature";
    public const string TimestampHeader = "X-Twilio-Email-Event-Webhook-Timestamp";

    /// <summary>
    /// How old a SendGrid signature may be. SendGrid retries a POST our API did not answer with a
    /// 2xx for up to 24 hours, so a tighter window could refuse a retry and lose its events; within
    /// this one a replayed batch is a duplicate of what webhook_events already holds (kept far
    /// longer), beyond it a signature captured long ago is refused rather than applied once the
    /// events it carries have been purged.
    /// </summary>
    public static readonly TimeSpan RetryWindow = TimeSpan.FromDays(3);

    public string Route => "sendgrid";

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (WebhookSignatures.EmailSecret(settings, EmailProvider.SendGrid, "SendGrid", "SendGrid verification key", secrets, out var refusal) is not { } verificationKey)
        {
            return refusal;
        }
        var signature = request.Header(SignatureHeader) is { } s ? WebhookSignatures.FromBase64(s) : null;
        var timestamp = request.Header(TimestampHeader);
        if (signature is null || timestamp is null)
        {
            return "SendGrid signature headers missing";
        }
        if (!WebhookSignatures.IsFresh(timestamp, time, RetryWindow, WebhookSignatures.Tolerance))
        {
            return "SendGrid signature timestamp older than SendGrid's retries or in the future (a replay, or a clock far off)";
        }
        using var key = ECDsa.Create();
        try
        {
            key.ImportSubjectPublicKeyInfo(Convert.FromBase64String(verificationKey), out _);
        }
        catch (Exception ex) when (ex is FormatException or CryptographicException)
        {
            return "the stored SendGrid verification key is not a valid public key";
        }
        return key.VerifyData(WebhookSignatures.Utf8(timestamp + request.Body), signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence)
            ? null
            : "SendGrid signature wrong";
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        var events = new List<DeliveryEvent>();
        using var document = JsonDocument.Parse(request.Body);
        foreach (var item in document.RootElement.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object)
            {
                continue;
            }
            var kind = ChatMessageParts.Text(item, "event");
            DeliveryStatus? status = kind switch
            {
                "delivered" => DeliveryStatus.Delivered,
                // Apple Mail Privacy Protection fetches every image of every message, read or not:
                // SendGrid marks such an open sg_machine_open, and it says nothing about the client.
                "open" when !(item.TryGetProperty("sg_machine_open", out var machine) && machine.ValueKind == JsonValueKind.True) => DeliveryStatus.Read,
                // A "blocked" bounce is the receiving server refusing the sender (its IP, its
                // content), not the address: FAILED, leaving BOUNCED for an address that does not exist.
                "bounce" => ChatMessageParts.Text(item, "type") == "blocked" ? DeliveryStatus.Failed : DeliveryStatus.Bounced,
                "dropped" => DeliveryStatus.Failed,
                _ => null, // processed, deferred, click…
            };
            // A spam report, or SendGrid's own unsubscribe link (subscription tracking, groups): no more general updates.
            ProviderOptOuts.GeneralUpdatesStop? stop = kind switch
            {
                "spamreport" => ProviderOptOuts.GeneralUpdatesStop.Complaint,
                "unsubscribe" or "group_unsubscribe" => ProviderOptOuts.GeneralUpdatesStop.Unsubscribe,
                _ => null,
            };
            if ((status is null && stop is null) || !item.TryGetProperty("sg_message_id", out var sgId) || sgId.ValueKind != JsonValueKind.String)
            {
                continue;
            }
            var providerId = SentId(sgId.GetString()!);
            var occurred = item.TryGetProperty("timestamp", out var ts) && ts.TryGetInt64(out var seconds) ? UnixTime.FromSeconds(seconds) : null;
            var reason = item.TryGetProperty("reason", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
            var error = status is DeliveryStatus.Bounced or DeliveryStatus.Failed
                ? $"SendGrid {(kind == "bounce" && ChatMessageParts.Text(item, "type") == "blocked" ? "blocked" : kind)}: {reason ?? "no reason given"}"
                : null;
            var key = item.TryGetProperty("sg_event_id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString()! : string.Create(CultureInfo.InvariantCulture, $"{providerId}:{kind}:{occurred?.ToUnixTimeSeconds()}");
            events.Add(status is { } changed
                ? new DeliveryEvent(providerId, changed, occurred, error, key, item.GetRawText())
                : DeliveryEvent.StoppingGeneralUpdates(stop!.Value, providerId, occurred, key, item.GetRawText()));
        }
        return events;
    }

    /// <summary>
    /// The id SendGrid answered at send time (<c>X-Message-Id</c>) in an event's
    /// <c>sg_message_id</c>, which adds a suffix: <c>W86EgYT6SQKk0lRflfLRsA.filter0425p1las1-…</c>.
    /// Ids of the older form hold dots themselves (<c>14c5d75ce93.dfd.64b469.filter0001p1las1-…</c>),
    /// so the suffix is cut at <c>.filter</c> when there is one, else at the first dot.
    /// </summary>
    internal static string SentId(string sgMessageId)
    {
        var filter = sgMessageId.IndexOf(".filter", StringComparison.Ordinal);
        var dot = sgMessageId.IndexOf('.', StringComparison.Ordinal);
        return filter > 0 ? sgMessageId[..filter] : dot > 0 ? sgMessageId[..dot] : sgMessageId;
    }
}
