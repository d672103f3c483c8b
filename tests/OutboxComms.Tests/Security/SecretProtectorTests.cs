using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Security;

public sealed class SecretProtectorTests
{
    private static SecretProtector With(string? keys) => new(Options.Create(new EncryptionKeyOptions { Keys = keys }));

    private static readonly SecretSlot Slot = new(Guid.Parse("6f1c2a4e-0000-4000-8000-000000000001"), "smtp_password_encrypted");

    [Fact]
    public void A_secret_round_trips_and_its_ciphertext_differs_every_time()
    {
        var protector = With(TestKeys.Encryption);

        var first = protector.Protect("smtp-password-1234", Slot);
        var second = protector.Protect("smtp-password-1234", Slot);

        Assert.Equal("smtp-password-1234", protector.Unprotect(first, Slot));
        Assert.NotEqual(first, second); // random 96-bit nonce
        Assert.Equal("test1", SecretProtector.KeyIdOf(first));
        Assert.DoesNotContain("smtp-password", System.Text.Encoding.UTF8.GetString(first), StringComparison.Ordinal);
    }

    [Fact]
    public void After_rotation_old_ciphertext_is_still_read_and_new_ciphertext_uses_the_new_key()
    {
        var old = With(TestKeys.Encryption).Protect("token", Slot);
        var rotated = With(TestKeys.RotatedEncryption);

        Assert.Equal("token", rotated.Unprotect(old, Slot));
        Assert.True(rotated.NeedsRotation(old));
        var fresh = rotated.Protect("token", Slot);
        Assert.Equal("test2", SecretProtector.KeyIdOf(fresh));
        Assert.False(rotated.NeedsRotation(fresh));
    }

    [Fact]
    public void Tampered_ciphertext_or_a_swapped_key_id_is_refused()
    {
        var protector = With(TestKeys.RotatedEncryption);
        var envelope = protector.Protect("api-key", Slot);

        var tampered = (byte[])envelope.Clone();
        tampered[^1] ^= 1;
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(tampered, Slot));

        var relabelled = (byte[])envelope.Clone();
        relabelled[2 + 4] = (byte)'1'; // "test2" → "test1": the header is authenticated
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(relabelled, Slot));
    }

    [Fact]
    public void Ciphertext_under_a_key_that_is_not_configured_names_the_missing_key()
    {
        var envelope = With(TestKeys.RotatedEncryption).Protect("x", Slot);

        var error = Assert.ThrowsAny<CryptographicException>(() => With(TestKeys.Encryption).Unprotect(envelope, Slot));

        Assert.Contains("'test2'", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("no-colon")]
    [InlineData("k1:dG9vIHNob3J0")]
    public void Missing_or_malformed_keys_fail_without_echoing_key_material(string? keys)
    {
        var error = Assert.Throws<OptionsValidationException>(() => With(keys));

        Assert.Contains(EncryptionKeyOptions.EnvironmentVariable, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("dG9vIHNob3J0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_id_given_twice_or_too_long_for_the_header_is_refused_at_start()
    {
        var fresh = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var old = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

        // The new key under the old one's id: the first would have been replaced by the second.
        var twice = Assert.Throws<OptionsValidationException>(() => With($"k1:{fresh},k1:{old}"));
        // 100 Devanagari letters are 300 bytes: more than the header's one length byte holds.
        var tooLong = Assert.Throws<OptionsValidationException>(() => With($"{new string('क', 100)}:{fresh}"));

        Assert.Contains("names key id 'k1' twice", twice.Message, StringComparison.Ordinal);
        Assert.Contains("longer than 255 bytes", tooLong.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(fresh, twice.Message + tooLong.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(old, twice.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_secret_copied_to_another_company_or_another_setting_is_refused()
    {
        var protector = With(TestKeys.Encryption);
        var envelope = protector.Protect("company-a-api-key", Slot);

        var otherCompany = Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(envelope, Slot with { CompanyId = Guid.NewGuid() }));
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(envelope, Slot with { Column = "whatsapp_api_key_encrypted" }));

        Assert.Contains("was not encrypted for this company and setting", otherCompany.Message, StringComparison.Ordinal);
        Assert.Equal("company-a-api-key", protector.Unprotect(envelope, Slot));
    }

    [Fact]
    public void A_version_1_value_written_before_slots_were_bound_is_read_and_marked_for_rotation()
    {
        var protector = With(TestKeys.Encryption);
        var legacy = Version1("test1", Convert.FromBase64String(TestKeys.Encryption["test1:".Length..]), "old-smtp-password");

        Assert.Equal("old-smtp-password", protector.Unprotect(legacy, Slot));
        Assert.True(protector.NeedsRotation(legacy));
        Assert.False(protector.NeedsRotation(protector.Protect("new", Slot)));

        // Once rotate-keys has rewritten them all, an operator may refuse version 1 (one copied in from a backup).
        var strict = new SecretProtector(Options.Create(new EncryptionKeyOptions { Keys = TestKeys.Encryption, RefuseUnbound = true }));
        Assert.Contains("Encryption:RefuseUnbound", Assert.ThrowsAny<CryptographicException>(() => strict.Unprotect(legacy, Slot)).Message, StringComparison.Ordinal);
        Assert.Equal("new", strict.Unprotect(protector.Protect("new", Slot), Slot));
        using var configured = new ServiceCollection()
            .AddSecretProtector(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                [EncryptionKeyOptions.EnvironmentVariable] = TestKeys.Encryption, ["Encryption:RefuseUnbound"] = "true",
            }).Build())
            .BuildServiceProvider();
        var fromConfiguration = configured.GetRequiredService<SecretProtector>();
        Assert.ThrowsAny<CryptographicException>(() => { _ = fromConfiguration.Unprotect(legacy, Slot); });

        // Relabelled as version 2, it no longer authenticates: the version is part of what the tag covers.
        var relabelled = (byte[])legacy.Clone();
        relabelled[0] = 2;
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(relabelled, Slot));

        // Nor does a version 2 value relabelled 1 (which would be read without its slot, in any company):
        // the same key, the same bytes, only the version byte changed.
        var bound = protector.Protect("bound-secret", Slot);
        var downgraded = (byte[])bound.Clone();
        downgraded[0] = 1;
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(downgraded, Slot));
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(downgraded, Slot with { CompanyId = Guid.NewGuid() }));

        // Garbage (plaintext written by SQL) is not mistaken for a newer build's envelope: it fails rather than waits.
        byte[] plain = [(byte)'h', 5, .. System.Text.Encoding.UTF8.GetBytes("unter2-smtp-password-in-clear-at-some-length")];
        var garbage = Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(plain, Slot));
        Assert.IsNotType<SecretKeyNotConfiguredException>(garbage);
    }

    /// <summary>An envelope as version 1 wrote it: the header alone as associated data.</summary>
    private static byte[] Version1(string keyId, byte[] key, string plaintext)
    {
        var id = System.Text.Encoding.UTF8.GetBytes(keyId);
        var clear = System.Text.Encoding.UTF8.GetBytes(plaintext);
        var envelope = new byte[2 + id.Length + 12 + 16 + clear.Length];
        envelope[0] = 1;
        envelope[1] = (byte)id.Length;
        id.CopyTo(envelope, 2);
        var offset = 2 + id.Length;
        RandomNumberGenerator.Fill(envelope.AsSpan(offset, 12));
        using var aes = new AesGcm(key, 16);
        aes.Encrypt(envelope.AsSpan(offset, 12), clear, envelope.AsSpan(offset + 28), envelope.AsSpan(offset + 12, 16), envelope.AsSpan(0, offset));
        return envelope;
    }
}
