using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

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
}

public static class WebhookExtensions
{
    public static IHostApplicationBuilder AddDeliveryWebhooks(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.Section)
            .PostConfigure(options => options.PublicBaseUrl ??= builder.Configuration["PublicBaseUrl"])
            .ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<IDeliveryWebhook, TwilioWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, WhatsAppWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, SendGridWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, MailgunWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, ResendWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, GupshupWebhook>();
        builder.Services.AddSingleton<IDeliveryWebhook, MessageBirdWebhook>();
        builder.Services.AddSingleton<DeliveryEventRecorder>();
        builder.Services.AddSingleton<WebhookNonces>();
        return builder;
    }
}
