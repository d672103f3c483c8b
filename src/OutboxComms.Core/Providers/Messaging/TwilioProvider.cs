using System.Globalization;
using System.Text.Json;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Messaging;

/// <summary>
/// Twilio Programmable Messaging, WhatsApp and SMS. One form-encoded
/// <c>POST /2010-04-01/Accounts/{AccountSid}/Messages.json</c>, Basic auth AccountSid:AuthToken
/// (<see cref="ProviderAccount.ApiKey"/>). WhatsApp numbers carry the <c>whatsapp:</c> prefix on To
/// and From; an approved template goes as <c>ContentSid</c> (<see cref="ProviderTemplate.Name"/>) with
/// <c>ContentVariables</c> <c>{"1": …}</c> and no Body, since the Content template defines text and
/// media; a linked document goes as <c>MediaUrl</c>. A From starting with <c>MG</c> is a Messaging
/// Service and goes as <c>MessagingServiceSid</c>. Twilio answers 201 with the message (<c>sid</c>;
/// <c>price</c>, a negative decimal string, once known) or <c>{code, message, more_info, status}</c>.
/// India DLT: the Messages API has no DLT parameters. The principal entity id and content template
/// ids are registered with Twilio together with the sender id (pre-registration) and Twilio matches
/// each body against the registered templates, so the body must be the registered text and
/// <see cref="ProviderAccount.DltEntityId"/>/<see cref="ProviderAccount.DltTemplateId"/> stay off the wire.
/// Delivery status: <c>StatusCallback</c> is sent when the account carries a callback URL (the
/// service's <c>PublicBaseUrl</c> + <c>/webhooks/twilio/{companyId}</c>), so Twilio reports back.
/// </summary>
public sealed partial class TwilioProvider(ProviderHttp http) : IMessageProvider
{
    private const string Provider = "Twilio";
    private const string DefaultBase = "https://api.twilio.com/";

    public string Name => "TWILIO";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.WhatsApp, Channel.Sms];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        if (ChatMessageParts.Missing((account.AccountSid, "Twilio account SID"), (account.ApiKey, "Twilio auth token"), (account.From, "sending number")) is { } missing)
        {
            return ChatMessageParts.NotConfigured(Provider, missing);
        }
        // SMS carries text only (MMS does not reach India): a link to the invoice belongs in the body.
        CommunicationAttachment? document = null;
        if (message.Channel == Channel.WhatsApp && !ChatMessageParts.TryGetDocument(Provider, message, out document, out var refusal))
        {
            return refusal!;
        }
        if (ChatMessageParts.RefuseTemplateWithDocument(Provider, message, document) is { } templateRefusal)
        {
            return templateRefusal; // a ContentSid message takes its media from the content template, not MediaUrl
        }
        using var request = Authorized(HttpMethod.Post, account, $"Accounts/{Uri.EscapeDataString(account.AccountSid!)}/Messages.json");
        request.Content = new FormUrlEncodedContent(Form(message, account, document));
        return await http.SendAsync(Provider, request, Interpret, cancellationToken);
    }

    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (ChatMessageParts.Missing((account.AccountSid, "Twilio account SID"), (account.ApiKey, "Twilio auth token")) is { } missing)
        {
            return ChatMessageParts.NotConfiguredCheck(Provider, missing);
        }
        using var request = Authorized(HttpMethod.Get, account, $"Accounts/{Uri.EscapeDataString(account.AccountSid!)}.json");
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    private static HttpRequestMessage Authorized(HttpMethod method, ProviderAccount account, string resource)
    {
        var request = new HttpRequestMessage(method, ProviderHttp.Endpoint(account.BaseUrl, DefaultBase, $"2010-04-01/{resource}"));
        request.Headers.Authorization = ProviderHttp.Basic(account.AccountSid!, account.ApiKey!);
        return request;
    }

    private static List<KeyValuePair<string, string>> Form(OutboundMessage message, ProviderAccount account, CommunicationAttachment? document)
    {
        var whatsApp = message.Channel == Channel.WhatsApp;
        var from = account.From!;
        var form = new List<KeyValuePair<string, string>>
        {
            new("To", whatsApp ? WhatsAppAddress(message.To) : message.To),
            MessagingServiceSid().IsMatch(from)
                ? new("MessagingServiceSid", from)
                : new("From", whatsApp ? WhatsAppAddress(from) : from),
        };
        if (account.StatusCallbackUrl is { } callback)
        {
            form.Add(new("StatusCallback", callback.AbsoluteUri));
        }
        if (message.ProviderTemplate is { } template)
        {
            form.Add(new("ContentSid", template.Name));
            if (template.Parameters.Count > 0)
            {
                form.Add(new("ContentVariables", ContentVariables(template.Parameters)));
            }
            return form;
        }
        form.Add(new("Body", message.Body));
        if (document?.Url is { } url)
        {
            form.Add(new("MediaUrl", url));
        }
        return form;
    }

    private static string WhatsAppAddress(string number) =>
        number.StartsWith("whatsapp:", StringComparison.Ordinal) ? number : $"whatsapp:{number}";

    /// <summary>Content API variables are positional: <c>{"1": first, "2": second, …}</c>.</summary>
    private static string ContentVariables(IReadOnlyList<string> parameters) =>
        JsonSerializer.Serialize(parameters
            .Select((value, index) => (Key: (index + 1).ToString(CultureInfo.InvariantCulture), value))
            .ToDictionary(p => p.Key, p => p.value));

    private static SendResult Interpret(ProviderResponse response)
    {
        var json = response.Json;
        if (response.IsSuccess)
        {
            var price = Price(ChatMessageParts.Text(json, "price"));
            // Twilio prices in the account's currency, USD unless the account says otherwise (price_unit,
            // ISO 4217, sometimes lower case): never the company's rate-card currency.
            var unit = ChatMessageParts.Text(json, "price_unit") is { Length: > 0 } named ? named.ToUpperInvariant() : "USD";
            return response.SentWithId(Provider, ChatMessageParts.Text(json, "sid"), price, price is null ? null : unit);
        }
        var code = ChatMessageParts.Code(json, "code");
        var text = ChatMessageParts.Text(json, "message") ?? ProviderHttp.Truncate(response.Body, 300);
        var error = code is null ? $"{Provider} HTTP {(int)response.Status}: {text}" : $"{Provider} {code}: {text}";
        return code switch
        {
            21211 or 21614 => SendResult.Permanent(error, bounced: true),
            21610 => SendResult.OptedOut($"{error} (the recipient unsubscribed by replying STOP: their opt-in for this channel is withdrawn; opt them in again once they reply START)"),
            63016 => SendResult.Permanent($"{error} (outside the 24-hour WhatsApp window: send an approved template via ContentSid)"),
            20003 => SendResult.Permanent($"{error} (authentication failed: check the Twilio account SID and auth token)"),
            20429 => SendResult.Unavailable(error, response.RetryAfter),
            // The sender's queue is full (about ten hours of messages at its rate): throttling, not
            // this message's fault; it goes once the queue has drained.
            21611 => SendResult.Unavailable($"{error} (this sender's queue at Twilio is full: messages wait for it to drain)", TimeSpan.FromHours(1)),
            _ => response.Classify(error),
        };
    }

    // A Messaging Service SID ("MG" and 32 hex digits), not a sender ID that happens to start with
    // MG (an Indian DLT header such as MGASSO, for "M G & Associates").
    [System.Text.RegularExpressions.GeneratedRegex("^MG[0-9a-fA-F]{32}$")]
    private static partial System.Text.RegularExpressions.Regex MessagingServiceSid();

    /// <summary>Twilio reports what it charged as a negative amount ("-0.0075"); we record the cost.</summary>
    private static decimal? Price(string? price) =>
        decimal.TryParse(price, NumberStyles.Number, CultureInfo.InvariantCulture, out var amount) ? Math.Abs(amount) : null;
}
