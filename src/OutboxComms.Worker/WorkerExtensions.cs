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
        builder.AddOutboxDatabase();
        builder.AddDispatch();
        builder.AddScheduling();
        builder.Services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddHostedService<WebhookEventRetention>();
        builder.Services.AddSingleton<OutboxMetrics>();
        builder.Services.AddHostedService<QueueDepthSampler>();
        builder.Services.AddHostedService<MetricsEndpoint>();
        return builder;
    }
}
