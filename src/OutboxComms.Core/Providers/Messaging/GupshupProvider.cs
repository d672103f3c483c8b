using System.Net;
using System.Text.Json.Nodes;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Messaging;

/// <summary>
/// Gupshup's WhatsApp API (api.gupshup.io), header <c>apikey</c>, form-encoded. Free text and documents:
/// <c>POST /wa/api/v1/msg</c> with <c>channel=whatsapp</c>, <c>source</c> (the business number,
/// digits), <c>destination</c> (digits), <c>src.name</c> (the app name, <see cref="ProviderAccount.SenderId"/>)
/// and <c>message</c>, itself a JSON string: <c>{"type":"text","text":…}</c> or
/// <c>{"type":"file","url":…,"filename":…,"caption":…}</c>. Approved templates:
/// <c>POST /wa/api/v1/template/msg</c> with <c>template={"id":…,"params":[…]}</c>, plus a
/// <c>message</c> document when the template has a document header. Gupshup answers
/// <c>{status:"submitted", messageId}</c> or <c>{status:"error", message}</c>, sometimes labelled
/// text/html, so the body is read as JSON whatever its content type says.
/// </summary>
public sealed class GupshupProvider(ProviderHttp http) : IMessageProvider
{
    private const string Provider = "Gupshup";
    private const string DefaultBase = "https://api.gupshup.io/";

    public string Name => "GUPSHUP";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.WhatsApp];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        if (ChatMessageParts.Missing((account.ApiKey, "Gupshup API key"), (account.SenderId, "Gupshup app name"), (account.From, "WhatsApp business number")) is { } missing)
        {
            return ChatMessageParts.NotConfigured(Provider, missing);
        }
        if (!ChatMessageParts.TryGetDocument(Provider, message, out var document, out var refusal))
        {
            return refusal!;
        }
        var form = new List<KeyValuePair<string, string>>
        {
            new("channel", "whatsapp"),
            new("source", ChatMessageParts.Digits(account.From!)),
            new("destination", ChatMessageParts.Digits(message.To)),
            new("src.name", account.SenderId!),
        };
        string path;
        if (message.ProviderTemplate is { } template)
        {
            path = "wa/api/v1/template/msg";
            form.Add(new("template", new JsonObject
            {
                ["id"] = template.Name,
                ["params"] = new JsonArray([.. template.Parameters.Select(p => (JsonNode)p)]),
            }.ToJsonString()));
            if (document?.Url is { } link)
            {
                form.Add(new("message", new JsonObject
                {
                    ["type"] = "document",
                    ["document"] = new JsonObject { ["link"] = link, ["filename"] = document.FileName },
                }.ToJsonString()));
            }
        }
        else
        {
            path = "wa/api/v1/msg";
            var content = document?.Url is { } url
                ? new JsonObject { ["type"] = "file", ["url"] = url, ["filename"] = document.FileName, ["caption"] = message.Body }
                : new JsonObject { ["type"] = "text", ["text"] = message.Body };
            form.Add(new("message", content.ToJsonString()));
        }
        using var request = Authorized(HttpMethod.Post, account, path);
        request.Content = new FormUrlEncodedContent(form);
        return await http.SendAsync(Provider, request, Interpret, cancellationToken);
    }

    /// <summary>Reads the wallet balance: authenticated, read-only, and it needs nothing but the key.</summary>
    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (ChatMessageParts.Missing((account.ApiKey, "Gupshup API key")) is { } missing)
        {
            return ChatMessageParts.NotConfiguredCheck(Provider, missing);
        }
        using var request = Authorized(HttpMethod.Get, account, "sm/api/v2/wallet/balance");
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    private static HttpRequestMessage Authorized(HttpMethod method, ProviderAccount account, string relative)
    {
        var request = new HttpRequestMessage(method, ProviderHttp.Endpoint(account.BaseUrl, DefaultBase, relative));
        request.Headers.TryAddWithoutValidation("apikey", account.ApiKey);
        return request;
    }

    private static SendResult Interpret(ProviderResponse response)
    {
        var json = response.Json;
        var status = ChatMessageParts.Text(json, "status");
        if (response.IsSuccess && !"error".Equals(status, StringComparison.OrdinalIgnoreCase))
        {
            // {"status":"submitted","messageId":…}; a 2xx that is not Gupshup's JSON (a wrong base
            // URL, a proxy's page) is retried, as for every HTTP provider.
            return response.SentWithId(Provider, ChatMessageParts.Text(json, "messageId"));
        }
        // "message" is usually a sentence; some gateways nest an object there, so fall back to its raw text.
        var text = ChatMessageParts.Text(json, "message")
            ?? (ChatMessageParts.Child(json, "message") is { } nested ? nested.GetRawText() : ProviderHttp.Truncate(response.Body, 300));
        var error = $"{Provider} (HTTP {(int)response.Status}): {text}";
        if (text.Contains("Authentication Failed", StringComparison.OrdinalIgnoreCase))
        {
            return SendResult.Permanent($"{error} (authentication failed: check the Gupshup API key)");
        }
        if (text.Contains("Invalid Destination", StringComparison.OrdinalIgnoreCase))
        {
            return SendResult.Permanent(error, bounced: true);
        }
        if (response.Status == HttpStatusCode.TooManyRequests || text.Contains("Too Many Requests", StringComparison.OrdinalIgnoreCase)
            || text.Contains("rate limit", StringComparison.OrdinalIgnoreCase))
        {
            return SendResult.Unavailable(error, response.RetryAfter);
        }
        return response.Classify(error);
    }
}
