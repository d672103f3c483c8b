using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace OutboxComms.Api.Health;

/// <summary>A small JSON body an ops person can read: overall status and each check's description.</summary>
internal static class HealthResponse
{
    public static Task WriteAsync(HttpContext context, HealthReport report) =>
        context.Response.WriteAsJsonAsync(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        });
}
