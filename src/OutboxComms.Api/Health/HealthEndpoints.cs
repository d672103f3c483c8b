using Microsoft.AspNetCore.Diagnostics.HealthChecks;

namespace OutboxComms.Api.Health;

public static class HealthEndpoints
{
    /// <summary>
    /// <c>/health/live</c>: the process answers (no dependencies checked, so an orchestrator does
    /// not restart us for a database outage). <c>/health/ready</c>: PostgreSQL reachable and migrated.
    /// </summary>
    public static IEndpointRouteBuilder MapHealthEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false });
        endpoints.MapHealthChecks("/health/ready", new HealthCheckOptions
        {
            Predicate = check => check.Tags.Contains("ready"),
            ResponseWriter = HealthResponse.WriteAsync,
        });
        return endpoints;
    }
}
