using System.Net;
using System.Net.Http.Headers;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// Mailgun's Messages API: <c>POST {base}/v3/{domain}/messages</c>, HTTP Basic <c>api:{key}</c>, a
/// multipart form (<c>h:</c> fields become headers, <c>v:</c> fields come back on webhooks), answered
/// <c>{ "id": "&lt;…&gt;", "message": "Queued. Thank you." }</c>. EU accounts live on their own host.
/// </summary>
public sealed class MailgunEmailProvider(ProviderHttp http, AttachmentLoader attachments) : IMessageProvider
{
    public const string DefaultBaseUrl = "https://api.mailgun.net/";
    public const string EuBaseUrl = "https://api.eu.mailgun.net/";
    private const string Provider = "Mailgun";
    private const string DomainSetting = "sending domain";

    public string Name => "MAILGUN";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.Email];

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        var (files, refusal) = await EmailApi.PrepareAsync(attachments, Provider, message, account, DomainSetting, cancellationToken);
        if (refusal is not null)
        {
            return refusal;
        }

        var from = account.From!;
        var form = new MultipartFormDataContent();
        void Field(string name, string value) => form.Add(new StringContent(value), name);
        Field("from", EmailApi.Mailbox(account.FromName, from));
        Field("to", EmailApi.Mailbox(message.ToName, message.To));
        Field("subject", message.Subject ?? "");
        Field("text", message.Body);
        if (message.HtmlBody is { Length: > 0 } html)
        {
            Field("html", html);
        }
        if (account.ReplyTo is { Length: > 0 } replyTo)
        {
            Field("h:Reply-To", replyTo);
        }
        foreach (var (name, value) in EmailComposition.ExtraHeaders(message, from))
        {
            Field($"h:{name}", value);
        }
        Field($"v:{EmailApi.MessageIdTag}", EmailApi.MessageIdValue(message));
        foreach (var file in files)
        {
            var part = new ByteArrayContent(file.Content);
            part.Headers.ContentType = MediaTypeHeaderValue.Parse(file.ContentType);
            form.Add(part, "attachment", ProviderHttp.FormFileName(file.FileName));
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, Endpoint(account, $"v3/{Uri.EscapeDataString(account.ApiUser!)}/messages"))
        {
            Content = form,
        };
        request.Headers.Authorization = ProviderHttp.Basic("api", account.ApiKey!);
        return await http.SendAsync(Provider, request, Interpret, cancellationToken);
    }

    /// <summary>Reads the sending domain: proves the key, the domain and the region together.</summary>
    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (EmailApi.MissingSettings(Provider, account, DomainSetting, needsFrom: false) is { } missing)
        {
            return new ConnectionCheck(false, missing);
        }
        using var request = new HttpRequestMessage(HttpMethod.Get, Endpoint(account, $"v3/domains/{Uri.EscapeDataString(account.ApiUser!)}"));
        request.Headers.Authorization = ProviderHttp.Basic("api", account.ApiKey!);
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    internal static Uri Endpoint(ProviderAccount account, string relative) =>
        ProviderHttp.Endpoint(account.BaseUrl, string.Equals(account.Region, "eu", StringComparison.OrdinalIgnoreCase) ? EuBaseUrl : DefaultBaseUrl, relative);

    private static SendResult Interpret(ProviderResponse response)
    {
        var json = response.Json;
        if (response.IsSuccess)
        {
            // Mailgun answers the id in angle brackets; its events carry it without them.
            return response.SentWithId(Provider, EmailApi.StringProperty(json, "id")?.Trim('<', '>'));
        }

        // Errors are { "message": "…" }, except 401, which answers a bare "Forbidden".
        var described = $"Mailgun {(int)response.Status}: {EmailApi.StringProperty(json, "message") ?? ProviderHttp.Truncate(response.Body, 200)}";
        return response.Status == HttpStatusCode.NotFound
            ? SendResult.Permanent($"{described} (check the sending domain, and the region: EU domains need region \"eu\")")
            : response.Classify(described);
    }
}
