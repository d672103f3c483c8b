using OutboxComms.Api.Common;

namespace OutboxComms.Api.Auth;

/// <summary>For company-or-admin groups: the admin key must name the company it acts on (X-Company-Id).</summary>
public static class TenantFilter
{
    public static TBuilder RequireTenant<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (context, next) =>
            await Tenant.BindAsync(context.HttpContext) is null ? Problems.CompanyRequired() : await next(context));
}
