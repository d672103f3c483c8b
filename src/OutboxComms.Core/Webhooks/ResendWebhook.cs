using System.Globalization;
using System.Text.Json;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// Resend webhooks, signed the Svix way: <c>svix-signature</c> holds space-separated
/// <c>v1,base64(HMAC-SHA256(key, "{svix-id}.{svix-timestamp}.{body}"))</c> values, the key being the
/// base64 part of the <c>whsec_…</c> secret; timestamps older than five minutes are refused.
/// </summary>
public sealed class ResendWebhook(TimeProvider time) : IDeliveryWebhook
{
    public string Route => "resend";

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (WebhookSignatures.EmailSecret(settings, EmailProvider.Resend, "Resend", "Resend signing secret", secrets, out var refusal) is not { } secret)
        {
            return refusal;
        }
        var id = request.Header("svix-id");
        var timestamp = request.Header("svix-timestamp");
        var signatures = request.Header("svix-signature");
        if (id is null || timestamp is null || signatures is null)
        {
            return "Svix signature headers missing";
        }
        if (!WebhookSignatures.IsFresh(timestamp, time))
        {
            return "Svix timestamp outside the tolerance (replayed or clock skew)";
        }
        var key = WebhookSignatures.FromBase64(secret.StartsWith("whsec_", StringComparison.Ordinal) ? secret["whsec_".Length..] : secret);
        if (key is null)
        {
            return "the stored Resend signing secret is not valid";
        }
        var expected = WebhookSignatures.HmacSha256(key, $"{id}.{timestamp}.{request.Body}");
        return signatures.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(s => s.StartsWith("v1,", StringComparison.Ordinal))
            .Any(s => WebhookSignatures.Matches(expected, s[3..], WebhookSignatures.FromBase64))
            ? null
            : "Svix signature wrong";
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var document = JsonDocument.Parse(request.Body);
        var root = document.RootElement;
        var type = root.GetProperty("type").GetString();
        DeliveryStatus? status = type switch
        {
            "email.sent" => DeliveryStatus.Sent,
            "email.delivered" => DeliveryStatus.Delivered,
            "email.opened" => DeliveryStatus.Read,
            "email.bounced" => DeliveryStatus.Bounced,
            "email.failed" => DeliveryStatus.Failed,
            // Resend did not send it: the address is on its suppression list (an earlier bounce or complaint).
            "email.suppressed" => DeliveryStatus.Failed,
            _ => null, // delivery_delayed, clicked
        };
        var complaint = type == "email.complained";
        if ((status is null && !complaint) || !root.TryGetProperty("data", out var data) || !data.TryGetProperty("email_id", out var emailId) || emailId.ValueKind != JsonValueKind.String)
        {
            return [];
        }
        var occurred = root.TryGetProperty("created_at", out var created) && DateTimeOffset.TryParse(created.GetString(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : (DateTimeOffset?)null;
        var error = type == "email.suppressed"
            ? "Resend email.suppressed: the address is on Resend's suppression list (an earlier bounce or complaint); nothing was sent"
            : status is DeliveryStatus.Bounced or DeliveryStatus.Failed
            ? $"Resend {type}: {Reason(data, type == "email.failed" ? "failed" : "bounce") ?? "no reason given"}"
            : null;
        var key = request.Header("svix-id") ?? $"{emailId.GetString()}:{type}";
        return [status is { } changed
            ? new DeliveryEvent(emailId.GetString()!, changed, occurred, error, key, request.Body)
            : DeliveryEvent.Complaint(emailId.GetString()!, occurred, key, request.Body)];
    }

    /// <summary>
    /// Why Resend gave up: <c>data.bounce.message</c> on <c>email.bounced</c>, <c>data.failed.reason</c>
    /// (e.g. <c>reached_daily_quota</c>) on <c>email.failed</c>.
    /// </summary>
    private static string? Reason(JsonElement data, string field) =>
        Providers.Messaging.ChatMessageParts.Text(Providers.Messaging.ChatMessageParts.Child(data, field), field == "failed" ? "reason" : "message");
}
