using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Data;

namespace OutboxComms.Api.Auth;

public sealed class AdminOptions
{
    public const string EnvironmentVariable = "OUTBOXCOMMS_ADMIN_KEY";

    /// <summary>The shortest admin key the API starts with.</summary>
    public const int MinimumLength = 32;

    public string? Key { get; set; }
}

/// <summary>
/// A token that may read <c>/metrics</c> and nothing else, for the scraper: Prometheus need not hold
/// the admin key, which acts on every company.
/// </summary>
public sealed class MetricsTokenOptions
{
    public const string EnvironmentVariable = "OUTBOXCOMMS_METRICS_TOKEN";

    public string? Token { get; set; }
}

/// <summary>
/// <c>Authorization: Bearer &lt;key&gt;</c>: the admin key (ops: create companies, act on any company,
/// never read secrets) or a company's API key (looked up by hash; cached briefly so a hot client
/// costs no query per request, and a revoked key stops working within that time).
/// </summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder,
    IOptions<AdminOptions> admin, IOptions<MetricsTokenOptions> metrics, IServiceScopeFactory scopes, IMemoryCache cache, TimeProvider time)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string CompanyClaim = "company_id";
    public const string KeyIdClaim = "key_id";
    public const string AdminRole = "admin";
    public const string MetricsRole = "metrics";
    private static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan LastUsedPrecision = TimeSpan.FromMinutes(1);

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return AuthenticateResult.NoResult();
        }
        var presented = header["Bearer ".Length..].Trim();
        if (admin.Value.Key is { Length: > 0 } adminKey
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(adminKey), Encoding.UTF8.GetBytes(presented)))
        {
            return Success([new Claim(ClaimTypes.Name, "admin"), new Claim(ClaimTypes.Role, AdminRole)]);
        }
        if (metrics.Value.Token is { Length: > 0 } metricsToken
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(metricsToken), Encoding.UTF8.GetBytes(presented)))
        {
            // No company claim and not the admin role: every other endpoint answers 403.
            return Success([new Claim(ClaimTypes.Name, "metrics"), new Claim(ClaimTypes.Role, MetricsRole)]);
        }

        if (!ApiKeys.IsWellFormed(presented))
        {
            // Not one of ours: no query, and nothing cached (a flood of random tokens costs neither).
            return AuthenticateResult.Fail("invalid or revoked API key");
        }
        var hash = ApiKeys.Hash(presented);
        var cacheKey = "apikey:" + Convert.ToHexString(hash);
        if (!cache.TryGetValue(cacheKey, out (Guid Id, Guid CompanyId, string Name)? key))
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<OutboxDbContext>();
            var row = await db.ApiKeys.AsNoTracking()
                // A deactivated company's keys open nothing, a key made in a deactivation's last moments included.
                .Where(k => k.KeyHash == hash && k.RevokedAt == null && db.Companies.Any(c => c.Id == k.CompanyId && c.DeactivatedAt == null))
                .Select(k => new { k.Id, k.CompanyId, k.Name })
                .FirstOrDefaultAsync(Context.RequestAborted);
            key = row is null ? null : (row.Id, row.CompanyId, row.Name);
            // Only keys that exist are cached: a flood of made-up (well-formed) tokens, each its own
            // entry, would otherwise fill the process's memory for 30 s at a time.
            if (row is not null)
            {
                cache.Set(cacheKey, key, CacheFor);
                // Once per cache period at most (per process), so lastUsedAt tells an operator
                // whether an old key is still in use before it is revoked; to within a minute.
                var now = time.GetUtcNow();
                var staleBefore = now - LastUsedPrecision;
                await db.ApiKeys.Where(k => k.Id == row.Id && (k.LastUsedAt == null || k.LastUsedAt < staleBefore))
                    .ExecuteUpdateAsync(set => set.SetProperty(k => k.LastUsedAt, now), Context.RequestAborted);
            }
        }
        return key is { } found
            ? Success([new Claim(ClaimTypes.Name, found.Name), new Claim(CompanyClaim, found.CompanyId.ToString()), new Claim(KeyIdClaim, found.Id.ToString())])
            : AuthenticateResult.Fail("invalid or revoked API key");
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await Results.Problem(statusCode: 401, title: "Unauthorized", detail: "Send 'Authorization: Bearer <API key>' with a valid, unrevoked key.").ExecuteAsync(Context);
    }

    protected override async Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        await Results.Problem(statusCode: 403, title: "Forbidden", detail: "This key may not do that.").ExecuteAsync(Context);
    }

    /// <summary>Forget a key at once (after revocation) rather than when its cache entry expires.</summary>
    public static void Forget(IMemoryCache cache, byte[] hash) => cache.Remove("apikey:" + Convert.ToHexString(hash));

    private AuthenticateResult Success(Claim[] claims) =>
        AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName)), SchemeName));
}
