using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OutboxComms.Core.Policies;

namespace OutboxComms.Core.Webhooks;

/// <summary>Delivery webhook settings (<c>Webhooks</c> section).</summary>
public sealed class WebhookOptions
{
    public const string Section = "Webhooks";

    /// <summary>
    /// The public URL providers call (e.g. https://comms.practice.example) when a proxy sits in
    /// front of us; Twilio signs the URL it called, so it must be reconstructed exactly.
    /// </summary>
    [Url]
    public string? PublicBaseUrl { get; set; }

    /// <summary>How long raw webhook events are kept for audit.</summary>
    [Range(1, 3650)]
    public int RetentionDays { get; set; } = 90;

    /// <summary>
    /// Hours an event that matched none of our messages is kept (24 by default; at least 2, so the
    /// workers' sweep, which looks an hour back, can still apply one whose message was recorded
    /// late). SendGrid, Mailgun and SES report an account's every mail: the practice's other
    /// systems' too, with their recipients' addresses, which are not ours to keep for long.
    /// </summary>
    [Range(2, 87_600)]
    public int UnmatchedRetentionHours { get; set; } = 24;

    /// <summary>
    /// The origins (scheme://host[:port]) an SNS message's signing certificate and subscription URL
    /// may be at, as a regular expression: Amazon SNS's regional hosts over HTTPS. Only a test server
    /// needs another value.
    /// </summary>
    [Required]
    public string SnsOriginPattern { get; set; } = DefaultSnsOriginPattern;

    /// <summary>
    /// The app secret of the Meta app practices are onboarded through (a Tech Provider's, ours):
    /// the Cloud API webhook of a company without a <c>webhookSecret</c> of its own is verified with
    /// it. Kept by the operator: a secret typed into several companies' settings is known to each of
    /// them, and any of them could sign bodies about another's business number.
    /// </summary>
    public string? WhatsAppAppSecret { get; set; }

    public const string DefaultSnsOriginPattern = @"^https://sns\.[a-z]{2}(-gov)?-[a-z]+-[0-9]\.amazonaws\.com(\.cn)?$";
}

public static class WebhookExtensions
{
    public static IHostApplicationBuilder AddDeliveryWebhooks(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.Section)
            .PostConfigure(options => options.PublicBaseUrl ??= builder.Configuration["PublicBaseUrl"])
            .ValidateDataAnnotations()
            .Validate(options => IsRegex(options.SnsOriginPattern), $"{WebhookOptions.Section}:{nameof(WebhookOptions.SnsOriginPattern)} is not a valid regular expression.")
            .ValidateOnStart();
        builder.Services.AddSingleton<IDeliveryWebhook, TwilioWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, WhatsAppWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, SendGridWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, MailgunWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, ResendWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, GupshupWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, MessageBirdWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, MessageBirdSmsWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, AwsSesWebhook>();
        builder.Services.AddHttpClient(AwsSesWebhook.ClientName, client =>
            {
                client.DefaultRequestHeaders.UserAgent.ParseAdd("OutboxComms/1.0");
                client.Timeout = TimeSpan.FromSeconds(15);
            })
            .RemoveAllLoggers()
            // Only the address that was checked is fetched: a redirect could lead anywhere.
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false });
        builder.Services.AddOptions<RetryBackoffOptions>().BindConfiguration(RetryBackoffOptions.Section);   // a reported temporary failure waits the dispatcher's backoff
        builder.Services.AddSingleton<DeliveryEventRecorder>();
        builder.Services.AddSingleton<WebhookNonces>();
        return builder;
    }

    private static bool IsRegex(string pattern)
    {
        try
        {
            _ = new System.Text.RegularExpressions.Regex(pattern, System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromMilliseconds(100));
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
