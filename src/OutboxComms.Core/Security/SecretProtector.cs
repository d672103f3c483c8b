using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace OutboxComms.Core.Security;

/// <summary>
/// Encryption keys for provider secrets, from <c>OUTBOXCOMMS_ENCRYPTION_KEY</c>:
/// <c>id:base64(32 bytes)[,id2:base64(32 bytes)…]</c>. The first key encrypts; every listed key
/// decrypts, so a new key can be put first and old ciphertext still read until re-encrypted.
/// </summary>
public sealed class EncryptionKeyOptions
{
    public const string EnvironmentVariable = "OUTBOXCOMMS_ENCRYPTION_KEY";

    public string? Keys { get; set; }

    /// <summary>
    /// <c>Encryption:RefuseUnbound</c>: refuse version 1 values (written before secrets were bound
    /// to their company and column, so readable in any row). Set it once <c>rotate-keys</c> has
    /// rewritten them all: a version 1 value copied in from a backup or another row is then refused.
    /// </summary>
    public bool RefuseUnbound { get; set; }
}

/// <summary>
/// Where a secret is stored: a company and the column holding it. Version 2 envelopes bind it into
/// the ciphertext as AES-GCM associated data, so a value copied by SQL into another company's row,
/// or into another secret's column, does not decrypt: another company's key cannot be made to
/// travel with this company's settings (for example to a base URL set by SQL). The column label is
/// part of every stored ciphertext (see CompanySettings.SecretColumns).
/// </summary>
public readonly record struct SecretSlot(Guid CompanyId, string Column)
{
    public override string ToString() => $"company_settings/{CompanyId:N}/{Column}";
}

/// <summary>
/// AES-256-GCM for secrets at rest. Each value is a self-describing envelope:
/// <c>version (1) | key id length (1) | key id (UTF-8) | nonce (12, random) | tag (16) | ciphertext</c>.
/// The key id travels with the ciphertext, so rotation never needs to guess which key was used.
/// The version and key id are authenticated; from version 2 so is the value's <see cref="SecretSlot"/>.
/// Version 1 values (written before slots were bound) are still read, and <c>rotate-keys</c>
/// rewrites them as version 2.
/// </summary>
public sealed class SecretProtector
{
    private const byte Version = 2;
    private const byte UnboundVersion = 1;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private readonly Dictionary<string, byte[]> keys;

    public SecretProtector(IOptions<EncryptionKeyOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        (CurrentKeyId, keys) = Parse(options.Value.Keys);
        refuseUnbound = options.Value.RefuseUnbound;
    }

    private readonly bool refuseUnbound;

    public string CurrentKeyId { get; }

    public byte[] Protect(string plaintext, SecretSlot slot)
    {
        ArgumentNullException.ThrowIfNull(plaintext);
        var keyId = Encoding.UTF8.GetBytes(CurrentKeyId);
        var clear = Encoding.UTF8.GetBytes(plaintext);
        var envelope = new byte[2 + keyId.Length + NonceSize + TagSize + clear.Length];
        envelope[0] = Version;
        envelope[1] = (byte)keyId.Length;
        keyId.CopyTo(envelope, 2);
        var offset = 2 + keyId.Length;
        var nonce = envelope.AsSpan(offset, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(keys[CurrentKeyId], TagSize);
        aes.Encrypt(nonce, clear, envelope.AsSpan(offset + NonceSize + TagSize), envelope.AsSpan(offset + NonceSize, TagSize), AssociatedData(envelope, offset, slot));
        return envelope;
    }

    /// <summary>The secret stored at <paramref name="slot"/>; throws when it was stored elsewhere, tampered with, or under a key not configured.</summary>
    public string Unprotect(byte[] envelope, SecretSlot slot)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        var keyId = KeyIdOf(envelope);
        if (refuseUnbound && envelope[0] == UnboundVersion)
        {
            throw new CryptographicException($"the stored {slot.Column} predates binding to its company and setting, and Encryption:RefuseUnbound is set: enter it again in settings (or run rotate-keys before setting it)");
        }
        if (!keys.TryGetValue(keyId, out var key))
        {
            throw new SecretKeyNotConfiguredException($"secret was encrypted with key '{keyId}', which is not configured in {EncryptionKeyOptions.EnvironmentVariable}");
        }
        var offset = 2 + Encoding.UTF8.GetByteCount(keyId);
        var clear = new byte[envelope.Length - offset - NonceSize - TagSize];
        using var aes = new AesGcm(key, TagSize);
        try
        {
            aes.Decrypt(envelope.AsSpan(offset, NonceSize), envelope.AsSpan(offset + NonceSize + TagSize), envelope.AsSpan(offset + NonceSize, TagSize), clear,
                AssociatedData(envelope, offset, slot));
        }
        catch (AuthenticationTagMismatchException ex)
        {
            throw new CryptographicException($"the stored {slot.Column} was not encrypted for this company and setting, or was altered: enter it again in settings", ex);
        }
        return Encoding.UTF8.GetString(clear);
    }

    public string? UnprotectOrNull(byte[]? envelope, SecretSlot slot) => envelope is null ? null : Unprotect(envelope, slot);

    /// <summary>
    /// A key for another purpose (e.g. signing unsubscribe links) derived from each configured key
    /// with HKDF, current first, so rotating the encryption key rotates these too.
    /// </summary>
    public IEnumerable<byte[]> DerivedKeys(string purpose) =>
        new[] { keys[CurrentKeyId] }.Concat(keys.Where(k => k.Key != CurrentKeyId).Select(k => k.Value))
            .Select(key => HKDF.DeriveKey(HashAlgorithmName.SHA256, key, 32, info: Encoding.UTF8.GetBytes(purpose)));

    /// <summary>True when the value was encrypted with a key other than the current one, or before slots were bound (version 1).</summary>
    public bool NeedsRotation(byte[] envelope) => KeyIdOf(envelope) != CurrentKeyId || envelope[0] == UnboundVersion;

    public static string KeyIdOf(byte[] envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        if (envelope.Length < 2 + NonceSize + TagSize || envelope.Length < 2 + envelope[1] + NonceSize + TagSize)
        {
            throw new CryptographicException("not an OutboxComms secret envelope");
        }
        if (envelope[0] is > Version and <= 15)
        {
            // A later envelope format, as a newer build writes it (a rolling deploy): another process reads it.
            throw new SecretKeyNotConfiguredException($"secret envelope version {envelope[0]} was written by a newer build than this one, which reads versions {UnboundVersion} and {Version}");
        }
        if (envelope[0] is not (Version or UnboundVersion))
        {
            // Anything else is not ours (plaintext or garbage written by SQL): fails, it will not pass.
            throw new CryptographicException("not an OutboxComms secret envelope");
        }
        return Encoding.UTF8.GetString(envelope, 2, envelope[1]);
    }

    /// <summary>A new random key in the configuration format, e.g. for <c>ops/run.sh</c> or a rotation.</summary>
    public static string NewKey(string id) => $"{id}:{Convert.ToBase64String(RandomNumberGenerator.GetBytes(32))}";

    // The version and key id are authenticated too, so neither can be swapped; from version 2 the
    // slot follows them. (A version 1 value relabelled 2 then fails: its tag did not cover a slot.)
    private static byte[] AssociatedData(byte[] envelope, int headerLength, SecretSlot slot) =>
        envelope[0] == UnboundVersion ? envelope[..headerLength] : [.. envelope.AsSpan(0, headerLength), .. Encoding.UTF8.GetBytes(slot.ToString())];

    private static (string Current, Dictionary<string, byte[]> Keys) Parse(string? configured)
    {
        if (string.IsNullOrWhiteSpace(configured))
        {
            throw new OptionsValidationException(EncryptionKeyOptions.EnvironmentVariable, typeof(EncryptionKeyOptions),
                [$"{EncryptionKeyOptions.EnvironmentVariable} is not set: provider secrets cannot be encrypted or read. Format: id:base64-of-32-bytes[,id2:...]"]);
        }
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        string? current = null;
        foreach (var entry in configured.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var separator = entry.IndexOf(':', StringComparison.Ordinal);
            byte[]? key = null;
            if (separator > 0 && separator < 256)
            {
                try
                {
                    key = Convert.FromBase64String(entry[(separator + 1)..]);
                }
                catch (FormatException)
                {
                    key = null;
                }
            }
            if (key is not { Length: 32 })
            {
                // Never echo the entry: it is key material.
                throw new OptionsValidationException(EncryptionKeyOptions.EnvironmentVariable, typeof(EncryptionKeyOptions),
                    [$"{EncryptionKeyOptions.EnvironmentVariable} entry {keys.Count + 1} is not 'id:base64-of-32-bytes'"]);
            }
            var id = entry[..separator];
            // The id is stored in each value's header in one length byte: a longer one (in UTF-8)
            // would write values no one could read.
            if (Encoding.UTF8.GetByteCount(id) > byte.MaxValue)
            {
                throw new OptionsValidationException(EncryptionKeyOptions.EnvironmentVariable, typeof(EncryptionKeyOptions),
                    [$"{EncryptionKeyOptions.EnvironmentVariable} entry {keys.Count + 1}: its key id is longer than 255 bytes"]);
            }
            // A second key under an id already given would silently replace the first: the new key
            // given as "k1:NEW,k1:OLD" would leave values written under OLD while rotate-keys said
            // they were current, and dropping OLD later would lose every secret.
            if (!keys.TryAdd(id, key))
            {
                throw new OptionsValidationException(EncryptionKeyOptions.EnvironmentVariable, typeof(EncryptionKeyOptions),
                    [$"{EncryptionKeyOptions.EnvironmentVariable} names key id '{id}' twice: give the new key an id of its own (e.g. k2:…, then k1:… for the old one)"]);
            }
            current ??= id;
        }
        return (current!, keys);
    }
}

/// <summary>
/// A secret this process cannot read yet, though another may: its key is not in this process's
/// configuration, or a newer build wrote it. During a key rotation or a rolling deploy that passes;
/// a secret altered or copied from another row (a plain <see cref="CryptographicException"/>) does not.
/// </summary>
public sealed class SecretKeyNotConfiguredException(string message) : CryptographicException(message);

public static class SecretProtectorExtensions
{
    /// <summary>Reads the keys from OUTBOXCOMMS_ENCRYPTION_KEY (or Encryption:Keys) and fails at start when they are missing or malformed.</summary>
    public static IServiceCollection AddSecretProtector(this IServiceCollection services, Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        services.AddOptions<EncryptionKeyOptions>()
            .Configure(o =>
            {
                o.Keys = configuration[EncryptionKeyOptions.EnvironmentVariable] ?? configuration["Encryption:Keys"];
                o.RefuseUnbound = string.Equals(configuration["Encryption:RefuseUnbound"], "true", StringComparison.OrdinalIgnoreCase);
            })
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<EncryptionKeyOptions>, EncryptionKeyValidator>();
        services.AddSingleton<SecretProtector>();
        services.AddSingleton<Webhooks.WebhookEventKeys>();
        return services;
    }

    private sealed class EncryptionKeyValidator : IValidateOptions<EncryptionKeyOptions>
    {
        public ValidateOptionsResult Validate(string? name, EncryptionKeyOptions options)
        {
            try
            {
                _ = new SecretProtector(Options.Create(options));
                return ValidateOptionsResult.Success;
            }
            catch (OptionsValidationException ex)
            {
                return ValidateOptionsResult.Fail(ex.Failures);
            }
        }
    }
}
