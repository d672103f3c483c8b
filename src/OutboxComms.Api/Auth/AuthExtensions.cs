using Microsoft.AspNetCore.Authentication;
using System.Threading.RateLimiting;

namespace OutboxComms.Api.Auth;

public static class AuthExtensions
{
    public const string CompanyPolicy = "company";
    public const string CompanyOrAdminPolicy = "company-or-admin";
    public const string AdminPolicy = "admin";
    public const string MetricsPolicy = "metrics";
    public const string PerCompanyRateLimit = "per-company";

    public static IHostApplicationBuilder AddApiAuth(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddMemoryCache();
        var adminKey = builder.Configuration[AdminOptions.EnvironmentVariable] ?? builder.Configuration["Admin:Key"];
        if (adminKey is { Length: > 0 } && adminKey.Length < AdminOptions.MinimumLength)
        {
            // The admin key acts on every company, and a request with a guess is answered 401 or
            // 200: a short one is guessed. Refused at start rather than served.
            throw new InvalidOperationException(
                $"{AdminOptions.EnvironmentVariable} must be at least {AdminOptions.MinimumLength} characters (it has {adminKey.Length}): use a random one, e.g. `openssl rand -base64 33`; ops/run.sh generates one.");
        }
        builder.Services.AddOptions<AdminOptions>().Configure(o => o.Key = builder.Configuration[AdminOptions.EnvironmentVariable] ?? builder.Configuration["Admin:Key"]);
        var metricsToken = builder.Configuration[MetricsTokenOptions.EnvironmentVariable] ?? builder.Configuration["Metrics:Token"];
        if (metricsToken is { Length: > 0 } && (metricsToken.Length < AdminOptions.MinimumLength || metricsToken == adminKey))
        {
            throw new InvalidOperationException(
                $"{MetricsTokenOptions.EnvironmentVariable} must be at least {AdminOptions.MinimumLength} characters and not the admin key: e.g. `openssl rand -base64 33`.");
        }
        builder.Services.AddOptions<MetricsTokenOptions>().Configure(o => o.Token = metricsToken);
        builder.Services.AddAuthentication(ApiKeyAuthenticationHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(CompanyPolicy, p => p.RequireClaim(ApiKeyAuthenticationHandler.CompanyClaim))
            .AddPolicy(AdminPolicy, p => p.RequireRole(ApiKeyAuthenticationHandler.AdminRole))
            .AddPolicy(MetricsPolicy, p => p.RequireRole(ApiKeyAuthenticationHandler.AdminRole, ApiKeyAuthenticationHandler.MetricsRole))
            .AddPolicy(CompanyOrAdminPolicy, p => p.RequireAssertion(c =>
                c.User.HasClaim(x => x.Type == ApiKeyAuthenticationHandler.CompanyClaim) || c.User.IsInRole(ApiKeyAuthenticationHandler.AdminRole)));

        // Per company, all its keys together (a tenant cannot multiply its share by creating keys;
        // the admin key has its own, callers that present no valid key theirs by address): a token
        // bucket, so a burst is fine and a runaway client cannot starve the others.
        var permitsPerSecond = builder.Configuration.GetValue("Api:RateLimitPerSecond", 1000);
        if (permitsPerSecond < 1)
        {
            // Refused at start: the limiter would otherwise fail every request with a 500 when first used.
            throw new InvalidOperationException($"Api:RateLimitPerSecond must be at least 1 (it is {permitsPerSecond}); it cannot be switched off.");
        }
        builder.Services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            options.AddPolicy(PerCompanyRateLimit, context => RateLimitPartition.GetTokenBucketLimiter(
                context.User.FindFirst(ApiKeyAuthenticationHandler.CompanyClaim)?.Value ?? context.User.Identity?.Name ?? context.Connection.RemoteIpAddress?.ToString() ?? "anonymous",
                _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = permitsPerSecond * 2,
                    TokensPerPeriod = permitsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                }));
            options.OnRejected = async (context, token) =>
            {
                context.HttpContext.Response.Headers.RetryAfter = "1";
                await Results.Problem(statusCode: 429, title: "Too many requests", detail: "Over the rate limit (one for all of a company's keys); retry after a second.").ExecuteAsync(context.HttpContext);
            };
        });
        return builder;
    }
}
