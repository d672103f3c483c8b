using System.Globalization;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// MessageBird SMS delivery reports: a GET to the message's <c>reportUrl</c> (our
/// <c>/webhooks/messagebird-sms/{companyId}</c>, sent with each SMS when <c>PublicBaseUrl</c> is set,
/// or set in the dashboard) with <c>id</c>, <c>reference</c>, <c>recipient</c>, <c>status</c>
/// (scheduled, sent, buffered, delivered, expired, delivery_failed), <c>statusReason</c>,
/// <c>statusErrorCode</c> and <c>statusDatetime</c> in the query. Signed with
/// <c>MessageBird-Signature-JWT</c> over the full URL (no body, so no payload hash), keyed with the
/// signing key stored as the company's SMS <c>webhookSecret</c>.
/// </summary>
public sealed class MessageBirdSmsWebhook(TimeProvider time, WebhookEventKeys eventKeys) : IDeliveryWebhook
{
    public string Route => "messagebird-sms";

    public bool ReportsByGet => true;

    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (settings.SmsProvider != SmsProvider.MessageBird)
        {
            return "the company does not send SMS through MessageBird";
        }
        if (settings.SmsWebhookSecretEncrypted is not { } encrypted)
        {
            return "the company has no MessageBird signing key configured for SMS";
        }
        var signingKey = WebhookSignatures.Utf8(secrets.Unprotect(encrypted, settings.Slot(nameof(CompanySettings.SmsWebhookSecretEncrypted))));
        return MessageBirdSignature.Verify(request.Url.AbsoluteUri, request.Body, request.Header("MessageBird-Signature-JWT"), signingKey, time.GetUtcNow());
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        var query = System.Web.HttpUtility.ParseQueryString(request.Url.Query);
        var id = query["id"];
        var status = query["status"];
        DeliveryStatus? mapped = status switch
        {
            "delivered" => DeliveryStatus.Delivered,
            "delivery_failed" or "expired" => DeliveryStatus.Failed,
            _ => null, // scheduled, sent, buffered: nothing the row does not already say
        };
        if (id is null || mapped is null)
        {
            return [];
        }
        var reason = mapped == DeliveryStatus.Failed
            ? $"MessageBird SMS {status}{(query["statusErrorCode"] is { Length: > 0 } code ? $" {code}" : "")}: {query["statusReason"] ?? "message not delivered"}"
            : null;
        // RFC 3339; a '+' offset left unencoded in the query reads as a space.
        var occurred = DateTimeOffset.TryParse(query["statusDatetime"]?.Replace(' ', '+'), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            ? at
            : (DateTimeOffset?)null;
        return [new DeliveryEvent(id, mapped.Value, occurred, reason, $"{id}:{eventKeys.Part(query["recipient"])}:{status}", request.Url.Query)];
    }
}
