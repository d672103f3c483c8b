using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// MessageBird Conversations webhooks (WhatsApp; subscribe to <c>message.updated</c> in the
/// dashboard): JSON <c>{ "type": "message.updated", "message": { "id", "status", "updatedDatetime",
/// … } }</c>, the message id being the one <c>/v1/send</c> answered. Signed with
/// <c>MessageBird-Signature-JWT</c> (<see cref="MessageBirdSignature"/>), keyed with the signing key
/// stored as the company's WhatsApp <c>webhookSecret</c>.
/// </summary>
public sealed class MessageBirdWebhook(TimeProvider time) : IDeliveryWebhook
{
    public string Route => "messagebird";

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (WebhookSignatures.WhatsAppSecret(settings, WhatsAppProvider.MessageBird, "MessageBird", secrets, out var refusal) is not { } signingKey)
        {
            return refusal;
        }
        return MessageBirdSignature.Verify(request.Url.AbsoluteUri, request.Body, request.Header("MessageBird-Signature-JWT"), signingKey, time.GetUtcNow());
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var document = JsonDocument.Parse(request.Body);
        var message = ChatMessageParts.Child(document.RootElement, "message");
        var status = ChatMessageParts.Text(message, "status");
        var id = ChatMessageParts.Text(message, "id");
        if (ChatMessageParts.Text(document.RootElement, "type") != "message.updated" || ChatMessageParts.Text(message, "direction") == "received" || id is null)
        {
            return []; // a customer's own message, or not a status
        }
        DeliveryStatus? mapped = status switch
        {
            "sent" => DeliveryStatus.Sent,
            "delivered" => DeliveryStatus.Delivered,
            "read" => DeliveryStatus.Read,
            "failed" or "rejected" or "delivery_failed" or "expired" => DeliveryStatus.Failed,
            _ => null, // accepted, pending: nothing new
        };
        if (mapped is null)
        {
            return [];
        }
        var error = ChatMessageParts.Child(message, "error");
        var reason = mapped == DeliveryStatus.Failed
            ? $"MessageBird {status}{(ChatMessageParts.Text(error, "code") is { } code ? $" {code}" : "")}: {ChatMessageParts.Text(error, "description") ?? "message not delivered"}"
            : null;
        var occurred = DateTimeOffset.TryParse(ChatMessageParts.Text(message, "updatedDatetime"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : (DateTimeOffset?)null;
        return [new DeliveryEvent(id, mapped.Value, occurred, reason, $"{id}:{status}", message!.Value.GetRawText())];
    }
}

/// <summary>
/// <c>MessageBird-Signature-JWT</c>: a JWT (HS256/384/512) keyed with the account's signing key,
/// with <c>iss</c> "MessageBird", <c>nbf</c>/<c>exp</c> (5 s of clock tolerance), a <c>jti</c>,
/// <c>url_hash</c> (hex SHA-256 of the full URL called) and, when there is a body,
/// <c>payload_hash</c> (hex SHA-256 of it) — as MessageBird's own libraries verify it.
/// </summary>
public static class MessageBirdSignature
{
    private static readonly TimeSpan ClockTolerance = TimeSpan.FromSeconds(5);

    /// <summary>Null when <paramref name="jwt"/> is a valid signature of this request; otherwise why not.</summary>
    public static string? Verify(string url, string body, string? jwt, byte[] signingKey, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(signingKey);
        var parts = jwt?.Split('.');
        if (parts is not { Length: 3 } || Decode(parts[0]) is not { } headerBytes || Decode(parts[1]) is not { } claimBytes || Decode(parts[2]) is not { } signature)
        {
            return "MessageBird-Signature-JWT missing or malformed";
        }
        try
        {
            using var header = JsonDocument.Parse(headerBytes);
            var signed = Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]);
            byte[]? expected = ChatMessageParts.Text(header.RootElement, "alg") switch
            {
                "HS256" => HMACSHA256.HashData(signingKey, signed),
                "HS384" => HMACSHA384.HashData(signingKey, signed),
                "HS512" => HMACSHA512.HashData(signingKey, signed),
                _ => null,
            };
            if (expected is null || !CryptographicOperations.FixedTimeEquals(expected, signature))
            {
                return "MessageBird-Signature-JWT signature wrong";
            }
            using var claims = JsonDocument.Parse(claimBytes);
            var root = claims.RootElement;
            if (ChatMessageParts.Text(root, "iss") != "MessageBird" || ChatMessageParts.Text(root, "jti") is null)
            {
                return "MessageBird-Signature-JWT issuer or jti wrong";
            }
            if (Seconds(root, "nbf") is { } notBefore && now + ClockTolerance < notBefore || Seconds(root, "exp") is not { } expires || now - ClockTolerance >= expires)
            {
                return "MessageBird-Signature-JWT not valid at this time (replayed or clock skew)";
            }
            if (!HashMatches(ChatMessageParts.Text(root, "url_hash"), url))
            {
                return "MessageBird-Signature-JWT url_hash does not match the URL called";
            }
            var payloadHash = ChatMessageParts.Text(root, "payload_hash");
            return payloadHash is null && body.Length > 0 ? "MessageBird-Signature-JWT has no payload_hash for a body"
                : payloadHash is not null && !HashMatches(payloadHash, body) ? "MessageBird-Signature-JWT payload_hash does not match the body"
                : null;
        }
        catch (JsonException)
        {
            return "MessageBird-Signature-JWT malformed";
        }
    }

    private static bool HashMatches(string? presentedHex, string text) =>
        WebhookSignatures.Matches(SHA256.HashData(Encoding.UTF8.GetBytes(text)), presentedHex, WebhookSignatures.FromHex);

    private static DateTimeOffset? Seconds(JsonElement claims, string name) =>
        ChatMessageParts.Child(claims, name) is { ValueKind: JsonValueKind.Number } value && value.TryGetInt64(out var seconds)
            ? UnixTime.FromSeconds(seconds)
            : null;

    private static byte[]? Decode(string part)
    {
        var base64 = part.Replace('-', '+').Replace('_', '/');
        base64 = base64.PadRight(base64.Length + (4 - base64.Length % 4) % 4, '=');
        var buffer = new byte[base64.Length];
        return Convert.TryFromBase64String(base64, buffer, out var written) ? buffer[..written] : null;
    }
}
