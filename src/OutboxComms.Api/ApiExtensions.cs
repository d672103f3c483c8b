using System.Text.Json.Serialization;
using OutboxComms.Api.Health;
using OutboxComms.Api.Webhooks;
using OutboxComms.Core.Data;
using OutboxComms.Core.Security;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Api;

public static class ApiExtensions
{
    /// <summary>All of the API host's wiring, in one place.</summary>
    public static IHostApplicationBuilder AddApiServices(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddOutboxDatabase();
        builder.Services.AddSecretProtector(builder.Configuration);
        builder.AddDeliveryWebhooks();
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
        app.MapOpenApi();
        app.MapHealthEndpoints();
        app.MapWebhooks();
        return app;
    }
}
