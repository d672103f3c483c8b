using System.Security.Cryptography;
using System.Text;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>A provider's callback as it arrived: the URL it was sent to, headers, raw body and form fields.</summary>
public sealed record WebhookRequest(Uri Url, string Body, IReadOnlyDictionary<string, string> Headers, IReadOnlyDictionary<string, string> Form)
{
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}

/// <summary>One status change a provider reported for one of our messages.</summary>
public sealed record DeliveryEvent(string ProviderMessageId, DeliveryStatus Status, DateTimeOffset? OccurredAt, string? Error, string EventKey, string Payload)
{
    /// <summary>A customer's reply to the message (WhatsApp): sets response_at, not the status.</summary>
    public bool IsResponse { get; init; }
    /// <summary>The failure says the recipient opted out of the channel: their opt-in is withdrawn.</summary>
    public bool RecipientOptedOut { get; init; }

    /// <summary>
    /// The recipient gets no more general updates (everywhere, or on the channel the reason names):
    /// they reported the email as spam or unsubscribed through the provider's own link (events of
    /// their own, with no status: see <see cref="CarriesStatus"/>), or the failure says they
    /// stopped the business's marketing messages (WhatsApp 131050).
    /// </summary>
    public ProviderOptOuts.GeneralUpdatesStop? StopsGeneralUpdates { get; init; }

    /// <summary>
    /// The provider says this send is not charged: WhatsApp's pricing calls it free (<c>billable</c>
    /// false, or a <c>free_…</c> pricing type: a reply in the customer service window, a click-to-WhatsApp
    /// entry point), or the message failed (Meta charges a message only once delivered). Its rate-card
    /// cost is taken back (<see cref="DeliveryEventRecorder"/>).
    /// </summary>
    public bool Free { get; init; }

    /// <summary>
    /// A failure the provider reports after taking the message whose code says it is temporary
    /// (<see cref="TransientFailures"/>): a message still SENT is sent again after the dispatcher's
    /// backoff, using up a retry, rather than failed for good (DeliveryEventRecorder).
    /// </summary>
    public bool TransientFailure { get; init; }

    /// <summary>With <see cref="TransientFailure"/>: the account's condition (<see cref="TransientFailures.AccountWide"/>), waited out on the outage budget.</summary>
    public bool AccountWide { get; init; }

    /// <summary>
    /// Our own id of the message, when the event carries it back (Mailgun's user variables): the
    /// message its provider id names must be this one, or the event matches none.
    /// </summary>
    public long? ExpectedMessageId { get; init; }

    /// <summary>False for an event that only names the message whose recipient asked for something (<see cref="Status"/> is not used).</summary>
    public bool CarriesStatus { get; init; } = true;

    /// <summary>
    /// Not about a message: a WhatsApp user stopped or resumed the business's marketing messages
    /// (the Cloud API's user_preferences webhook), naming them by their WhatsApp id only.
    /// </summary>
    public WhatsAppMarketingChoice? MarketingChoice { get; init; }

    public static DeliveryEvent MarketingChoiceMade(WhatsAppMarketingChoice choice, DateTimeOffset? occurredAt, string eventKey, string payload) =>
        new("", DeliveryStatus.Sent, occurredAt, null, eventKey, payload) { MarketingChoice = choice, CarriesStatus = false };

    public static DeliveryEvent Complaint(string providerMessageId, DateTimeOffset? occurredAt, string eventKey, string payload) =>
        StoppingGeneralUpdates(ProviderOptOuts.GeneralUpdatesStop.Complaint, providerMessageId, occurredAt, eventKey, payload);

    public static DeliveryEvent StoppingGeneralUpdates(ProviderOptOuts.GeneralUpdatesStop reason, string providerMessageId, DateTimeOffset? occurredAt, string eventKey, string payload) =>
        new(providerMessageId, DeliveryStatus.Sent, occurredAt, null, eventKey, payload) { StopsGeneralUpdates = reason, CarriesStatus = false };
}

/// <summary>A WhatsApp user's choice about the business's marketing messages: <c>wa_id</c> is their number's digits.</summary>
public sealed record WhatsAppMarketingChoice(string WhatsAppId, bool Stopped);

/// <summary>
/// One provider's delivery webhook: how it proves it is the provider, and how its events read.
/// Each implementation is about its own wire format only.
/// </summary>
public interface IDeliveryWebhook
{
    /// <summary>The path segment in <c>/webhooks/{route}/{companyId}</c>.</summary>
    string Route { get; }

    /// <summary>The provider reports with GET, everything in the query (MessageBird SMS); the others POST.</summary>
    bool ReportsByGet => false;

    /// <summary>Null when the request is authentic; otherwise why not (logged, never returned in detail).</summary>
    string? Verify(WebhookRequest request, CompanySettings settings, SecretProtector secrets);

    /// <summary>As <see cref="Verify"/>, for a provider whose check needs the network (SNS fetches its signing certificate).</summary>
    ValueTask<string?> VerifyAsync(WebhookRequest request, CompanySettings settings, SecretProtector secrets, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Verify(request, settings, secrets));

    /// <summary>
    /// After verification, before parsing: a subscription handshake the provider expects in a
    /// verified request (SNS's SubscribeURL). Throws when it could not be completed, so the
    /// provider asks again.
    /// </summary>
    Task ConfirmAsync(WebhookRequest request, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The events of a verified request, for the company whose <paramref name="settings"/> verified it.</summary>
    IReadOnlyList<DeliveryEvent> Parse(WebhookRequest request, CompanySettings settings);

    /// <summary>
    /// For a provider whose signature does not cover the body: the signed one-time token of an
    /// authentic request, accepted once per body (<see cref="WebhookNonces"/>). Null for the others.
    /// </summary>
    string? SignatureNonce(WebhookRequest request) => null;
}

/// <summary>Signature arithmetic shared by the webhooks; comparisons are constant-time.</summary>
public static class WebhookSignatures
{
    /// <summary>The signing time replay protection accepts: this close to now, either way.</summary>
    public static readonly TimeSpan Tolerance = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Whether a signed Unix timestamp (seconds) is within <see cref="Tolerance"/> of now. Any other
    /// text, or a number out of any date's range, is not: it never throws.
    /// </summary>
    public static bool IsFresh(string? unixSeconds, TimeProvider time) => IsFresh(unixSeconds, time, Tolerance, Tolerance);

    /// <summary>Whether a signed Unix timestamp (seconds) is at most <paramref name="maxAge"/> old and <paramref name="maxAhead"/> ahead of now.</summary>
    public static bool IsFresh(string? unixSeconds, TimeProvider time, TimeSpan maxAge, TimeSpan maxAhead)
    {
        ArgumentNullException.ThrowIfNull(time);
        if (!long.TryParse(unixSeconds, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var seconds))
        {
            return false;
        }
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        return seconds >= now - (long)maxAge.TotalSeconds && seconds <= now + (long)maxAhead.TotalSeconds;
    }

    /// <summary>
    /// The company's stored email webhook secret (<paramref name="secretName"/>: what it is for this
    /// provider), decrypted: null (refusal given) unless the company sends email through
    /// <paramref name="provider"/> and has one.
    /// </summary>
    public static string? EmailSecret(CompanySettings settings, EmailProvider provider, string name, string secretName, SecretProtector secrets, out string? refusal)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        // The route's secret column is shared by the email providers (a SendGrid company's holds its
        // public verification key): only the company's own provider's route may use it.
        refusal = settings.EmailProvider != provider ? $"the company does not send email through {name}"
            : settings.EmailWebhookSecretEncrypted is null ? $"the company has no {secretName} configured"
            : null;
        return refusal is null ? secrets.Unprotect(settings.EmailWebhookSecretEncrypted!, settings.Slot(nameof(CompanySettings.EmailWebhookSecretEncrypted))) : null;
    }

    /// <summary>
    /// As <see cref="EmailSecret"/> for WhatsApp, as bytes: null (refusal
    /// given) unless the company sends WhatsApp through <paramref name="provider"/> and has one.
    /// </summary>
    public static byte[]? WhatsAppSecret(CompanySettings settings, WhatsAppProvider provider, string name, SecretProtector secrets, out string? refusal)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        // The secret column is shared by the WhatsApp providers (a Gupshup company's is a token in
        // its callback URL): only the company's own provider's route may use it.
        refusal = settings.WhatsAppProvider != provider ? $"the company does not send WhatsApp through {name}"
            : settings.WhatsAppWebhookSecretEncrypted is null ? $"the company has no {name} webhook secret configured"
            : null;
        return refusal is null ? Utf8(secrets.Unprotect(settings.WhatsAppWebhookSecretEncrypted!, settings.Slot(nameof(CompanySettings.WhatsAppWebhookSecretEncrypted)))) : null;
    }

    public static bool Matches(ReadOnlySpan<byte> expected, string? presented, Func<string, byte[]?> decode)
    {
        ArgumentNullException.ThrowIfNull(decode);
        if (string.IsNullOrEmpty(presented))
        {
            return false;
        }
        var bytes = decode(presented);
        return bytes is not null && CryptographicOperations.FixedTimeEquals(expected, bytes);
    }

    public static byte[]? FromBase64(string value)
    {
        try
        {
            return Convert.FromBase64String(value);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    public static byte[]? FromHex(string value)
    {
        try
        {
            return Convert.FromHexString(value);
        }
        catch (FormatException)
        {
            return null;
        }
    }

    public static byte[] HmacSha256(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    public static byte[] Utf8(string value) => Encoding.UTF8.GetBytes(value);
}
