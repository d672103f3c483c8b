using System.Security.Cryptography;
using System.Text;

namespace OutboxComms.Api.Auth;

/// <summary>API keys: <c>oc_live_</c> + 32 random bytes (base64url). Only the SHA-256 hash is stored.</summary>
public static class ApiKeys
{
    public const string Prefix = "oc_live_";

    public static (string Key, string DisplayPrefix, byte[] Hash) Create()
    {
        var key = Prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        return (key, key[..(Prefix.Length + 6)], Hash(key));
    }

    public static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));

    /// <summary>Shaped as <see cref="Create"/> makes keys: anything else is refused without a database lookup.</summary>
    public static bool IsWellFormed(string presented) =>
        presented.Length == Prefix.Length + 43 && presented.StartsWith(Prefix, StringComparison.Ordinal)
        && presented.AsSpan(Prefix.Length).IndexOfAnyExcept(Base64UrlCharacters) < 0;

    private static readonly System.Buffers.SearchValues<char> Base64UrlCharacters =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
}
