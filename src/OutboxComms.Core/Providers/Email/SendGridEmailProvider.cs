using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// SendGrid's v3 Mail Send API: <c>POST {base}/v3/mail/send</c> with a bearer API key. A 202 answer
/// carries no body; the message id comes in the <c>X-Message-Id</c> header, and delivery events carry
/// it (with a suffix) plus our custom args.
/// </summary>
public sealed class SendGridEmailProvider(ProviderHttp http, AttachmentLoader attachments) : IMessageProvider
{
    public const string DefaultBaseUrl = "https://api.sendgrid.com/";
    private const string Provider = "SendGrid";

    public string Name => "SENDGRID";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.Email];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        var (files, refusal) = await EmailApi.PrepareAsync(attachments, Provider, message, account, userSetting: null, cancellationToken);
        if (refusal is not null)
        {
            return refusal;
        }

        var from = account.From!;
        // SendGrid requires text/plain before text/html.
        var content = new JsonArray(new JsonObject { ["type"] = "text/plain", ["value"] = message.Body });
        if (message.HtmlBody is { Length: > 0 } html)
        {
            content.Add(new JsonObject { ["type"] = "text/html", ["value"] = html });
        }
        var payload = new JsonObject
        {
            ["personalizations"] = new JsonArray(new JsonObject { ["to"] = new JsonArray(Address(message.To, message.ToName)) }),
            ["from"] = Address(from, account.FromName),
            ["subject"] = message.Subject ?? "",
            ["content"] = content,
            ["headers"] = EmailApi.HeadersObject(message, from),
            ["custom_args"] = new JsonObject { [EmailApi.MessageIdTag] = EmailApi.MessageIdValue(message) },
        };
        if (account.ReplyTo is { Length: > 0 } replyTo)
        {
            payload["reply_to"] = Address(replyTo, null);
        }
        if (files.Count > 0)
        {
            payload["attachments"] = new JsonArray([.. files.Select(file => (JsonNode)new JsonObject
            {
                ["content"] = Convert.ToBase64String(file.Content),
                ["type"] = file.ContentType,
                ["filename"] = file.FileName,
                ["disposition"] = "attachment",
            })]);
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, "v3/mail/send"))
        {
            Content = JsonContent.Create(payload),
        };
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey!);
        return await http.SendAsync(Provider, request, Interpret, cancellationToken);
    }

    /// <summary>Lists the key's scopes: read-only, and allowed for every valid key.</summary>
    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (EmailApi.MissingSettings(Provider, account, needsFrom: false) is { } missing)
        {
            return new ConnectionCheck(false, missing);
        }
        using var request = new HttpRequestMessage(HttpMethod.Get, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, "v3/scopes"));
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey!);
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    // SendGrid accepts a name with a comma or semicolon ("Sharma, Priya") with 202 and then drops
    // the mail as invalid; quoted, it is delivered (SendGrid's own libraries quote it).
    private static JsonObject Address(string email, string? name) =>
        string.IsNullOrWhiteSpace(name) ? new JsonObject { ["email"] = email }
            : new JsonObject { ["email"] = email, ["name"] = name.AsSpan().IndexOfAny(',', ';') >= 0 ? MimeKit.Utils.MimeUtils.Quote(name) : name };

    private static SendResult Interpret(ProviderResponse response)
    {
        if (response.IsSuccess)
        {
            // SendGrid answers 202 with an empty body and the id in X-Message-Id, on every send:
            // a 2xx without it is some other server's (a wrong base URL, a proxy's page).
            return response.Header("X-Message-Id") is { Length: > 0 } id
                ? SendResult.Sent(id)
                : SendResult.Transient($"SendGrid (HTTP {(int)response.Status}) answered without X-Message-Id: check the base URL; {ProviderHttp.Truncate(response.Body, 200)}");
        }

        // { "errors": [ { "message", "field", "help" } ] }
        var errors = response.Json is { ValueKind: JsonValueKind.Object } json
            && json.TryGetProperty("errors", out var list) && list.ValueKind == JsonValueKind.Array
                ? [.. list.EnumerateArray().Select(Describe)]
                : new List<(string Text, string? Field)>();
        var status = (int)response.Status;
        var described = errors.Count == 0
            ? $"SendGrid HTTP {status}: {ProviderHttp.Truncate(response.Body, 200)}"
            : $"SendGrid {status}: {string.Join("; ", errors.Select(e => e.Text))}";

        // A 403 about the from field is an unverified sender, not a bad key.
        if (response.Status == HttpStatusCode.Forbidden && errors.Any(e => e.Field == "from"))
        {
            return SendResult.Permanent($"{described} (verify the from address as a Sender Identity or authenticated domain in SendGrid)");
        }
        // A 401 saying "Maximum credits exceeded" is the plan's email allowance used up, not a bad
        // key: the messages wait (an outage) until the allowance resets or the plan is raised.
        if (response.Status == HttpStatusCode.Unauthorized && errors.Any(e => e.Text.Contains("Maximum credits exceeded", StringComparison.OrdinalIgnoreCase)))
        {
            return SendResult.Unavailable($"{described} (the SendGrid plan's email credits are used up: they come back when the plan resets, or raise the plan)", CreditsRetry);
        }
        if (response.Status == HttpStatusCode.TooManyRequests && response.RetryAfter is null)
        {
            // SendGrid signals its rate-limit window with X-RateLimit-Reset (Unix seconds) rather than Retry-After.
            return (response with { RetryAfter = UntilReset(response.Header("X-RateLimit-Reset")) }).Classify(described);
        }
        return response.Classify(described);
    }

    /// <summary>How long sends wait once the plan's credits are used up: an hour, then they try again.</summary>
    internal static readonly TimeSpan CreditsRetry = TimeSpan.FromHours(1);

    private static (string Text, string? Field) Describe(JsonElement error)
    {
        var message = EmailApi.StringProperty(error, "message");
        var field = EmailApi.StringProperty(error, "field");
        return (field is null ? message ?? error.GetRawText() : $"{message} (field {field})", field);
    }

    private static TimeSpan? UntilReset(string? reset)
    {
        if (!long.TryParse(reset, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds))
        {
            return null;
        }
        var wait = DateTimeOffset.FromUnixTimeSeconds(seconds) - DateTimeOffset.UtcNow;
        return wait > TimeSpan.Zero ? wait : null;
    }
}
