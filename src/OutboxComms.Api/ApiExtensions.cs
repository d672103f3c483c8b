using System.Text.Json.Serialization;
using OutboxComms.Api.Health;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Companies;
using OutboxComms.Api.Reminders;
using OutboxComms.Api.Schedules;
using OutboxComms.Api.Settings;
using OutboxComms.Api.Unsubscribe;
using OutboxComms.Api.Webhooks;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Data;
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
        builder.AddOutboxDatabase();
        builder.AddProviders();
        builder.AddDeliveryWebhooks();
        builder.AddApiAuth();
        builder.AddComplianceCalendar();
        builder.Services.AddSingleton<OutboxComms.Core.Preferences.UnsubscribeTokens>();
        builder.Services.AddProblemDetails();
        builder.Services.AddOpenApi();
        builder.Services.ConfigureHttpJsonOptions(options =>
            options.SerializerOptions.Converters.Add(new JsonStringEnumConverter(System.Text.Json.JsonNamingPolicy.SnakeCaseUpper)));
        return builder;
    }

    public static WebApplication MapApi(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        app.MapOpenApi();
        app.MapHealthEndpoints();
        app.MapMetrics().RequireAuthorization(AuthExtensions.AdminPolicy);
        app.MapWebhooks();
        app.MapCompanies();
        app.MapSettings();
        app.MapUnsubscribe();
        app.MapReminders();
        app.MapComplianceCalendar();
        app.MapSchedules();
        return app;
    }
}
