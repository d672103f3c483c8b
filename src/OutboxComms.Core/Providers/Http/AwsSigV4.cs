using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace OutboxComms.Core.Providers.Http;

/// <summary>
/// AWS Signature Version 4 in the Authorization-header form, enough for the JSON APIs we call (SES v2)
/// without taking the AWS SDK: canonical request, string to sign, then an HMAC-SHA256 chain keyed by
/// the secret, the date, the region and the service. Checked against AWS's published SigV4 test suite.
/// </summary>
public static class AwsSigV4
{
    public const string Algorithm = "AWS4-HMAC-SHA256";

    /// <summary>The three artefacts AWS's test suite publishes for each case.</summary>
    public sealed record Signature(string CanonicalRequest, string StringToSign, string Authorization);

    /// <summary>
    /// Adds <c>Host</c>, <c>X-Amz-Date</c> and <c>Authorization</c> to <paramref name="request"/>, signing
    /// its method, path, query, those headers, its content type and <paramref name="payload"/> (the
    /// exact bytes of its content).
    /// </summary>
    public static void Sign(HttpRequestMessage request, ReadOnlySpan<byte> payload, string accessKeyId, string secretAccessKey, string region, string service, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = request.RequestUri ?? throw new ArgumentException("the request has no URI", nameof(request));
        var host = uri.IsDefaultPort ? uri.IdnHost : $"{uri.IdnHost}:{uri.Port.ToString(CultureInfo.InvariantCulture)}";
        var amzDate = AmzDate(now);
        // Sent exactly as signed: HttpClient would derive the same Host, but saying it keeps the two from drifting.
        request.Headers.Host = host;
        request.Headers.Remove("X-Amz-Date");
        request.Headers.TryAddWithoutValidation("X-Amz-Date", amzDate);

        List<KeyValuePair<string, string>> headers = [new("Host", host), new("X-Amz-Date", amzDate)];
        if (request.Content?.Headers.ContentType is { } contentType)
        {
            headers.Add(new("Content-Type", contentType.ToString()));
        }
        var signature = Compute(request.Method.Method, uri.AbsolutePath, uri.Query, headers, payload, accessKeyId, secretAccessKey, region, service, now);
        request.Headers.Remove("Authorization");
        request.Headers.TryAddWithoutValidation("Authorization", signature.Authorization);
    }

    /// <summary>
    /// Signs a request given as parts. <paramref name="headers"/> are the headers to sign, including
    /// <c>Host</c> and <c>X-Amz-Date</c> (whose value must be <paramref name="at"/> in AWS's basic format);
    /// <paramref name="path"/> and <paramref name="query"/> as they appear in the request line.
    /// </summary>
    public static Signature Compute(
        string method, string path, string query, IEnumerable<KeyValuePair<string, string>> headers, ReadOnlySpan<byte> payload,
        string accessKeyId, string secretAccessKey, string region, string service, DateTimeOffset at)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(headers);
        ArgumentNullException.ThrowIfNull(secretAccessKey);

        // Names lower-cased and sorted; a repeated header's values joined by commas in the order sent.
        var canonicalHeaders = headers
            .GroupBy(h => h.Key.ToLowerInvariant(), StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (Name: g.Key, Value: string.Join(',', g.Select(h => CollapseWhitespace(h.Value)))))
            .ToList();
        var signedHeaders = string.Join(';', canonicalHeaders.Select(h => h.Name));
        var canonicalRequest = string.Join('\n',
            method.ToUpperInvariant(),
            CanonicalPath(path),
            CanonicalQuery(query),
            string.Concat(canonicalHeaders.Select(h => $"{h.Name}:{h.Value}\n")),
            signedHeaders,
            Hex(SHA256.HashData(payload)));

        var date = at.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
        var scope = $"{date}/{region}/{service}/aws4_request";
        var stringToSign = string.Join('\n', Algorithm, AmzDate(at), scope, Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest))));

        var key = Hmac(Encoding.UTF8.GetBytes("AWS4" + secretAccessKey), date);
        key = Hmac(key, region);
        key = Hmac(key, service);
        key = Hmac(key, "aws4_request");
        var signature = Hex(Hmac(key, stringToSign));

        return new Signature(canonicalRequest, stringToSign,
            $"{Algorithm} Credential={accessKeyId}/{scope}, SignedHeaders={signedHeaders}, Signature={signature}");
    }

    /// <summary>The <c>X-Amz-Date</c> form of an instant: <c>20150830T123600Z</c>.</summary>
    public static string AmzDate(DateTimeOffset at) => at.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);

    /// <summary>
    /// Each segment percent-encoded once (RFC 3986 unreserved characters kept), as the test suite
    /// expects. Non-S3 services want already-encoded paths encoded a second time; the SES paths we
    /// sign are plain ASCII, where once and twice agree.
    /// </summary>
    private static string CanonicalPath(string path) =>
        string.IsNullOrEmpty(path) ? "/" : string.Join('/', path.Split('/').Select(Encode));

    /// <summary>Parameters encoded, then sorted by name and value (ordinal, as AWS sorts bytes).</summary>
    private static string CanonicalQuery(string query)
    {
        var parameters = query.TrimStart('?')
            .Split('&', StringSplitOptions.RemoveEmptyEntries)
            .Select(parameter =>
            {
                var equals = parameter.IndexOf('=', StringComparison.Ordinal);
                return equals < 0
                    ? (Name: Encode(parameter), Value: "")
                    : (Name: Encode(parameter[..equals]), Value: Encode(parameter[(equals + 1)..]));
            })
            .OrderBy(p => p.Name, StringComparer.Ordinal)
            .ThenBy(p => p.Value, StringComparer.Ordinal);
        return string.Join('&', parameters.Select(p => $"{p.Name}={p.Value}"));
    }

    /// <summary>Whatever encoding the caller used is undone first, so a component is encoded exactly once.</summary>
    private static string Encode(string component) => Uri.EscapeDataString(Uri.UnescapeDataString(component));

    /// <summary>Trimmed, with runs of spaces inside the value collapsed to one.</summary>
    private static string CollapseWhitespace(string value) =>
        string.Join(' ', value.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    private static string Hex(byte[] bytes) => Convert.ToHexStringLower(bytes);
}
