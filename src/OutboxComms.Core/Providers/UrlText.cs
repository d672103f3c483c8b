using System.Text.RegularExpressions;

namespace OutboxComms.Core.Providers;

/// <summary>
/// A provider URL as it may be shown (a message's status_reason, a test-connection reply, a log):
/// without the <c>user:password@</c> a practice may have written into a base URL.
/// </summary>
public static partial class UrlText
{
    /// <summary>Scheme, host and port (the port only when not the scheme's default); never the user info.</summary>
    public static string Origin(Uri url)
    {
        ArgumentNullException.ThrowIfNull(url);
        return url.GetComponents(UriComponents.SchemeAndServer, UriFormat.UriEscaped);
    }

    /// <summary>
    /// <paramref name="url"/> as written, less any user info after its scheme: for text that may not
    /// parse as a URL at all (a malformed setting is quoted back to say what is wrong with it).
    /// </summary>
    public static string WithoutUserInfo(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        return UserInfo().Replace(url, "${scheme}", 1);
    }

    // Up to the last "@" before the path, query or fragment (a password may hold "@" too), after
    // the scheme, or from the start when none was written ("user:pass@host/v1").
    [GeneratedRegex(@"^(?<scheme>\s*[A-Za-z][A-Za-z0-9+.\-]*://|\s*)[^/?#]*@", RegexOptions.CultureInvariant, matchTimeoutMilliseconds: 100)]
    private static partial Regex UserInfo();
}
