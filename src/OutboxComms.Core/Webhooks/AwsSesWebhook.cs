using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// Amazon SES bounce and delivery notifications (or configuration-set events) through an Amazon SNS
/// topic with an HTTPS subscription to <c>/webhooks/ses/{companyId}</c>. SNS signs each message
/// (RSA, SHA1 for <c>SignatureVersion</c> 1, SHA256 for 2) over a canonical string of its fields,
/// with the certificate at <c>SigningCertURL</c>, which must be an SNS host of AWS
/// (<see cref="WebhookOptions.SnsOriginPattern"/>). Anyone can sign through a topic of their own, so
/// the topic must also be the company's: its ARN is stored as the email <c>webhookSecret</c>. A
/// subscription is confirmed by fetching its <c>SubscribeURL</c> once its signature and topic check
/// out. Raw message delivery carries no signature, so it must stay off.
/// </summary>
public sealed partial class AwsSesWebhook(IHttpClientFactory httpClients, IOptions<WebhookOptions> options, TimeProvider time) : IDeliveryWebhook
{
    public const string ClientName = "aws-sns";
    private const int MaxCachedCertificates = 32;

    private readonly ConcurrentDictionary<string, Lazy<Task<X509Certificate2>>> certificates = new(StringComparer.Ordinal);

    /// <summary>
    /// How old a signed notification may be. SNS retries an HTTP/S subscription for an hour at
    /// most (a hard limit of its delivery policies), so a notification signed three hours ago is
    /// a replay of a captured request rather than a retry: refused, like SendGrid's and Mailgun's
    /// stale signatures, before its events could be applied once their webhook_events rows are
    /// purged. Subscription confirmations are not limited: confirming one again changes nothing.
    /// </summary>
    public static readonly TimeSpan RetryWindow = TimeSpan.FromHours(3);

    public string Route => "ses";

    /// <summary>SNS signatures need the signing certificate, fetched over the network: see <see cref="VerifyAsync"/>.</summary>
    public string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets) =>
        "an SNS message is verified with its signing certificate, which only VerifyAsync fetches";

    public async ValueTask<string?> VerifyAsync(WebhookRequest request, CompanySettings settings, SecretProtector secrets, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (WebhookSignatures.EmailSecret(settings, EmailProvider.AwsSes, "Amazon SES", "SNS topic ARN (the email webhookSecret)", secrets, out var refusal) is not { } topicArn)
        {
            return refusal;
        }
        SnsMessage message;
        try
        {
            message = SnsMessage.Read(request.Body);
        }
        catch (JsonException)
        {
            return "not an SNS message (raw message delivery must be off)";
        }
        if (message.Type is not ("Notification" or "SubscriptionConfirmation" or "UnsubscribeConfirmation") || message.CanonicalText() is not { } signed)
        {
            return "not an SNS message (raw message delivery must be off)";
        }
        if (!string.Equals(message.TopicArn, topicArn, StringComparison.Ordinal))
        {
            return $"SNS topic {message.TopicArn} is not the company's";
        }
        if (message.Type == "Notification" && !IsFresh(message.Timestamp))
        {
            return "SNS Timestamp older than SNS's retries or in the future (a replay, or a clock far off)";
        }
        var hash = message.SignatureVersion switch
        {
            "1" => HashAlgorithmName.SHA1,
            "2" => HashAlgorithmName.SHA256,
            _ => default(HashAlgorithmName?),
        };
        var signature = message.Signature is { } s ? WebhookSignatures.FromBase64(s) : null;
        if (hash is null || signature is null)
        {
            return "SNS signature missing or of an unknown version";
        }
        if (!IsCertificateUrl(message.SigningCertUrl, options.Value.SnsOriginPattern))
        {
            return "SNS SigningCertURL is not an Amazon SNS certificate address";
        }

        X509Certificate2 certificate;
        try
        {
            certificate = await CertificateAsync(message.SigningCertUrl!, cancellationToken);
        }
        catch (Exception ex) when (ex is HttpRequestException or CryptographicException or TaskCanceledException)
        {
            return $"SNS signing certificate could not be read: {ex.Message}";
        }
        using var rsa = certificate.GetRSAPublicKey();
        var now = time.GetUtcNow().UtcDateTime;
        if (rsa is null || now < certificate.NotBefore.ToUniversalTime() || now > certificate.NotAfter.ToUniversalTime())
        {
            return "SNS signing certificate is not a valid RSA certificate";
        }
        return rsa.VerifyData(WebhookSignatures.Utf8(signed), signature, hash.Value, RSASignaturePadding.Pkcs1) ? null : "SNS signature wrong";
    }

    private bool IsFresh(string? timestamp)
    {
        if (!DateTimeOffset.TryParse(timestamp, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var signedAt))
        {
            return false;
        }
        var now = time.GetUtcNow();
        return signedAt >= now - RetryWindow && signedAt <= now + WebhookSignatures.Tolerance;
    }

    /// <summary>A verified subscription request is confirmed by fetching its SubscribeURL (an SNS address too).</summary>
    public async Task ConfirmAsync(WebhookRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var message = SnsMessage.Read(request.Body);
        if (message.Type != "SubscriptionConfirmation")
        {
            return;
        }
        if (!IsSubscribeUrl(message.SubscribeUrl, options.Value.SnsOriginPattern))
        {
            throw new InvalidOperationException("SNS SubscribeURL is not an Amazon SNS confirmation address");
        }
        using var response = await httpClients.CreateClient(ClientName).GetAsync(new Uri(message.SubscribeUrl!), cancellationToken);
        response.EnsureSuccessStatusCode();
    }

    public IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings)
    {
        ArgumentNullException.ThrowIfNull(request);
        var envelope = SnsMessage.Read(request.Body);
        if (envelope.Type != "Notification" || envelope.Message is null)
        {
            return [];
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(envelope.Message);
        }
        catch (JsonException)
        {
            return []; // authentic (signed, the company's topic) but not an SES event, e.g. SES's test notification
        }
        using var _ = document;
        var root = document.RootElement;
        // SES notifications say notificationType; configuration-set event publishing says eventType.
        var kind = ChatMessageParts.Text(root, "notificationType") ?? ChatMessageParts.Text(root, "eventType");
        var id = ChatMessageParts.Text(ChatMessageParts.Child(root, "mail"), "messageId");
        if (id is null)
        {
            return [];
        }
        if (kind == "Complaint")
        {
            var complained = DateTimeOffset.TryParse(ChatMessageParts.Text(ChatMessageParts.Child(root, "complaint"), "timestamp"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var when)
                ? when
                : (DateTimeOffset?)null;
            return [DeliveryEvent.Complaint(id, complained, $"{envelope.MessageId}:{kind}", request.Body)];
        }
        (DeliveryStatus Status, JsonElement? Detail, string? Error)? change = kind switch
        {
            "Delivery" => (DeliveryStatus.Delivered, ChatMessageParts.Child(root, "delivery"), null),
            "Open" => (DeliveryStatus.Read, ChatMessageParts.Child(root, "open"), null),
            "Bounce" => Bounce(ChatMessageParts.Child(root, "bounce")),
            "Reject" => (DeliveryStatus.Failed, ChatMessageParts.Child(root, "reject"),
                $"SES reject: {ChatMessageParts.Text(ChatMessageParts.Child(root, "reject"), "reason") ?? "no reason given"}"),
            "Rendering Failure" => (DeliveryStatus.Failed, ChatMessageParts.Child(root, "failure"),
                $"SES rendering failure: {ChatMessageParts.Text(ChatMessageParts.Child(root, "failure"), "errorMessage") ?? "no reason given"}"),
            _ => null, // Send, DeliveryDelay, Click, Subscription: no status of ours
        };
        if (change is not { } known)
        {
            return [];
        }
        var occurred = DateTimeOffset.TryParse(ChatMessageParts.Text(known.Detail, "timestamp"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            ? at
            : (DateTimeOffset?)null;
        return [new DeliveryEvent(id, known.Status, occurred, known.Error, $"{envelope.MessageId}:{kind}", request.Body)];
    }

    /// <summary>A permanent bounce (no such mailbox, on the suppression list) is BOUNCED; a transient one that SES gave up on is FAILED.</summary>
    private static (DeliveryStatus, JsonElement?, string?) Bounce(JsonElement? bounce)
    {
        var type = ChatMessageParts.Text(bounce, "bounceType") ?? "Undetermined";
        var subType = ChatMessageParts.Text(bounce, "bounceSubType") ?? "General";
        var recipient = ChatMessageParts.Child(bounce, "bouncedRecipients") is { ValueKind: JsonValueKind.Array } recipients && recipients.GetArrayLength() > 0
            ? recipients[0]
            : (JsonElement?)null;
        var detail = ChatMessageParts.Text(recipient, "diagnosticCode") ?? ChatMessageParts.Text(recipient, "status");
        var error = $"SES bounce ({type}/{subType}){(detail is null ? "" : $": {detail}")}";
        return (type == "Permanent" ? DeliveryStatus.Bounced : DeliveryStatus.Failed, bounce, error);
    }

    /// <summary>
    /// SNS's signing certificate: <c>/SimpleNotificationService-{hex}.pem</c>, no query, at an origin
    /// (scheme, host, port) matching <paramref name="originPattern"/>, by default an
    /// <c>https://sns.{region}.amazonaws.com</c> host: a region code, so no S3 bucket named "sns"
    /// (<c>sns.s3.amazonaws.com</c>) or other look-alike qualifies.
    /// </summary>
    internal static bool IsCertificateUrl(string? url, string originPattern) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && IsSnsOrigin(uri, originPattern)
        && CertificatePath().IsMatch(uri.AbsolutePath) && uri.Query.Length == 0 && uri.Fragment.Length == 0;

    /// <summary>The subscription confirmation: <c>/?Action=ConfirmSubscription&amp;…</c> at an SNS origin.</summary>
    internal static bool IsSubscribeUrl(string? url, string originPattern) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && IsSnsOrigin(uri, originPattern) && uri.AbsolutePath == "/"
        && System.Web.HttpUtility.ParseQueryString(uri.Query)["Action"] == "ConfirmSubscription";

    private static bool IsSnsOrigin(Uri uri, string originPattern) =>
        uri.UserInfo.Length == 0
        && Regex.IsMatch(uri.GetLeftPart(UriPartial.Authority), originPattern, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100));

    [GeneratedRegex("^/SimpleNotificationService-[0-9a-f]{16,64}\\.pem$", RegexOptions.CultureInvariant)]
    private static partial Regex CertificatePath();

    /// <summary>SNS signs with a few certificates that change rarely: each is fetched once and kept (a failed fetch is not).</summary>
    private async Task<X509Certificate2> CertificateAsync(string url, CancellationToken cancellationToken)
    {
        if (certificates.Count > MaxCachedCertificates)
        {
            certificates.Clear();
        }
        var fetch = certificates.GetOrAdd(url, key => new Lazy<Task<X509Certificate2>>(() => FetchAsync(key)));
        try
        {
            return await fetch.Value.WaitAsync(cancellationToken);
        }
        finally
        {
            if (fetch.Value.IsFaulted || fetch.Value.IsCanceled)
            {
                certificates.TryRemove(KeyValuePair.Create(url, fetch));
            }
        }
    }

    private async Task<X509Certificate2> FetchAsync(string url)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var pem = await httpClients.CreateClient(ClientName).GetStringAsync(new Uri(url), timeout.Token);
        return X509Certificate2.CreateFromPem(pem);
    }

    /// <summary>The fields of an SNS message, and the text SNS signed.</summary>
    private sealed record SnsMessage(
        string? Type, string? MessageId, string? TopicArn, string? Subject, string? Message, string? Timestamp, string? Token,
        string? SubscribeUrl, string? SignatureVersion, string? Signature, string? SigningCertUrl)
    {
        public static SnsMessage Read(string body)
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new JsonException("an SNS message is a JSON object");
            }
            string? Field(string name) => root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
            return new SnsMessage(Field("Type"), Field("MessageId"), Field("TopicArn"), Field("Subject"), Field("Message"), Field("Timestamp"),
                Field("Token"), Field("SubscribeURL"), Field("SignatureVersion"), Field("Signature"), Field("SigningCertURL"));
        }

        /// <summary>
        /// "Name\nvalue\n" for each signed field in byte order of the names: Message, MessageId,
        /// Subject (when present), Timestamp, TopicArn, Type for a notification; Message, MessageId,
        /// SubscribeURL, Timestamp, Token, TopicArn, Type for the (un)subscribe confirmations.
        /// Null when a required field is missing.
        /// </summary>
        public string? CanonicalText()
        {
            (string Name, string? Value, bool Required)[] fields = Type == "Notification"
                ? [("Message", Message, true), ("MessageId", MessageId, true), ("Subject", Subject, false), ("Timestamp", Timestamp, true), ("TopicArn", TopicArn, true), ("Type", Type, true)]
                : [("Message", Message, true), ("MessageId", MessageId, true), ("SubscribeURL", SubscribeUrl, true), ("Timestamp", Timestamp, true), ("Token", Token, true), ("TopicArn", TopicArn, true), ("Type", Type, true)];
            var text = new StringBuilder();
            foreach (var (name, value, required) in fields)
            {
                if (value is null)
                {
                    if (required)
                    {
                        return null;
                    }
                    continue;
                }
                text.Append(name).Append('\n').Append(value).Append('\n');
            }
            return text.ToString();
        }
    }
}
