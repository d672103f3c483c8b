using OutboxComms.Core.Data;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Webhooks;
using OutboxComms.Worker.Dispatch;
using OutboxComms.Worker.Maintenance;
using OutboxComms.Worker.Scheduling;

namespace OutboxComms.Worker;

public static class WorkerExtensions
{
    public static IHostApplicationBuilder AddWorkerServices(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddOutboxDatabase(customPlans: true);
        // First: hosted services start in registration order, and the exporter only sees what is
        // measured after it starts listening, so it must listen before the first batch is dispatched.
        builder.Services.AddHostedService<MetricsEndpoint>();
        builder.AddDispatch();
        builder.AddScheduling();
        builder.Services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<KeyRetentionOptions>().BindConfiguration(KeyRetentionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddHostedService<WebhookEventRetention>();
        builder.Services.AddHostedService<WebhookEventBackfill>();
        builder.Services.AddHostedService<AttachmentRetention>();
        builder.Services.AddHostedService<MessageContentRetention>();
        builder.Services.AddHostedService<WaitingEventSweep>();
        builder.Services.AddSingleton<OutboxMetrics>();
        builder.Services.AddSingleton<WorkerHeartbeat>();
        builder.Services.AddHostedService<QueueDepthSampler>();
        return builder;
    }
}
