using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Security;

public sealed class SecretProtectorTests
{
    private static SecretProtector With(string? keys) => new(Options.Create(new EncryptionKeyOptions { Keys = keys }));

    [Fact]
    public void A_secret_round_trips_and_its_ciphertext_differs_every_time()
    {
        var protector = With(TestKeys.Encryption);

        var first = protector.Protect("smtp-password-1234");
        var second = protector.Protect("smtp-password-1234");

        Assert.Equal("smtp-password-1234", protector.Unprotect(first));
        Assert.NotEqual(first, second); // random 96-bit nonce
        Assert.Equal("test1", SecretProtector.KeyIdOf(first));
        Assert.DoesNotContain("smtp-password", System.Text.Encoding.UTF8.GetString(first), StringComparison.Ordinal);
    }

    [Fact]
    public void After_rotation_old_ciphertext_is_still_read_and_new_ciphertext_uses_the_new_key()
    {
        var old = With(TestKeys.Encryption).Protect("token");
        var rotated = With(TestKeys.RotatedEncryption);

        Assert.Equal("token", rotated.Unprotect(old));
        Assert.True(rotated.NeedsRotation(old));
        var fresh = rotated.Protect("token");
        Assert.Equal("test2", SecretProtector.KeyIdOf(fresh));
        Assert.False(rotated.NeedsRotation(fresh));
    }

    [Fact]
    public void Tampered_ciphertext_or_a_swapped_key_id_is_refused()
    {
        var protector = With(TestKeys.RotatedEncryption);
        var envelope = protector.Protect("api-key");

        var tampered = (byte[])envelope.Clone();
        tampered[^1] ^= 1;
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(tampered));

        var relabelled = (byte[])envelope.Clone();
        relabelled[2 + 4] = (byte)'1'; // "test2" → "test1": the header is authenticated
        Assert.ThrowsAny<CryptographicException>(() => protector.Unprotect(relabelled));
    }

    [Fact]
    public void Ciphertext_under_a_key_that_is_not_configured_names_the_missing_key()
    {
        var envelope = With(TestKeys.RotatedEncryption).Protect("x");

        var error = Assert.ThrowsAny<CryptographicException>(() => With(TestKeys.Encryption).Unprotect(envelope));

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
}
