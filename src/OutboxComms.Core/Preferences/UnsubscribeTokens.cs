using System.Security.Cryptography;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Preferences;

/// <summary>
/// Signed, unguessable unsubscribe links: base64url(customer id | HMAC-SHA256 truncated to 128 bits),
/// keyed by a key derived from the encryption keys. Nothing is stored per link.
/// </summary>
public sealed class UnsubscribeTokens(SecretProtector secrets)
{
    private const string Purpose = "outboxcomms/unsubscribe/v1";
    private const int MacLength = 16;

    public string Create(Guid customerId)
    {
        var id = customerId.ToByteArray();
        var mac = HMACSHA256.HashData(secrets.DerivedKeys(Purpose).First(), id).AsSpan(0, MacLength);
        return Base64Url(id.Concat(mac.ToArray()).ToArray());
    }

    public bool TryRead(string token, out Guid customerId)
    {
        customerId = Guid.Empty;
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(token.Replace('-', '+').Replace('_', '/') + new string('=', (4 - (token.Length % 4)) % 4));
        }
        catch (FormatException)
        {
            return false;
        }
        if (bytes.Length != 16 + MacLength)
        {
            return false;
        }
        var id = bytes.AsSpan(0, 16).ToArray();
        var presented = bytes.AsSpan(16, MacLength);
        foreach (var key in secrets.DerivedKeys(Purpose))
        {
            if (CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(key, id).AsSpan(0, MacLength), presented))
            {
                customerId = new Guid(id);
                return true;
            }
        }
        return false;
    }

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
