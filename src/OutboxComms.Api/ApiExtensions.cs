using System.Text.Json.Serialization;
using OutboxComms.Api.Health;
using OutboxComms.Core.Data;

namespace OutboxComms.Api;

public static class ApiExtensions
{
    /// <summary>All of the API host's wiring, in one place.</summary>
    public static IHostApplicationBuilder AddApiServices(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddOutboxDatabase();
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
        return app;
    }
}
