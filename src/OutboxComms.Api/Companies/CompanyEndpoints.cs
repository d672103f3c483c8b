using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Memory;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Policies;

namespace OutboxComms.Api.Companies;

/// <summary>Tenants and their API keys.</summary>
public static partial class CompanyEndpoints
{
    public sealed record CreateCompanyRequest(string? Name, string? TimeZone, string? DefaultLanguage);

    public sealed record CompanyResponse(Guid Id, string Name, string TimeZone, string DefaultLanguage, DateTimeOffset CreatedAt, DateTimeOffset? DeactivatedAt);

    /// <summary>The key itself appears in this answer only; we keep its hash.</summary>
    public sealed record CreatedKeyResponse(Guid Id, string Name, string Key, string Prefix, DateTimeOffset CreatedAt);

    public sealed record CreatedCompanyResponse(CompanyResponse Company, CreatedKeyResponse ApiKey);

    public sealed record CreateKeyRequest(string? Name);

    public sealed record KeyResponse(Guid Id, string Name, string Prefix, DateTimeOffset CreatedAt, DateTimeOffset? LastUsedAt, DateTimeOffset? RevokedAt);

    public static IEndpointRouteBuilder MapCompanies(this IEndpointRouteBuilder endpoints)
    {
        var admin = endpoints.MapGroup("/v1/companies").WithTags("Companies").RequireAuthorization(AuthExtensions.AdminPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit).WithMetadata(BodySizeLimit.Small);
        admin.MapPost("/", CreateCompany);
        admin.MapGet("/{id:guid}", GetCompany).WithSummary("The company, as its creation answered it (the Location of that answer).");
        admin.MapPost("/{id:guid}/api-keys", CreateKeyForCompany);
        admin.MapPost("/{id:guid}/deactivate", Deactivate)
            .WithSummary("Offboards the company: revokes its keys, switches its channels and schedules off, cancels its pending messages and reminder steps. History stays until purge-company.");
        admin.MapPost("/{id:guid}/reactivate", Reactivate)
            .WithSummary("Undoes the deactivation's block on new keys; keys, channels, schedules and cancelled messages stay as the deactivation left them.");

        var keys = endpoints.MapGroup("/v1/api-keys").WithTags("API keys").RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit).WithMetadata(BodySizeLimit.Small);
        keys.MapGet("/", ListKeys);
        keys.MapGet("/{id:guid}", GetKey).WithSummary("One of the company's keys (never the key itself: only its prefix).");
        keys.MapPost("/", CreateKey);
        keys.MapDelete("/{id:guid}", RevokeKey);
        return endpoints;
    }

    internal static async Task<Results<Created<CreatedCompanyResponse>, ValidationProblem>> CreateCompany(CreateCompanyRequest request, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation()
            .Require("name", request.Name)
            .When(request.Name is { Length: > 200 }, "name", "name is at most 200 characters.")
            .Storable(("name", request.Name))
            .When(request.TimeZone is not null && !FieldRules.IsIanaZone(request.TimeZone), "timeZone", $"'{request.TimeZone}' is not an IANA time zone (e.g. Asia/Kolkata).")
            .When(request.DefaultLanguage is not null && !FieldRules.IsLanguageCode(request.DefaultLanguage), "defaultLanguage", $"defaultLanguage is {FieldRules.LanguageHint}.");
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var company = new Company { Id = Guid.NewGuid(), Name = request.Name!.Trim(), TimeZone = request.TimeZone ?? "Asia/Kolkata", DefaultLanguage = request.DefaultLanguage ?? "en" };
        db.Companies.Add(company);
        db.CompanySettings.Add(new CompanySettings { CompanyId = company.Id });
        var (key, created) = NewKey(company.Id, "default", time.GetUtcNow());
        db.ApiKeys.Add(key);
        await db.SaveChangesAsync(cancellationToken);

        var response = new CreatedCompanyResponse(ToResponse(company), created with { Id = key.Id, CreatedAt = key.CreatedAt });
        return TypedResults.Created($"/v1/companies/{company.Id}", response);
    }

    internal static async Task<Results<Ok<CompanyResponse>, ProblemHttpResult>> GetCompany(Guid id, OutboxDbContext db, CancellationToken cancellationToken) =>
        await db.Companies.AsNoTracking().SingleOrDefaultAsync(c => c.Id == id, cancellationToken) is { } company
            ? TypedResults.Ok(ToResponse(company))
            : Problems.NotFound($"Company {id}");

    internal static async Task<Results<Ok<KeyResponse>, ProblemHttpResult>> GetKey(Guid id, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken) =>
        await db.ApiKeys.AsNoTracking().Where(k => k.Id == id && k.CompanyId == tenant.CompanyId)
            .Select(k => new KeyResponse(k.Id, k.Name, k.KeyPrefix, k.CreatedAt, k.LastUsedAt, k.RevokedAt)).SingleOrDefaultAsync(cancellationToken) is { } key
            ? TypedResults.Ok(key)
            : Problems.NotFound($"API key {id}");

    internal static async Task<Ok<List<KeyResponse>>> ListKeys(Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken) =>
        TypedResults.Ok(await db.ApiKeys.AsNoTracking().Where(k => k.CompanyId == tenant.CompanyId).OrderBy(k => k.CreatedAt)
            .Select(k => new KeyResponse(k.Id, k.Name, k.KeyPrefix, k.CreatedAt, k.LastUsedAt, k.RevokedAt))
            .ToListAsync(cancellationToken));

    internal static async Task<Results<Created<CreatedKeyResponse>, ValidationProblem, ProblemHttpResult>> CreateKey(CreateKeyRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken) =>
        KeyRequestProblem(request) is { } problem ? problem : await AddKeyToActiveAsync(tenant.CompanyId, request.Name!.Trim(), db, time, cancellationToken);

    /// <summary>The admin gives a company a new key: the way back in for a practice that lost all of its own.</summary>
    internal static async Task<Results<Created<CreatedKeyResponse>, ValidationProblem, ProblemHttpResult>> CreateKeyForCompany(
        Guid id, CreateKeyRequest request, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        if (KeyRequestProblem(request) is { } problem)
        {
            return problem;
        }
        return await AddKeyToActiveAsync(id, request.Name!.Trim(), db, time, cancellationToken);
    }

    /// <summary>
    /// A new key for a company that is not deactivated. The company is locked: a deactivation at
    /// the same moment either comes first (and this is refused) or revokes this key too. Also on the
    /// company's own path: a key still cached by an API replica in a deactivation's first seconds
    /// must not make itself a successor.
    /// </summary>
    private static async Task<Results<Created<CreatedKeyResponse>, ValidationProblem, ProblemHttpResult>> AddKeyToActiveAsync(
        Guid id, string name, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var company = await db.Companies.FromSql($"SELECT * FROM companies WHERE id = {id} FOR NO KEY UPDATE").SingleOrDefaultAsync(cancellationToken);
        if (company is null)
        {
            return Problems.NotFound($"Company {id}");
        }
        if (company.DeactivatedAt is { } deactivated)
        {
            return Problems.Conflict($"Company {id} was deactivated at {deactivated.UtcDateTime:u}; the admin reactivates it first (POST /v1/companies/{id}/reactivate).");
        }
        var created = await AddKeyAsync(id, name, db, time, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return created;
    }

    private static ValidationProblem? KeyRequestProblem(CreateKeyRequest request)
    {
        var validation = new Validation().Require("name", request.Name).When(request.Name is { Length: > 100 }, "name", "name is at most 100 characters.").Storable(("name", request.Name));
        return validation.IsValid ? null : validation.Problem();
    }

    private static async Task<Created<CreatedKeyResponse>> AddKeyAsync(Guid companyId, string name, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var (key, created) = NewKey(companyId, name, time.GetUtcNow());
        db.ApiKeys.Add(key);
        await db.SaveChangesAsync(cancellationToken);
        return TypedResults.Created($"/v1/api-keys/{key.Id}", created with { Id = key.Id, CreatedAt = key.CreatedAt });
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> RevokeKey(Guid id, Tenant tenant, OutboxDbContext db, IMemoryCache cache, TimeProvider time, CancellationToken cancellationToken)
    {
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // Revocations of one company's keys take turns, so two at once cannot leave it with none.
        await db.Database.ExecuteSqlAsync($"SELECT 1 FROM companies WHERE id = {tenant.CompanyId} FOR NO KEY UPDATE", cancellationToken);
        var key = await db.ApiKeys.SingleOrDefaultAsync(k => k.Id == id && k.CompanyId == tenant.CompanyId, cancellationToken);
        if (key is null)
        {
            return Problems.NotFound($"API key {id}");
        }
        if (key.RevokedAt is null && !await db.ApiKeys.AnyAsync(k => k.CompanyId == tenant.CompanyId && k.Id != id && k.RevokedAt == null, cancellationToken))
        {
            // Only the admin could give the company a key again.
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Last active key",
                detail: $"API key {id} is the company's only active key: create its replacement (POST /v1/api-keys) first, then revoke this one.");
        }
        key.RevokedAt ??= time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        ApiKeyAuthenticationHandler.Forget(cache, key.KeyHash);
        return TypedResults.NoContent();
    }

    private static (ApiKey Entity, CreatedKeyResponse Created) NewKey(Guid companyId, string name, DateTimeOffset now)
    {
        var (key, prefix, hash) = ApiKeys.Create();
        var entity = new ApiKey { Id = Guid.NewGuid(), CompanyId = companyId, Name = name, KeyPrefix = prefix, KeyHash = hash, CreatedAt = now };
        return (entity, new CreatedKeyResponse(entity.Id, name, key, prefix, entity.CreatedAt));
    }

    private static CompanyResponse ToResponse(Company company) => new(company.Id, company.Name, company.TimeZone, company.DefaultLanguage, company.CreatedAt, company.DeactivatedAt);
}
