using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using MimeKit;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers.Http;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// Amazon SES v2: <c>POST https://email.{region}.amazonaws.com/v2/email/outbound-emails</c>, signed with
/// SigV4 (service <c>ses</c>; access key id in ApiUser, secret in ApiKey). The message goes as raw MIME
/// built by <see cref="EmailComposition"/>, so attachments and headers travel exactly as SMTP would
/// send them. Errors name their type in the <c>x-amzn-ErrorType</c> header.
/// </summary>
public sealed class AwsSesEmailProvider(ProviderHttp http, AttachmentLoader attachments, TimeProvider time) : IMessageProvider
{
    public const string DefaultRegion = "ap-south-1";
    private const string Provider = "Amazon SES";
    private const string Service = "ses";
    private const string AccessKeySetting = "access key id";

    public string Name => "AWS_SES";

    public IReadOnlyCollection<Channel> Channels { get; } = [Channel.Email];

    // Internet mail's line ends, whatever the host's (MimeKit writes the host's by default).
    private static readonly FormatOptions CrLf = NewCrLf();

    private static FormatOptions NewCrLf()
    {
        var options = FormatOptions.Default.Clone();
        options.NewLineFormat = NewLineFormat.Dos;
        return options;
    }

    public async Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        var (files, refusal) = await EmailApi.PrepareAsync(attachments, Provider, message, account, AccessKeySetting, cancellationToken);
        if (refusal is not null)
        {
            return refusal;
        }

        using var mime = new MemoryStream();
        var email = EmailComposition.Build(message, account, files);
        // As MailKit does before SMTP: Hindi text and ₹ quoted-printable or base64, long HTML lines
        // wrapped. SES takes the raw bytes as they are and refuses lines over 1,000 characters.
        email.Prepare(EncodingConstraint.SevenBit);
        await email.WriteToAsync(CrLf, mime, cancellationToken);
        var payload = new JsonObject
        {
            ["FromEmailAddress"] = account.From,
            ["Destination"] = new JsonObject { ["ToAddresses"] = new JsonArray(message.To) },
            ["Content"] = new JsonObject { ["Raw"] = new JsonObject { ["Data"] = Convert.ToBase64String(mime.GetBuffer(), 0, (int)mime.Length) } },
            ["EmailTags"] = new JsonArray(new JsonObject { ["Name"] = EmailApi.MessageIdTag, ["Value"] = EmailApi.MessageIdValue(message) }),
        };
        if (account.ReplyTo is { Length: > 0 } replyTo)
        {
            payload["ReplyToAddresses"] = new JsonArray(replyTo);
        }

        using var request = Signed(HttpMethod.Post, account, "v2/email/outbound-emails", JsonSerializer.SerializeToUtf8Bytes(payload));
        return await http.SendAsync(Provider, request, Interpret, cancellationToken);
    }

    /// <summary>Reads the account (GetAccount): proves the keys, the signature and the region.</summary>
    public async Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(account);
        if (EmailApi.MissingSettings(Provider, account, AccessKeySetting, needsFrom: false) is { } missing)
        {
            return new ConnectionCheck(false, missing);
        }
        using var request = Signed(HttpMethod.Get, account, "v2/email/account", null);
        return await http.CheckAsync(Provider, request, cancellationToken);
    }

    private HttpRequestMessage Signed(HttpMethod method, ProviderAccount account, string relative, byte[]? json)
    {
        var region = account.Region is { Length: > 0 } configured ? configured : DefaultRegion;
        var request = new HttpRequestMessage(method, ProviderHttp.Endpoint(account.BaseUrl, $"https://email.{region}.amazonaws.com/", relative));
        if (json is not null)
        {
            request.Content = new ByteArrayContent(json);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }
        AwsSigV4.Sign(request, json ?? [], account.ApiUser!, account.ApiKey!, region, Service, time.GetUtcNow());
        return request;
    }

    private static SendResult Interpret(ProviderResponse response)
    {
        var json = response.Json;
        if (response.IsSuccess)
        {
            return response.SentWithId(Provider, EmailApi.StringProperty(json, "MessageId"));
        }

        var type = ErrorType(response);
        var text = EmailApi.StringProperty(json, "message") ?? EmailApi.StringProperty(json, "Message") ?? ProviderHttp.Truncate(response.Body, 200);
        var described = $"{Provider} {type ?? $"HTTP {(int)response.Status}"}: {text}";
        return type switch
        {
            // Throttling and the sending quota (a rolling 24 hours) pass; some come as 400, so go by the type.
            "TooManyRequestsException" or "ThrottlingException" or "Throttling" or "LimitExceededException" =>
                SendResult.Unavailable(described, response.RetryAfter),
            "MessageRejected" or "MailFromDomainNotVerifiedException" or "BadRequestException" or "NotFoundException" =>
                SendResult.Permanent(described),
            // Paused (SES's review of a high bounce or complaint rate, or the account's own pause)
            // ends once resolved: the messages wait as in an outage. Suspended is final.
            "SendingPausedException" =>
                SendResult.Unavailable($"{described} (sending is paused for this SES account; resolve it in the AWS console, and the messages go when it resumes)", PausedRetry),
            "AccountSuspendedException" =>
                SendResult.Permanent($"{described} (sending is stopped for this SES account; resolve it in the AWS console)"),
            _ => response.Classify(described),
        };
    }

    /// <summary>How long sends wait while the account's sending is paused, before trying again.</summary>
    internal static readonly TimeSpan PausedRetry = TimeSpan.FromHours(1);

    /// <summary>
    /// <c>x-amzn-ErrorType: MessageRejected:http://internal.amazon.com/…</c>, else the body's
    /// <c>__type</c> or <c>code</c> (<c>com.amazonaws…#MessageRejected</c>).
    /// </summary>
    private static string? ErrorType(ProviderResponse response)
    {
        var type = response.Header("x-amzn-ErrorType")
            ?? EmailApi.StringProperty(response.Json, "__type")
            ?? EmailApi.StringProperty(response.Json, "code");
        if (type is null)
        {
            return null;
        }
        type = type.Split(':')[0];
        return type[(type.LastIndexOf('#') + 1)..];
    }
}
