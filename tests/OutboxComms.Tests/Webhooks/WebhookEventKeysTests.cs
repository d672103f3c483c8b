using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Security;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Tests.Webhooks;

public sealed class WebhookEventKeysTests
{
    private static readonly string First = SecretProtector.NewKey("k1");
    private static readonly string Second = SecretProtector.NewKey("k2");

    private static WebhookEventKeys Keys(string configured) =>
        new(new SecretProtector(Options.Create(new EncryptionKeyOptions { Keys = configured })));

    [Fact]
    public void A_number_in_an_event_key_is_a_hash_keyed_by_the_encryption_key_not_one_anyone_can_recompute()
    {
        var keys = Keys(First);
        var part = keys.Part("919876543210");

        Assert.Equal(part, keys.Part("919876543210"));
        Assert.Equal(WebhookEventKeys.PartLength, part.Length);
        Assert.NotEqual(part, keys.Part("919876543211"));
        // Not the plain SHA-256 (which every number's can be compared with), and not another installation's.
        Assert.DoesNotContain(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("919876543210")))[..16], part, StringComparison.Ordinal);
        Assert.NotEqual(part, Keys(Second).Part("919876543210"));
    }

    [Fact]
    public void Every_part_covers_each_configured_key_the_plain_hash_of_earlier_events_and_the_number_as_stored_before()
    {
        var rotated = Keys($"{Second},{First}");

        var every = rotated.EveryPart("919876543210").ToList();

        Assert.Equal(rotated.Part("919876543210"), every[0]);
        Assert.Equal(Keys(Second).Part("919876543210"), every[0]);
        Assert.Contains(Keys(First).Part("919876543210"), every);
        Assert.Contains(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("919876543210")))[..16], every);
        Assert.Contains("919876543210", every);
        // A plain hash the backfill hashed again, under either key.
        var plain = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("919876543210")))[..16];
        Assert.Contains(Keys(Second).Part(plain), every);
        Assert.Contains(Keys(First).Part(plain), every);
        Assert.Equal(6, every.Count);
    }

    [Fact]
    public void Rehashing_replaces_a_whole_number_in_marketing_and_messagebird_sms_keys_and_leaves_every_other_key_alone()
    {
        var keys = Keys(First);
        var legacy = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("919876543210")))[..16];

        Assert.Equal($"marketing:{keys.Part("919876543210")}:stop:1764000000", keys.Rehashed("whatsapp", "marketing:919876543210:stop:1764000000"));
        Assert.Equal($"mb-1:{keys.Part("+919876543210")}:delivered", keys.Rehashed("messagebird-sms", "mb-1:+919876543210:delivered"));
        // An unencoded '+' in MessageBird's query was read as a space.
        Assert.Equal($"mb-1:{keys.Part(" 3161234567")}:delivered", keys.Rehashed("messagebird-sms", "mb-1: 3161234567:delivered"));
        // A plain hash (anyone can hash every number) is hashed again with the key.
        Assert.Equal($"marketing:{keys.Part(legacy)}:stop:1764000000", keys.Rehashed("whatsapp", $"marketing:{legacy}:stop:1764000000"));
        // Already keyed, or not a number's key at all.
        Assert.Equal($"mb-1:{keys.Part("919876543210")}:delivered", keys.Rehashed("messagebird-sms", $"mb-1:{keys.Part("919876543210")}:delivered"));
        Assert.Equal("wamid.HBgM:delivered", keys.Rehashed("whatsapp", "wamid.HBgM:delivered"));
        Assert.Equal("1764000000:919876543210:x", keys.Rehashed("sendgrid", "1764000000:919876543210:x"));
    }
}
