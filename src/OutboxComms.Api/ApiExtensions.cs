using System.Text.Json.Serialization;
using OutboxComms.Api.Analytics;
using OutboxComms.Api.Health;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Companies;
using OutboxComms.Api.Messages;
using OutboxComms.Api.Settings;
using OutboxComms.Api.Webhooks;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Webhooks;

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
        builder.AddMessages();
        builder.Services.AddProblemDetails();
        // A parameter that fails to bind is answered 400 in every environment (Development would
        // throw instead), so endpoint filters such as RequireTenant still give their own answer.
        builder.Services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = false);
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
        app.MapWebhooks();
        app.MapCompanies();
        app.MapSettings();
        app.MapMessages();
        app.MapAnalytics();
        return app;
    }
}
