using System.Globalization;
using System.Text.Json;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// Mailgun webhooks (JSON): <c>signature.signature</c> is hex HMAC-SHA256, keyed with the HTTP
/// webhook signing key, over <c>timestamp</c> followed by <c>token</c>; the event is in
/// <c>event-data</c>. Mailgun's message id is the Message-Id without angle brackets. The signature
/// does not cover the event, so a signature older (or newer) than five minutes is refused, and
/// within that window its token is accepted with one body only (<see cref="WebhookNonces"/>): a
/// seen signature cannot carry a forged event. A token is single-use across every company
/// (migration 0046): practices that share a signing key (one Mailgun account, or subaccounts
/// verified with the primary account's key through <c>parent-signature</c>) cannot have a signature
/// seen at one carry another body to another. The message our send names in
/// <c>v:outbox-message-id</c> comes back in <c>event-data.user-variables</c>; an event whose
/// variable names another message than its Message-Id matches none.
/// </summary>
public sealed class MailgunWebhook(TimeProvider time) : IDeliveryWebhook
{
    public string Route => "mailgun";

    /// <summary>
    /// How old a Mailgun signature may be. Mailgun retries a webhook our API did not answer with 200
    /// for 8 hours (at 5, 10 and 15 minutes, then 1, 2 and 4 hours), with the signature of the first
    /// try: a 5-minute window refused every retry and lost the event (a bounce, a complaint). A
    /// replayed signature is refused by its token (<see cref="WebhookNonces"/>), which is remembered
    /// for longer than this.
    /// </summary>
    public static readonly TimeSpan RetryWindow = TimeSpan.FromHours(9);

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (WebhookSignatures.EmailSecret(settings, EmailProvider.Mailgun, "Mailgun", "Mailgun webhook signing key", secrets, out var refusal) is not { } signingKey)
        {
            return refusal;
        }
        try
        {
            using var document = JsonDocument.Parse(request.Body);
            var signature = document.RootElement.GetProperty("signature");
            var timestampValue = signature.GetProperty("timestamp");
            // Documented as an integer, sent as a string in Mailgun's examples: either is read.
            var timestamp = timestampValue.ValueKind == JsonValueKind.Number ? timestampValue.GetRawText() : timestampValue.GetString();
            var token = signature.GetProperty("token").GetString();
            if (string.IsNullOrEmpty(token))
            {
                return "Mailgun token missing";
            }
            if (!WebhookSignatures.IsFresh(timestamp, time, RetryWindow, WebhookSignatures.Tolerance))
            {
                return "Mailgun timestamp outside the tolerance (replayed or clock skew)";
            }
            var expected = WebhookSignatures.HmacSha256(WebhookSignatures.Utf8(signingKey), timestamp + token);
            // An event of a subaccount's domain carries a second signature, "parent-signature", made
            // the same way with the primary account's signing key: a company may store either key.
            return WebhookSignatures.Matches(expected, signature.GetProperty("signature").GetString(), WebhookSignatures.FromHex)
                   || WebhookSignatures.Matches(expected, ChatMessageParts.Text(signature, "parent-signature"), WebhookSignatures.FromHex)
                ? null
                : "Mailgun signature wrong";
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return "Mailgun signature missing";
        }
    }

    /// <summary>The signature's token: with the timestamp, all the signature covers (read after <see cref="Verify"/> accepted the body).</summary>
    public string? SignatureNonce(WebhookRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var document = JsonDocument.Parse(request.Body);
        return document.RootElement.GetProperty("signature").GetProperty("token").GetString();
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var document = JsonDocument.Parse(request.Body);
        var data = document.RootElement.GetProperty("event-data");
        var kind = data.GetProperty("event").GetString();
        var permanent = data.TryGetProperty("severity", out var severity) && severity.GetString() == "permanent";
        // A permanent failure is a bounce when the address was refused (reason "bounce", or
        // "suppress-bounce": it bounced before); Mailgun also fails messages it would not send to
        // an address that unsubscribed or complained, or gave up on ("old"), which say nothing
        // about the address being wrong: FAILED, with the reason.
        var reasonGiven = ChatMessageParts.Text(data, "reason");
        DeliveryStatus? status = kind switch
        {
            "delivered" => DeliveryStatus.Delivered,
            "opened" => DeliveryStatus.Read,
            "failed" when permanent => reasonGiven is null or "bounce" or "suppress-bounce" ? DeliveryStatus.Bounced : DeliveryStatus.Failed,
            "rejected" => DeliveryStatus.Failed,
            _ => null, // accepted, temporary failures (Mailgun retries), clicked…
        };
        // A spam complaint, or Mailgun's own unsubscribe link: no more general updates.
        ProviderOptOuts.GeneralUpdatesStop? stop = kind switch
        {
            "complained" => ProviderOptOuts.GeneralUpdatesStop.Complaint,
            "unsubscribed" => ProviderOptOuts.GeneralUpdatesStop.Unsubscribe,
            _ => null,
        };
        if ((status is null && stop is null) || !data.TryGetProperty("message", out var message) || !message.TryGetProperty("headers", out var headers)
            || !headers.TryGetProperty("message-id", out var messageId) || messageId.ValueKind != JsonValueKind.String)
        {
            return [];
        }
        var occurred = data.TryGetProperty("timestamp", out var ts) && ts.TryGetDouble(out var seconds) ? UnixTime.FromSeconds(seconds) : null;
        string? error = null;
        if (status is DeliveryStatus.Bounced or DeliveryStatus.Failed)
        {
            var code = data.TryGetProperty("delivery-status", out var ds) && ds.TryGetProperty("code", out var c) ? c.ToString() : "?";
            var description = data.TryGetProperty("delivery-status", out var ds2) && ds2.TryGetProperty("message", out var m) ? m.GetString() : data.TryGetProperty("reason", out var reason) ? reason.GetString() : null;
            error = $"Mailgun {kind}{(reasonGiven is null ? "" : $" ({reasonGiven})")} {code}: {description}";
        }
        var key = data.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString()! : string.Create(CultureInfo.InvariantCulture, $"{messageId.GetString()}:{kind}:{occurred?.ToUnixTimeSeconds()}");
        var providerId = messageId.GetString()!.Trim('<', '>');
        return [(status is { } changed
            ? new DeliveryEvent(providerId, changed, occurred, error, key, data.GetRawText())
            : DeliveryEvent.StoppingGeneralUpdates(stop!.Value, providerId, occurred, key, data.GetRawText())) with { ExpectedMessageId = ExpectedMessageId(data) }];
    }

    /// <summary>Our message id as our send set it (<c>v:outbox-message-id</c>), from <c>event-data.user-variables</c>; null when absent.</summary>
    internal static long? ExpectedMessageId(JsonElement eventData) =>
        long.TryParse(ChatMessageParts.Text(ChatMessageParts.Child(eventData, "user-variables"), Providers.Email.EmailApi.MessageIdTag),
            NumberStyles.Integer, CultureInfo.InvariantCulture, out var id) ? id : null;

    /// <summary>As <see cref="ExpectedMessageId(JsonElement)"/>, for an event as stored (webhook_events.payload: its event-data).</summary>
    internal static long? ExpectedMessageId(string storedEventData)
    {
        using var document = JsonDocument.Parse(storedEventData);
        return ExpectedMessageId(document.RootElement);
    }
}
