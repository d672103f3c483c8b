using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Messaging;

/// <summary>
/// MessageBird's classic APIs (not the newer Bird platform), header <c>Authorization: AccessKey {key}</c>.
/// WhatsApp goes through the Conversations API, <c>POST /v1/send</c> on conversations.messagebird.com,
/// JSON <c>{to, from: channel id (<see cref="ProviderAccount.SenderId"/>), type, content}</c> with type
/// <c>text</c>, <c>file</c> (a linked document, the body as caption) or <c>hsm</c> (an approved template:
/// namespace from <see cref="ProviderAccount.AccountSid"/> when set, templateName, deterministic language,
/// positional <c>params[].default</c>). SMS goes through the REST API, <c>POST /messages</c> on
/// rest.messagebird.com, JSON <c>{originator, body, recipients, reference}</c>. The account's BaseUrl
/// replaces the host of whichever API its channel uses. Both answer an object with <c>id</c> (202/201)
/// or <c>{errors: [{code, description, parameter}]}</c>. Delivery reports: an SMS carries the
/// account's <see cref="ProviderAccount.StatusCallbackUrl"/> as <c>reportUrl</c>
/// (<see cref="Webhooks.MessageBirdSmsWebhook"/>); WhatsApp updates come to the webhook set in the
/// dashboard (<see cref="Webhooks.MessageBirdWebhook"/>).
/// </summary>
public sealed class MessageBirdProvider(ProviderHttp http) : IMessageProvider
{
    private const string Provider = "MessageBird";
    private const string ConversationsBase = "https://conversations.messagebird.com/";
    private const string RestBase = "https://rest.messagebird.com/";

    public string Name => "MESSAGEBIRD";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.WhatsApp, Channel.Sms];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        var whatsApp = message.Channel == Channel.WhatsApp;
        var sender = whatsApp ? (account.SenderId, "MessageBird WhatsApp channel id") : (account.From, "SMS originator");
        if (ChatMessageParts.Missing((account.ApiKey, "MessageBird access key"), sender) is { } missing)
        {
            return ChatMessageParts.NotConfigured(Provider, missing);
        }
        JsonObject body;
        if (whatsApp)
        {
            if (!ChatMessageParts.TryGetDocument(Provider, message, out var document, out var refusal))
            {
                return refusal!;
            }
            if (ChatMessageParts.RefuseTemplateWithDocument(Provider, message, document) is { } templateRefusal)
            {
                return templateRefusal; // the hsm content has parameters only
            }
            body = Conversation(message, account, document);
        }
        else
        {
            // SMS carries text only; a link to the invoice belongs in the body.
            body = new JsonObject
            {
                ["originator"] = account.From,
                ["body"] = message.Body,
                // Unicode when the text needs it (Hindi, ₹): "plain", the default, replaces what GSM 03.38 lacks.
                ["datacoding"] = "auto",
                ["recipients"] = new JsonArray(ChatMessageParts.Digits(message.To)),
                ["reference"] = message.MessageId.ToString(CultureInfo.InvariantCulture),
            };
            if (account.StatusCallbackUrl is { } reportUrl)
            {
                body["reportUrl"] = reportUrl.AbsoluteUri;
            }
        }
        using var request = Authorized(HttpMethod.Post, account, whatsApp ? "v1/send" : "messages");
        request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        return await http.SendAsync(Provider, request, Interpret, cancellationToken);
    }

    /// <summary>SMS accounts read their balance; WhatsApp accounts list one conversation on the API they send through.</summary>
    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (ChatMessageParts.Missing((account.ApiKey, "MessageBird access key")) is { } missing)
        {
            return ChatMessageParts.NotConfiguredCheck(Provider, missing);
        }
        using var request = Authorized(HttpMethod.Get, account, account.Channel == Channel.WhatsApp ? "v1/conversations?limit=1" : "balance");
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    private static HttpRequestMessage Authorized(HttpMethod method, ProviderAccount account, string relative)
    {
        var defaultBase = account.Channel == Channel.WhatsApp ? ConversationsBase : RestBase;
        var request = new HttpRequestMessage(method, ProviderHttp.Endpoint(account.BaseUrl, defaultBase, relative));
        request.Headers.Authorization = new AuthenticationHeaderValue("AccessKey", account.ApiKey);
        return request;
    }

    private static JsonObject Conversation(OutboundMessage message, ProviderAccount account, CommunicationAttachment? document)
    {
        var (type, content) = (message.ProviderTemplate, document) switch
        {
            ({ } template, _) => ("hsm", new JsonObject { ["hsm"] = Hsm(template, account) }),
            (null, { Url: { } url }) => ("file", new JsonObject { ["file"] = new JsonObject { ["url"] = url, ["caption"] = message.Body } }),
            _ => ("text", new JsonObject { ["text"] = message.Body }),
        };
        return new JsonObject
        {
            ["to"] = message.To,
            ["from"] = account.SenderId,
            ["type"] = type,
            ["content"] = content,
        };
    }

    private static JsonObject Hsm(ProviderTemplate template, ProviderAccount account)
    {
        var hsm = new JsonObject();
        // The namespace belongs to the WhatsApp Business Account, so it lives with the account, not the template.
        if (account.AccountSid is { Length: > 0 } ns)
        {
            hsm["namespace"] = ns;
        }
        hsm["templateName"] = template.Name;
        hsm["language"] = new JsonObject { ["policy"] = "deterministic", ["code"] = template.Language };
        hsm["params"] = new JsonArray([.. template.Parameters.Select(p => (JsonNode)new JsonObject { ["default"] = p })]);
        return hsm;
    }

    private static SendResult Interpret(ProviderResponse response)
    {
        var json = response.Json;
        if (response.IsSuccess)
        {
            // /v1/send has answered both {id, status} and a full message object; read either.
            return response.SentWithId(Provider, ChatMessageParts.Text(json, "id") ?? ChatMessageParts.Text(ChatMessageParts.Child(json, "message"), "id"));
        }
        var first = ChatMessageParts.Child(json, "errors") is { ValueKind: JsonValueKind.Array } errors && errors.GetArrayLength() > 0 ? errors[0] : (JsonElement?)null;
        var code = ChatMessageParts.Code(first, "code");
        var description = ChatMessageParts.Text(first, "description") ?? ProviderHttp.Truncate(response.Body, 300);
        var parameter = ChatMessageParts.Text(first, "parameter") is { Length: > 0 } p ? $" (parameter {p})" : "";
        var error = code is null ? $"{Provider} HTTP {(int)response.Status}: {description}" : $"{Provider} {code}: {description}{parameter}";
        return code switch
        {
            2 => SendResult.Permanent($"{error} (authentication failed: check the MessageBird access key)"),
            9 or 10 => SendResult.Permanent(error),
            // A top-up fixes it: retried an hour later as an outage of the account (no retry used up, up to Dispatch:OutageRetries attempts), not failed at once.
            25 => SendResult.Unavailable($"{error} (the MessageBird balance is too low to send: top up the account)", TimeSpan.FromHours(1)),
            _ => response.Classify(error),
        };
    }
}
