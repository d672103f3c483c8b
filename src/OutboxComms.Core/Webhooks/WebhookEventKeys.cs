using System.Security.Cryptography;
using System.Text;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// A person's number or address as it appears in a stored event's key (<c>webhook_events.event_key</c>),
/// where it tells one report from a redelivery of it: a keyed hash (HMAC-SHA-256 under a key
/// derived from <c>OUTBOXCOMMS_ENCRYPTION_KEY</c>), never the number. A plain hash would not do:
/// every Indian mobile number can be hashed in minutes, so an unkeyed hash is the number.
/// <para>
/// The current encryption key hashes new keys; an erasure matches the hashes under every configured
/// key (so an old key stays listed until <c>Webhooks:RetentionDays</c> have passed since it was
/// replaced) and, for events stored before keys were keyed (0041), the plain SHA-256 those carried
/// (hashed again with the key by WebhookEventBackfill) and the number as stored before that. After
/// a key rotation a redelivery of an event stored under the old key is stored again under the new
/// one: applying a status or a choice twice changes nothing.
/// </para>
/// </summary>
public sealed class WebhookEventKeys
{
    private const string Purpose = "outboxcomms/webhook-event-key/v1";

    /// <summary>Hex characters of a part: 96 bits, longer than any number (E.164: 15 digits) and than the plain hash (16).</summary>
    public const int PartLength = 24;

    private const int LegacyPartLength = 16;

    // Derived once: the configured keys do not change while the process runs.
    private readonly byte[][] keys;

    public WebhookEventKeys(SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        keys = [.. secrets.DerivedKeys(Purpose)];
    }

    /// <summary>The part new event keys carry for <paramref name="personal"/>.</summary>
    public string Part(string? personal) => Hmac(keys[0], personal);

    /// <summary>
    /// Every part an event key may carry for <paramref name="personal"/>: under each configured key,
    /// the plain hash of keys stored between 5f1bd20 and 0041, and the value itself (before that).
    /// </summary>
    public IEnumerable<string> EveryPart(string? personal) =>
        keys.Select(key => Hmac(key, personal))
            .Concat(keys.Select(key => Hmac(key, LegacyPart(personal))))
            .Append(LegacyPart(personal)).Append(personal ?? "").Distinct(StringComparer.Ordinal);

    /// <summary>
    /// <paramref name="eventKey"/> with a number stored whole in it (before 5f1bd20) hashed as
    /// <see cref="Part"/> would, and a plain hash (5f1bd20 to 0041) hashed again with the key (the
    /// number itself is not known; an erasure matches that form too): WhatsApp's
    /// <c>marketing:{wa_id}:…</c> and MessageBird SMS's <c>{id}:{recipient}:{status}</c>. Any other
    /// key is answered as it is.
    /// </summary>
    public string Rehashed(string provider, string eventKey)
    {
        ArgumentNullException.ThrowIfNull(eventKey);
        var parts = eventKey.Split(':');
        var at = provider switch
        {
            "whatsapp" when parts.Length >= 2 && parts[0] == "marketing" => 1,
            "messagebird-sms" when parts.Length == 3 => 1,
            _ => -1,
        };
        if (at < 0 || !(IsNumber(parts[at]) || IsLegacyPart(parts[at])))
        {
            return eventKey;
        }
        parts[at] = Part(parts[at]);
        return string.Join(':', parts);
    }

    // A number as stored whole: digits, perhaps after a '+' (or the space an unencoded '+' in
    // MessageBird's query became), and shorter than any hash.
    private static bool IsNumber(string part)
    {
        var digits = part.TrimStart(' ', '+');
        return digits.Length is > 0 and < LegacyPartLength && digits.All(char.IsAsciiDigit);
    }

    private static bool IsLegacyPart(string part) => part.Length == LegacyPartLength && part.All(char.IsAsciiHexDigitLower);

    private static string Hmac(byte[] key, string? personal) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(personal ?? "")))[..PartLength];

    private static string LegacyPart(string? personal) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(personal ?? "")))[..LegacyPartLength];
}
