using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Providers.Email;
using OutboxComms.Core.Providers.Http;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;
using Polly;

namespace OutboxComms.Core.Providers;

public static class ProviderExtensions
{
    /// <summary>
    /// Every provider client this build has, the shared HTTP client they use and the secret
    /// protector that decrypts their credentials. Retries are not done here: the outbox retries
    /// durably (recorded attempts, backoff, budget); the HTTP layer only bounds time and concurrency.
    /// </summary>
    public static IHostApplicationBuilder AddProviders(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddSecretProtector(builder.Configuration);
        // Provider connections reach public addresses only, unless Providers:AllowPrivateNetworks says otherwise.
        builder.Services.AddOptions<ProviderNetworkOptions>().BindConfiguration(ProviderNetworkOptions.Section);
        builder.Services.AddHttpClient(ProviderHttp.ClientName, client =>
            {
                client.DefaultRequestHeaders.UserAgent.ParseAdd("OutboxComms/1.0");
                // The pipeline's timeout below bounds each request up to its response headers, the
                // caller's token (the worker's SendTimeout) the rest; see ProviderHttp.CreateHandler.
                client.Timeout = Timeout.InfiniteTimeSpan;
            })
            // HttpClientFactory logs four lines per request at Information (each naming a tenant's
            // endpoint): thousands a second from a busy worker. Failures reach the logs as outcomes.
            .RemoveAllLoggers()
            .ConfigurePrimaryHttpMessageHandler(services => ProviderHttp.CreateHandler(ProviderHttp.ConnectTimeout, ProviderHttp.SetupTimeout,
                services.GetRequiredService<IOptions<ProviderNetworkOptions>>().Value.AllowPrivateNetworks))
            .AddResilienceHandler("provider-http", pipeline => pipeline
                .AddConcurrencyLimiter(ProviderHttp.MaxRequestsInFlight, ProviderHttp.MaxRequestsQueued)
                .AddTimeout(TimeSpan.FromSeconds(25)));
        // Attachment links are fetched by a client of their own: only public addresses (see
        // PublicAddresses), unless Attachments:AllowPrivateNetworks says otherwise.
        builder.Services.AddOptions<AttachmentOptions>().BindConfiguration(AttachmentOptions.Section)
            .Validate(o => o.FetchTimeout > TimeSpan.Zero, "Attachments:FetchTimeout must be positive.")
            .Validate(o => o.RetentionDays is >= 0 and <= 36_500, "Attachments:RetentionDays is between 0 (keep for ever) and 36,500.").ValidateOnStart();
        builder.Services.AddHttpClient(AttachmentLoader.ClientName, client => client.DefaultRequestHeaders.UserAgent.ParseAdd("OutboxComms/1.0"))
            .RemoveAllLoggers()
            .ConfigurePrimaryHttpMessageHandler(services =>
            {
                // Redirects are followed by the guard, so that behind a proxy each hop is checked too.
                var allowPrivateNetworks = services.GetRequiredService<IOptions<AttachmentOptions>>().Value.AllowPrivateNetworks;
                var proxy = HttpClient.DefaultProxy;
                var sockets = new SocketsHttpHandler
                {
                    Proxy = proxy,
                    ConnectCallback = PublicAddresses.ConnectCallback(allowPrivateNetworks, PublicAddresses.AttachmentRefusal, proxy),
                    AllowAutoRedirect = false,
                };
                // A link's host is a tenant's, DNS included: looked up on every fetch.
                return new PublicAddresses.Guard(sockets, proxy, allowPrivateNetworks, PublicAddresses.AttachmentRefusal, AttachmentLoader.MaxRedirects, TimeSpan.Zero);
            })
            .AddResilienceHandler("attachment-http", pipeline => pipeline.AddTimeout(TimeSpan.FromSeconds(25)));
        // The resilience handlers' telemetry logs each timeout or concurrency rejection at Error
        // (category "Polly"), without message or company: a hanging provider would log every send
        // twice. Outcomes are logged by the worker, and an outage once (see DispatchLog).
        builder.Logging.AddFilter("Polly", LogLevel.None);
        builder.Services.TryAddSingleton<ProviderHttp>();
        builder.Services.TryAddSingleton<AttachmentLoader>();
        builder.Services.TryAddSingleton<ProviderRegistry>();
        builder.Services.TryAddSingleton<TimeProvider>(OutboxComms.Core.Data.DatabaseClock.Instance);
        builder.Services.AddSingleton<IMessageProvider, SmtpEmailProvider>();
        builder.Services.AddSingleton<IMessageProvider, WhatsAppCloudProvider>();
        builder.Services.AddSingleton<IMessageProvider, TwilioProvider>();
        builder.Services.AddSingleton<IMessageProvider, MessageBirdProvider>();
        builder.Services.AddSingleton<IMessageProvider, GupshupProvider>();
        builder.Services.AddSingleton<IMessageProvider, SendGridEmailProvider>();
        builder.Services.AddSingleton<IMessageProvider, ResendEmailProvider>();
        builder.Services.AddSingleton<IMessageProvider, MailgunEmailProvider>();
        builder.Services.AddSingleton<IMessageProvider, AwsSesEmailProvider>();
        return builder;
    }
}
