using System.Text.Json.Serialization;
using OutboxComms.Api.Analytics;
using OutboxComms.Api.Health;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Companies;
using OutboxComms.Api.Customers;
using OutboxComms.Api.Messages;
using OutboxComms.Api.Preferences;
using OutboxComms.Api.Reminders;
using OutboxComms.Api.Schedules;
using OutboxComms.Api.Settings;
using OutboxComms.Api.Unsubscribe;
using OutboxComms.Api.Templates;
using OutboxComms.Api.Webhooks;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Webhooks;
using OutboxComms.Core.Workflows;
using Prometheus;

namespace OutboxComms.Api;

public static class ApiExtensions
{
    /// <summary>All of the API host's wiring, in one place.</summary>
    public static IHostApplicationBuilder AddApiServices(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        // ASP.NET Core's per-request log lines carry the full URL, and a Gupshup callback URL carries
        // the company's webhook token: never below Warning, whatever the configuration says.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);
        // The API wakes the workers after its commits (OutboxNotifier), not through the insert trigger,
        // and keeps no session state (transaction-scoped settings and locks only).
        builder.AddOutboxDatabase(deferInsertNotifications: true, statelessSessions: true);
        builder.AddProviders();
        builder.AddDeliveryWebhooks();
        builder.AddApiAuth();
        builder.AddComplianceCalendar();
        builder.Services.AddSingleton<OutboxComms.Core.Preferences.UnsubscribeTokens>();
        // Template previews render in the same sandbox as the worker, with its time limit when
        // the API is given the workers' Dispatch:RenderTimeout (else the worker's default).
        builder.Services.AddSingleton(new TemplateRenderer(
            builder.Configuration.GetValue<TimeSpan?>("Dispatch:RenderTimeout") is { } renderTimeout && renderTimeout > TimeSpan.Zero ? renderTimeout : null));
        builder.Services.AddProblemDetails();
        builder.Services.AddExceptionHandler<OutboxComms.Api.Common.BadRequestExceptionHandler>();
        builder.Services.AddExceptionHandler<OutboxComms.Api.Common.StorageRefusedExceptionHandler>();
        builder.Services.AddExceptionHandler<OutboxComms.Api.Common.ConcurrentWriteExceptionHandler>();
        // Binding errors are thrown in every environment so the handler above can name the field
        // (and answer "Company required" when the admin key names no company).
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        builder.AddMessages();
        builder.Services.AddOpenApi(OutboxComms.Api.Common.OpenApiDocumentation.Configure);
        builder.Services.ConfigureHttpJsonOptions(options =>
        {
            // Names only: a number would pick an enum member by its position (2 was RESEND) and an
            // undefined one (99) reached the code as a value no switch knows.
            options.SerializerOptions.Converters.Add(new JsonStringEnumConverter(System.Text.Json.JsonNamingPolicy.SnakeCaseUpper, allowIntegerValues: false));
            options.SerializerOptions.Converters.Add(new OutboxComms.Api.Common.InstantJsonConverter());
            // Every request: a field the type does not have is a 400 naming it, not dropped
            // (EchoedFieldsAttribute: the GET answer's read-only fields a PUT may send back).
            options.SerializerOptions.UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow;
            options.SerializerOptions.TypeInfoResolver = System.Text.Json.Serialization.Metadata.JsonTypeInfoResolver.WithAddedModifier(options.SerializerOptions.TypeInfoResolver ?? new System.Text.Json.Serialization.Metadata.DefaultJsonTypeInfoResolver(),
                OutboxComms.Api.Common.EchoedFieldsAttribute.Accept);
        });
        return builder;
    }

    public static WebApplication MapApi(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.Use(OutboxComms.Api.Common.BodySizeLimit.EnforceAsync);
        app.UseAuthentication();
        // Before authorization, which answers 401 itself: callers without a valid key are limited too (per address).
        app.UseRateLimiter();
        app.UseAuthorization();
        // After authorization: a caller without a valid key learns nothing of an endpoint's parameters.
        app.Use(OutboxComms.Api.Common.UnknownQueryParameters.EnforceAsync);
        app.MapOpenApi();
        app.MapHealthEndpoints();
        // As the worker does (see its MetricsEndpoint): a series not updated for 5 minutes would be dropped and restart at 0; a day is the most allowed.
        // Without .NET's networking meters, labelled by tenants' hosts (OutboxMetrics.IsExported).
        Prometheus.Metrics.ConfigureMeterAdapter(options =>
        {
            options.MetricsExpireAfter = TimeSpan.FromDays(1);
            options.InstrumentFilterPredicate = instrument => OutboxComms.Core.Observability.OutboxMetrics.IsExported(instrument.Meter.Name);
        });
        app.MapMetrics().RequireAuthorization(AuthExtensions.MetricsPolicy);
        app.MapWebhooks();
        app.MapCompanies();
        app.MapSettings();
        app.MapUnsubscribe();
        app.MapCustomers();
        app.MapPreferences();
        app.MapTemplates();
        app.MapMessages();
        app.MapAnalytics();
        app.MapReminders();
        app.MapComplianceCalendar();
        app.MapSchedules();
        return app;
    }
}
