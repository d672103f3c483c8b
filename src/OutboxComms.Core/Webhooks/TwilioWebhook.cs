using System.Security.Cryptography;
using System.Text;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// Twilio status callbacks (form POST). <c>X-Twilio-Signature</c> is base64 HMAC-SHA1, keyed with
/// the account's auth token, over the full callback URL followed by every POST parameter's name and
/// value, sorted by name.
/// </summary>
public sealed class TwilioWebhook : IDeliveryWebhook
{
    public string Route => "twilio";

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        // The company may use Twilio for WhatsApp, SMS or both (possibly different accounts).
        // One unreadable token (copied from another row) must not stop the other channel's callbacks.
        SecretKeyNotConfiguredException? notYet = null;
        var tokens = new List<byte[]>();
        if (settings.WhatsAppProvider == WhatsAppProvider.Twilio && settings.WhatsAppApiKeyEncrypted is { } w && Readable(w, nameof(CompanySettings.WhatsAppApiKeyEncrypted)) is { } whatsApp)
        {
            tokens.Add(whatsApp);
        }
        if (settings.SmsProvider == SmsProvider.Twilio && settings.SmsApiKeyEncrypted is { } s && Readable(s, nameof(CompanySettings.SmsApiKeyEncrypted)) is { } sms)
        {
            tokens.Add(sms);
        }
        if (tokens.Count == 0)
        {
            // Only a token this instance lacks the key for: another instance, or this one later,
            // can verify it (a 503 makes the provider come back); none configured or none readable: refused.
            return notYet is not null ? throw notYet : "the company has no readable Twilio auth token configured";
        }
        var signed = new StringBuilder(request.Url.AbsoluteUri);
        foreach (var (name, value) in request.Form.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            signed.Append(name).Append(value);
        }
        var data = Encoding.UTF8.GetBytes(signed.ToString());
        var presented = request.Header("X-Twilio-Signature");
        return tokens.Any(token => WebhookSignatures.Matches(HMACSHA1.HashData(token, data), presented, WebhookSignatures.FromBase64))
            ? null
            : "X-Twilio-Signature missing or wrong";

        byte[]? Readable(byte[] envelope, string property)
        {
            try
            {
                return Encoding.UTF8.GetBytes(secrets.Unprotect(envelope, settings.Slot(property)));
            }
            catch (SecretKeyNotConfiguredException ex)
            {
                notYet = ex;
                return null;
            }
            catch (CryptographicException)
            {
                return null;
            }
        }
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!request.Form.TryGetValue("MessageSid", out var sid) || !request.Form.TryGetValue("MessageStatus", out var status))
        {
            return [];
        }
        DeliveryStatus? mapped = status switch
        {
            "sent" => DeliveryStatus.Sent,
            "delivered" => DeliveryStatus.Delivered,
            "read" => DeliveryStatus.Read,
            "undelivered" or "failed" => DeliveryStatus.Failed,
            _ => null, // queued, accepted, sending, scheduled: nothing new
        };
        if (mapped is null)
        {
            return [];
        }
        var error = mapped == DeliveryStatus.Failed
            ? $"Twilio {request.Form.GetValueOrDefault("ErrorCode") ?? "?"}: message {status}{(request.Form.GetValueOrDefault("ErrorMessage") is { } m ? $" ({m})" : "")}"
            : null;
        return [new DeliveryEvent(sid, mapped.Value, null, error, $"{sid}:{status}", request.Body)
        {
            // 21610: the customer replied STOP to the sending number.
            RecipientOptedOut = mapped == DeliveryStatus.Failed && request.Form.GetValueOrDefault("ErrorCode") == "21610",
            TransientFailure = mapped == DeliveryStatus.Failed && request.Form.GetValueOrDefault("ErrorCode") is { } code && TransientFailures.Twilio.Contains(code),
            AccountWide = mapped == DeliveryStatus.Failed && request.Form.GetValueOrDefault("ErrorCode") is { } twilioCode && TransientFailures.Twilio.Contains(twilioCode),
        }];
    }
}
