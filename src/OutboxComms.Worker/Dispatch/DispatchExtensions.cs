using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Worker.Dispatch;

public static class DispatchExtensions
{
    /// <summary>The dispatch pipeline: options (validated at start), SQL store, policies, renderer, providers, loop.</summary>
    public static IHostApplicationBuilder AddDispatch(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<DispatchOptions>()
            .BindConfiguration(DispatchOptions.Section)
            .PostConfigure<IConfiguration>((options, configuration) =>
            {
                options.PublicBaseUrl ??= configuration["PublicBaseUrl"] is { Length: > 0 } url ? new Uri(url) : null;
                // Links are built relative to it ("unsubscribe/…", "webhooks/…"): without a final
                // slash, a path prefix (https://host/comms) would be dropped, as the API keeps it.
                if (options.PublicBaseUrl is { } publicBase && !publicBase.AbsolutePath.EndsWith('/'))
                {
                    options.PublicBaseUrl = new Uri(publicBase.GetLeftPart(UriPartial.Path) + "/");
                }
            })
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.AddProviders();
        builder.Services.AddSingleton<UnsubscribeTokens>();
        builder.Services.AddSingleton<OutboxStore>();
        builder.Services.AddSingleton(sp => new TemplateRenderer(sp.GetRequiredService<IOptions<DispatchOptions>>().Value.RenderTimeout));
        builder.Services.AddSingleton<ProviderCircuitBreakers>();
        builder.Services.AddSingleton<MessageDispatcher>();
        builder.Services.AddSingleton<AttachmentMemory>();
        builder.Services.AddSingleton<ReminderGate>();
        builder.Services.AddOptions<RetryBackoffOptions>().BindConfiguration(RetryBackoffOptions.Section);   // the recorder requeues reported temporary failures with DispatchOptions' backoff
        builder.Services.TryAddSingleton<DeliveryEventRecorder>();   // applies delivery events that arrived before their provider ids were recorded
        builder.Services.AddSingleton<BatchProcessor>();
        builder.Services.AddSingleton<DispatchSignal>();
        // Asked before every claim, and measuring on its own schedule as a hosted service.
        builder.Services.AddSingleton(_ => WorkerHost.OfThisMachine());   // whose clock it is: one vote per host
        builder.Services.AddSingleton<ClockSkewGuard>();
        builder.Services.AddHostedService(services => services.GetRequiredService<ClockSkewGuard>());
        builder.Services.AddHostedService<OutboxListener>();
        builder.Services.AddHostedService<DispatchLoop>();
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<DispatchOptions>>((host, dispatch) =>
            host.ShutdownTimeout = dispatch.Value.ShutdownGrace + TimeSpan.FromSeconds(15));
        return builder;
    }
}
