using System.Text.Json.Serialization;
using OutboxComms.Core.Security;

namespace OutboxComms.Core.Companies;

public enum EmailProvider
{
    Smtp,
    [JsonStringEnumMemberName("SENDGRID")]
    SendGrid,
    Resend,
    Mailgun,
    AwsSes,
}

public enum WhatsAppProvider
{
    [JsonStringEnumMemberName("WHATSAPP_BUSINESS_API")]
    WhatsAppBusinessApi,
    Twilio,
    [JsonStringEnumMemberName("MESSAGEBIRD")]
    MessageBird,
    Gupshup,
}

public enum SmsProvider
{
    Twilio,
    [JsonStringEnumMemberName("MESSAGEBIRD")]
    MessageBird,
    Gupshup,
}

public enum SmtpSecurity
{
    [JsonStringEnumMemberName("STARTTLS")]
    StartTls,
    SslOnConnect,
    None,
    Auto,
}

/// <summary>
/// A company's provider configuration and rate card. Properties ending in <c>Encrypted</c> hold
/// AES-256-GCM envelopes, never plaintext.
/// </summary>
public class CompanySettings
{
    public Guid CompanyId { get; set; }

    /// <summary>Where the secret property named <paramref name="property"/> of these settings is stored, as its encryption binds it.</summary>
    public SecretSlot Slot(string property) => new(CompanyId, SecretColumns[property]);

    /// <summary>
    /// Each secret property (key: its name) and the label its values are bound to: its column. Fixed
    /// text, so renaming a property cannot orphan the values stored under the old name (a test pins
    /// the list to the properties and to the columns the model maps them to).
    /// </summary>
    public static IReadOnlyDictionary<string, string> SecretColumns { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [nameof(SmtpPasswordEncrypted)] = "smtp_password_encrypted",
        [nameof(EmailApiKeyEncrypted)] = "email_api_key_encrypted",
        [nameof(EmailWebhookSecretEncrypted)] = "email_webhook_secret_encrypted",
        [nameof(WhatsAppApiKeyEncrypted)] = "whatsapp_api_key_encrypted",
        [nameof(WhatsAppWebhookSecretEncrypted)] = "whatsapp_webhook_secret_encrypted",
        [nameof(WhatsAppVerifyTokenEncrypted)] = "whatsapp_verify_token_encrypted",
        [nameof(SmsApiKeyEncrypted)] = "sms_api_key_encrypted",
        [nameof(SmsWebhookSecretEncrypted)] = "sms_webhook_secret_encrypted",
    };

    public EmailProvider? EmailProvider { get; set; }
    public bool EmailEnabled { get; set; }
    public string? SmtpHost { get; set; }
    public int? SmtpPort { get; set; }
    public SmtpSecurity SmtpSecurity { get; set; } = SmtpSecurity.StartTls;
    public string? SmtpUsername { get; set; }
    public byte[]? SmtpPasswordEncrypted { get; set; }
    public byte[]? EmailApiKeyEncrypted { get; set; }
    public string? EmailApiUser { get; set; }
    public string? EmailRegion { get; set; }
    public string? EmailBaseUrl { get; set; }
    public byte[]? EmailWebhookSecretEncrypted { get; set; }
    public string? FromEmail { get; set; }
    public string? FromName { get; set; }
    public string? ReplyToEmail { get; set; }

    public WhatsAppProvider? WhatsAppProvider { get; set; }
    public bool WhatsAppEnabled { get; set; }
    public byte[]? WhatsAppApiKeyEncrypted { get; set; }
    public string? WhatsAppPhoneId { get; set; }
    public string? WhatsAppAccountSid { get; set; }
    public string? WhatsAppFromNumber { get; set; }
    public string? WhatsAppBaseUrl { get; set; }
    public byte[]? WhatsAppWebhookSecretEncrypted { get; set; }
    public byte[]? WhatsAppVerifyTokenEncrypted { get; set; }

    public SmsProvider? SmsProvider { get; set; }
    public bool SmsEnabled { get; set; }
    public byte[]? SmsApiKeyEncrypted { get; set; }
    public string? SmsAccountSid { get; set; }
    public string? SmsFromNumber { get; set; }
    public string? SmsBaseUrl { get; set; }
    public string? SmsDltEntityId { get; set; }
    public string? SmsDltTemplateId { get; set; }
    /// <summary>MessageBird's signing key, for its SMS delivery reports.</summary>
    public byte[]? SmsWebhookSecretEncrypted { get; set; }

    public string? DefaultEmailTemplateKey { get; set; }
    public string? DefaultWhatsAppTemplateKey { get; set; }
    public string? DefaultSmsTemplateKey { get; set; }

    public decimal? EmailCost { get; set; }
    public decimal? WhatsAppCost { get; set; }
    public decimal? SmsCost { get; set; }
    public string CostCurrency { get; set; } = "INR";

    /// <summary>
    /// Days after a message settled when its personal content is cleared (migration 0035; the
    /// worker's <c>MessageContentRetention</c>); null keeps it for ever.
    /// </summary>
    public int? ContentRetentionDays { get; set; }

    public DateTimeOffset UpdatedAt { get; set; }
}
