using System.Security.Claims;

namespace OutboxComms.Api.Auth;

/// <summary>
/// Whose data a request may touch. A company key is its company; the admin key names the company it
/// acts on in <c>X-Company-Id</c> (ops endpoints only). Every query filters by <see cref="CompanyId"/>,
/// so another company's id simply is not found (404).
/// </summary>
public sealed record Tenant(Guid CompanyId, bool IsAdmin, string Actor)
{
    public const string CompanyHeader = "X-Company-Id";

    /// <summary>Minimal-API binding: null (→ 400 from the filter) when the admin key names no company.</summary>
    public static ValueTask<Tenant?> BindAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var user = context.User;
        if (user.FindFirstValue(ApiKeyAuthenticationHandler.CompanyClaim) is { } company)
        {
            return ValueTask.FromResult<Tenant?>(new Tenant(Guid.Parse(company), false, $"api-key:{user.Identity!.Name}"));
        }
        if (user.IsInRole(ApiKeyAuthenticationHandler.AdminRole)
            && Guid.TryParse(context.Request.Headers[CompanyHeader].ToString(), out var acting))
        {
            return ValueTask.FromResult<Tenant?>(new Tenant(acting, true, "admin"));
        }
        return ValueTask.FromResult<Tenant?>(null);
    }
}
