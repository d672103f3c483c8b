using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// Resend's API: <c>POST {base}/emails</c> with a bearer API key, answered <c>{ "id" }</c>. Every send
/// carries our message's <c>Idempotency-Key</c>, so a retry after a lost answer cannot send twice.
/// URL attachments go as links (Resend fetches them); stored ones as base64.
/// </summary>
public sealed class ResendEmailProvider(ProviderHttp http) : IMessageProvider
{
    public const string DefaultBaseUrl = "https://api.resend.com/";
    private const string Provider = "Resend";

    public string Name => "RESEND";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.Email];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        if (EmailApi.MissingSettings(Provider, account) is { } missing)
        {
            return SendResult.Permanent(missing);
        }

        var from = account.From!;
        var payload = new JsonObject
        {
            ["from"] = EmailApi.Mailbox(account.FromName, from),
            ["to"] = new JsonArray(EmailApi.Mailbox(message.ToName, message.To)),
            ["subject"] = message.Subject ?? "",
            ["text"] = message.Body,
            ["headers"] = EmailApi.HeadersObject(message, from),
            ["tags"] = new JsonArray(new JsonObject { ["name"] = EmailApi.MessageIdTag, ["value"] = EmailApi.MessageIdValue(message) }),
        };
        if (message.HtmlBody is { Length: > 0 } html)
        {
            payload["html"] = html;
        }
        if (account.ReplyTo is { Length: > 0 } replyTo)
        {
            payload["reply_to"] = replyTo;
        }
        if (message.Attachments.Count > 0)
        {
            payload["attachments"] = new JsonArray([.. message.Attachments.Select(Attachment)]);
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, "emails"))
        {
            Content = JsonContent.Create(payload),
        };
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey!);
        request.Headers.Add("Idempotency-Key", message.IdempotencyKey);
        return await http.SendAsync(Provider, request, response => Interpret(response, message.EarlierAttempts), cancellationToken);
    }

    /// <summary>Lists the domains. A sending-only key (the kind Resend recommends) may not, and says so: that still proves the key.</summary>
    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (EmailApi.MissingSettings(Provider, account, needsFrom: false) is { } missing)
        {
            return new ConnectionCheck(false, missing);
        }
        using var request = new HttpRequestMessage(HttpMethod.Get, ProviderHttp.Endpoint(account.BaseUrl, DefaultBaseUrl, "domains"));
        request.Headers.Authorization = ProviderHttp.Bearer(account.ApiKey!);
        return await http.CheckAsync(Provider, request, response =>
            response.Status == HttpStatusCode.Unauthorized && Error(response).Name == "restricted_api_key"
                ? new ConnectionCheck(true, "Connected to Resend: the API key was accepted (it is restricted to sending email, which is all OutboxComms needs).")
                : null, cancellationToken);
    }

    private static JsonNode Attachment(CommunicationAttachment attachment)
    {
        var node = new JsonObject { ["filename"] = attachment.FileName, ["content_type"] = attachment.ContentType };
        if (attachment.Content is { } content)
        {
            node["content"] = Convert.ToBase64String(content);
        }
        else
        {
            node["path"] = attachment.Url;
        }
        return node;
    }

    private static SendResult Interpret(ProviderResponse response, int earlierAttempts)
    {
        if (response.IsSuccess)
        {
            return response.SentWithId(Provider, EmailApi.StringProperty(response.Json, "id"));
        }

        var (name, text) = Error(response);
        var described = name is null
            ? $"Resend HTTP {(int)response.Status}: {ProviderHttp.Truncate(response.Body, 200)}"
            : $"Resend {name}: {text}";
        return name switch
        {
            // The first request with this key is still being processed: its outcome decides, so ask again later.
            "concurrent_idempotent_requests" => SendResult.Transient(described, response.RetryAfter),
            // Resend keeps the key of an email it sent for 24 hours. Only a retry reuses a key (a
            // replay gets a new one), and a retry follows an attempt whose outcome was unknown (a
            // timeout, a 5xx): that attempt was taken, and this one's body differs only because the
            // template rendered again (date.now, an edited template). Failing it would tell the
            // practice an email the client has did not go. On a first attempt no earlier one of
            // ours can have used the key (ids handed out again after a restore): a failure.
            "invalid_idempotent_request" when earlierAttempts > 0 => SendResult.SentEarlier(
                $"sent by an earlier attempt whose answer was lost ({described}); Resend's email id is unknown, so its delivery events cannot be matched"),
            "invalid_idempotent_request" => SendResult.Permanent($"{described} (on this message's first attempt: its idempotency key was used by another request within 24 hours)"),
            // Also answered with 403 (unverified domain, test-only sender): a content problem, not a bad key.
            "validation_error" => SendResult.Permanent(described),
            _ => response.Classify(described),
        };
    }

    /// <summary>Resend's error body: <c>{ "statusCode", "name", "message" }</c>.</summary>
    private static (string? Name, string? Message) Error(ProviderResponse response)
    {
        var json = response.Json;
        return (EmailApi.StringProperty(json, "name"), EmailApi.StringProperty(json, "message"));
    }
}
