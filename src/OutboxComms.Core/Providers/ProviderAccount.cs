using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Providers;

/// <summary>
/// A company's account with one provider on one channel, secrets decrypted: what a provider client
/// needs to send. Built per send from <see cref="CompanySettings"/>; never logged or returned.
/// </summary>
public sealed record ProviderAccount
{
    public required Guid CompanyId { get; init; }
    public required Channel Channel { get; init; }
    /// <summary>The provider's wire name, e.g. SMTP, TWILIO.</summary>
    public required string Provider { get; init; }

    /// <summary>API key, bearer token, Twilio auth token, SES secret access key.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Mailgun sending domain, SES access key id.</summary>
    public string? ApiUser { get; init; }
    /// <summary>Twilio account SID.</summary>
    public string? AccountSid { get; init; }
    /// <summary>WhatsApp Cloud API phone-number id, MessageBird channel id, Gupshup app name.</summary>
    public string? SenderId { get; init; }
    /// <summary>From email address, or the sending number / DLT sender id.</summary>
    public string? From { get; init; }
    public string? FromName { get; init; }
    public string? ReplyTo { get; init; }
    /// <summary>Override of the provider's default endpoint (regional endpoint, test server).</summary>
    public Uri? BaseUrl { get; init; }
    /// <summary>SES region; Mailgun "eu" for the EU endpoint.</summary>
    public string? Region { get; init; }

    public string? SmtpHost { get; init; }
    public int? SmtpPort { get; init; }
    public SmtpSecurity SmtpSecurity { get; init; } = SmtpSecurity.StartTls;
    public string? SmtpUsername { get; init; }
    public string? SmtpPassword { get; init; }

    /// <summary>
    /// Where the provider should post this message's delivery statuses, for providers that take it
    /// per message (Twilio's StatusCallback); set from <c>PublicBaseUrl</c>, null without it.
    /// </summary>
    public Uri? StatusCallbackUrl { get; init; }

    /// <summary>India DLT: principal entity id and content template id for SMS.</summary>
    public string? DltEntityId { get; init; }
    public string? DltTemplateId { get; init; }

    /// <summary>Keeps secrets out of logs and exception messages.</summary>
    public override string ToString() => $"{Provider} account of company {CompanyId} ({Channel})";

    /// <summary>
    /// The account from the company's settings. The API validates what it stores, but settings
    /// written by SQL are not checked there: a from or reply-to that is not an email address, or a
    /// base URL that is not an absolute http(s) URL, throws <see cref="ProviderSettingsException"/>
    /// naming the setting, so the worker fails the message saying what to fix instead of retrying
    /// a parse error.
    /// </summary>
    public static ProviderAccount For(CompanySettings settings, Channel channel, SecretProtector secrets)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(secrets);
        if (channel == Channel.Email)
        {
            Email(settings.FromEmail, "fromEmail");
            Email(settings.ReplyToEmail, "replyTo");
        }
        return channel switch
        {
            Channel.Email => new ProviderAccount
            {
                CompanyId = settings.CompanyId,
                Channel = channel,
                Provider = settings.EmailProvider is { } e ? WireName<EmailProvider>.Of(e) : "",
                ApiKey = secrets.UnprotectOrNull(settings.EmailApiKeyEncrypted, settings.Slot(nameof(CompanySettings.EmailApiKeyEncrypted))),
                ApiUser = settings.EmailApiUser,
                // An internationalised domain in the form every provider's API takes (ContactAddresses.ForSending).
                From = settings.FromEmail is { } from ? ContactAddresses.ForSending(from.Trim()) : null,
                FromName = settings.FromName,
                ReplyTo = settings.ReplyToEmail is { } replyTo ? ContactAddresses.ForSending(replyTo.Trim()) : null,
                BaseUrl = Url(settings.EmailBaseUrl, "email baseUrl"),
                Region = settings.EmailRegion,
                SmtpHost = settings.SmtpHost,
                SmtpPort = settings.SmtpPort,
                SmtpSecurity = settings.SmtpSecurity,
                SmtpUsername = settings.SmtpUsername,
                SmtpPassword = secrets.UnprotectOrNull(settings.SmtpPasswordEncrypted, settings.Slot(nameof(CompanySettings.SmtpPasswordEncrypted))),
            },
            Channel.WhatsApp => new ProviderAccount
            {
                CompanyId = settings.CompanyId,
                Channel = channel,
                Provider = settings.WhatsAppProvider is { } w ? WireName<WhatsAppProvider>.Of(w) : "",
                ApiKey = secrets.UnprotectOrNull(settings.WhatsAppApiKeyEncrypted, settings.Slot(nameof(CompanySettings.WhatsAppApiKeyEncrypted))),
                AccountSid = settings.WhatsAppAccountSid,
                SenderId = settings.WhatsAppPhoneId,
                From = settings.WhatsAppFromNumber,
                BaseUrl = Url(settings.WhatsAppBaseUrl, "whatsApp baseUrl"),
            },
            Channel.Sms => new ProviderAccount
            {
                CompanyId = settings.CompanyId,
                Channel = channel,
                Provider = settings.SmsProvider is { } s ? WireName<SmsProvider>.Of(s) : "",
                ApiKey = secrets.UnprotectOrNull(settings.SmsApiKeyEncrypted, settings.Slot(nameof(CompanySettings.SmsApiKeyEncrypted))),
                AccountSid = settings.SmsAccountSid,
                From = settings.SmsFromNumber,
                BaseUrl = Url(settings.SmsBaseUrl, "sms baseUrl"),
                DltEntityId = settings.SmsDltEntityId,
                DltTemplateId = settings.SmsDltTemplateId,
            },
            _ => throw new ArgumentOutOfRangeException(nameof(channel), channel, "no provider account for this channel"),
        };
    }

    private static Uri? Url(string? value, string setting) =>
        string.IsNullOrWhiteSpace(value) ? null
        : Uri.TryCreate(value.TrimEnd('/') + "/", UriKind.Absolute, out var url) && url.Scheme is "https" or "http" ? url
        : throw new ProviderSettingsException($"the company's {setting} '{UrlText.WithoutUserInfo(value)}' is not an absolute http(s) URL: correct it in settings");

    private static void Email(string? value, string setting)
    {
        if (value is not null && !ContactAddresses.TryNormaliseEmail(value, out _))
        {
            throw new ProviderSettingsException($"the company's {setting} '{value}' is not an email address: correct it in settings");
        }
    }
}

/// <summary>A company's provider setting that cannot be used as stored (see <see cref="ProviderAccount.For"/>).</summary>
public sealed class ProviderSettingsException(string message) : Exception(message);
