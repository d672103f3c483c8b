using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Policies;

namespace OutboxComms.Api.Customers;

/// <summary>
/// A practice's clients. A customer is addressed by our id or by the business application's own
/// <c>externalId</c>, so an app never has to store our ids. Deleting is soft: the row stays so its
/// message history (and the worker's "customer was deleted" suppression) keeps pointing at it.
/// </summary>
public static partial class CustomerEndpoints
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 500;

    private const string ExternalIdIndex = "ux_customers_company_external_id";
    private const string LikeEscape = "\\";

    /// <summary>
    /// A whole customer: PUT replaces every field, so an omitted optional field is cleared (language
    /// and time zone fall back to their defaults).
    /// </summary>
    [EchoedFields("id", "createdAt", "updatedAt")]
    public sealed record CustomerRequest(
        string? ExternalId, string? Name, string? Email, string? Phone, string? WhatsAppNumber, string? PreferredLanguage, string? TimeZone);

    public sealed record CustomerResponse(
        Guid Id, string? ExternalId, string Name, string? Email, string? Phone, string? WhatsAppNumber, string PreferredLanguage, string TimeZone,
        DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

    /// <summary>One page of customers; <c>next</c> is the <c>after</c> value for the following page, null on the last.</summary>
    public sealed record CustomerPage(List<CustomerResponse> Items, Guid? Next);

    public static IEndpointRouteBuilder MapCustomers(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/customers").WithTags("Customers")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Small);
        group.MapPost("/", Create).WithSummary("Adds a customer; externalId (the business application's own id) is unique per company (409 when taken).");
        group.MapGet("/", List)
            .WithSummary($"Customers ordered by id, {DefaultPageSize} a page (limit up to {MaxPageSize}); pass the previous page's next as after. Optional exact externalId and a search on name and email.");
        group.MapGet("/{id}", Get).WithSummary(AddressingSummary("The customer"));
        group.MapPut("/{id}", Replace).WithSummary(AddressingSummary("Replaces every field of the customer"))
            .WithMetadata(new OpenApiHeader("If-Match", "Optional: the ETag of a GET (or an earlier PUT); the PUT is refused with 412 when the customer changed since."));
        group.MapDelete("/{id}", Delete).WithSummary(AddressingSummary("Soft-deletes the customer (message history stays; pending messages are suppressed)"));
        group.MapPost("/import", Import).WithMetadata(new BodySizeLimit(8 * 1024 * 1024))
            .WithSummary($"Creates or replaces up to {MaxImport} customers by externalId in one transaction (a practice's client list, or a nightly sync): all or none, with each item's problems named customers[i].field.");
        group.MapPost("/import/csv", ImportCsv).Accepts<string>("text/csv").WithMetadata(new BodySizeLimit(8 * 1024 * 1024))
            .WithSummary($"The same import from a CSV file (UTF-8; a header line naming externalId, name and any of email, phone, whatsAppNumber, preferredLanguage, timeZone; up to {MaxImport} lines after it); problems are named lines[n].field by line number.");
        group.MapPost("/{id}/erase", Erase).WithSummary(AddressingSummary("Erases the customer at their request: contacts and the content of their messages removed, consent evidence and message statuses and costs kept; never restored"));
        group.MapPost("/{id}/restore", Restore)
            .WithSummary(AddressingSummary("Brings back a deleted customer (a client who returns), with its externalId, preferences and consent history; a live customer is answered as it is"));
        return endpoints;
    }

    /// <summary>How every <c>/v1/customers/{id}</c> route reads its id, for the OpenAPI summaries.</summary>
    public static string AddressingSummary(string what) =>
        $"{what}. {{id}} is our uuid or the business application's externalId: a segment that parses as a uuid is looked up as our id first, "
        + "anything else (or a uuid that is no id of ours) as the externalId.";

    internal static async Task<Results<Created<CustomerResponse>, ValidationProblem, ProblemHttpResult>> Create(
        CustomerRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = Validate(request, out var contact);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var now = time.GetUtcNow();
        // Version 7 ids are time-ordered: the list's id order is roughly creation order, and inserts append to the index.
        var customer = new Customer { Id = Guid.CreateVersion7(now), CompanyId = tenant.CompanyId, Name = "", CreatedAt = now };
        Apply(customer, request, contact, now);
        db.Customers.Add(customer);
        if (await SaveAsync(db, tenant, customer, cancellationToken) is { } conflict)
        {
            return conflict;
        }
        return TypedResults.Created($"/v1/customers/{customer.Id}", ToResponse(customer));
    }

    internal static async Task<Results<Ok<CustomerPage>, ValidationProblem>> List(
        Guid? after, int? limit, string? externalId, string? search, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var validation = new Validation()
            .When(limit is < 1 or > MaxPageSize, "limit", $"limit is between 1 and {MaxPageSize}.")
            .When(search is { Length: > 200 }, "search", "search is at most 200 characters.")
            .Storable(("externalId", externalId), ("search", search));
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var pageSize = limit ?? DefaultPageSize;

        var query = Live(db, tenant).AsNoTracking();
        if (after is { } afterId)
        {
            query = query.Where(c => c.Id > afterId);
        }
        if (!string.IsNullOrEmpty(externalId))
        {
            query = query.Where(c => c.ExternalId == externalId);
        }
        if (!string.IsNullOrWhiteSpace(search))
        {
            var pattern = $"%{EscapeLike(search.Trim())}%";
            query = query.Where(c => EF.Functions.ILike(c.Name, pattern, LikeEscape) || EF.Functions.ILike(c.Email!, pattern, LikeEscape));
        }
        // One row more than the page tells whether another page follows without a count.
        var rows = await query.OrderBy(c => c.Id).Take(pageSize + 1).ToListAsync(cancellationToken);
        var page = rows.Take(pageSize).Select(ToResponse).ToList();
        return TypedResults.Ok(new CustomerPage(page, rows.Count > pageSize ? page[^1].Id : null));
    }

    internal static async Task<Results<Ok<CustomerResponse>, ProblemHttpResult>> Get(string id, Tenant tenant, OutboxDbContext db, HttpContext http, CancellationToken cancellationToken)
    {
        if (await FindAsync(db, tenant, id, cancellationToken) is not { } customer)
        {
            return NotFound(id);
        }
        http.Response.Headers.ETag = ETag(customer);
        return TypedResults.Ok(ToResponse(customer));
    }

    /// <summary>
    /// The version of a customer's details, for <c>If-Match</c> on the PUT, which replaces them whole:
    /// two people editing one client (an email fixed in the CRM, a phone fixed here) would otherwise
    /// silently undo each other's change.
    /// </summary>
    private static string ETag(Customer customer) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"\"{customer.UpdatedAt.UtcTicks / 10}\"");

    internal static async Task<Results<Ok<CustomerResponse>, ValidationProblem, ProblemHttpResult>> Replace(
        string id, CustomerRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, HttpContext http, CancellationToken cancellationToken)
    {
        var customer = await FindAsync(db, tenant, id, cancellationToken);
        if (customer is null)
        {
            return NotFound(id);
        }
        var validation = Validate(request, out var contact);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        // Locked and read again as it is now: a DELETE that committed since the read above makes
        // it gone (404), rather than a deleted customer given new details and a 200.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var locked = await db.Database
            .SqlQuery<int>($"SELECT 1 AS \"Value\" FROM customers WHERE id = {customer.Id} AND company_id = {tenant.CompanyId} AND deleted_at IS NULL FOR NO KEY UPDATE")
            .ToListAsync(cancellationToken);
        if (locked.Count == 0)
        {
            return NotFound(id);
        }
        await db.Entry(customer).ReloadAsync(cancellationToken);
        // Compared under the row's lock, so nothing changes it between this check and the write.
        if (http.Request.Headers.IfMatch.ToString() is { Length: > 0 } ifMatch && ifMatch != "*" && ifMatch != ETag(customer))
        {
            return Problems.PreconditionFailed($"The customer changed since it was read (If-Match {ifMatch}, now {ETag(customer)}): GET it again and send the change from that.");
        }
        Apply(customer, request, contact, time.GetUtcNow());
        if (await SaveAsync(db, tenant, customer, cancellationToken) is { } conflict)
        {
            return conflict;
        }
        await transaction.CommitAsync(cancellationToken);
        http.Response.Headers.ETag = ETag(customer);
        return TypedResults.Ok(ToResponse(customer));
    }

    internal static async Task<Results<NoContent, ProblemHttpResult>> Delete(string id, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var customer = await FindAsync(db, tenant, id, cancellationToken);
        if (customer is null)
        {
            return NotFound(id);
        }
        customer.DeletedAt = customer.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
        return TypedResults.NoContent();
    }

    internal static async Task<Results<Ok<CustomerResponse>, ProblemHttpResult>> Restore(string id, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        if (await FindAsync(db, tenant, id, cancellationToken) is { } live)
        {
            return TypedResults.Ok(ToResponse(live));   // a retried restore, or one never deleted
        }
        // Among the deleted, an id is ours or an externalId (which stays unique with its deleted holder).
        // Locked and read as committed: a restore racing an erasure waits for it, then finds it erased.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var customer = await LockAsync(db, tenant, id, deletedOnly: true, cancellationToken);
        if (customer is null)
        {
            return NotFound(id);
        }
        if (customer.ErasedAt is not null)
        {
            return Problems.Conflict($"Customer '{id}' was erased at their request on {customer.ErasedAt:yyyy-MM-dd} and cannot be restored: create the returning client as a new customer.");
        }
        customer.DeletedAt = null;
        customer.UpdatedAt = time.GetUtcNow();
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return TypedResults.Ok(ToResponse(customer));
    }

    /// <summary>
    /// The company's live (not deleted) customer named by <paramref name="id"/>: our id when it parses
    /// as one and matches, else the externalId. Another company's customer is simply not found.
    /// </summary>
    public static async Task<Customer?> FindAsync(OutboxDbContext db, Tenant tenant, string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenant);
        if (Guid.TryParse(id, out var guid) && await Live(db, tenant).SingleOrDefaultAsync(c => c.Id == guid, cancellationToken) is { } byId)
        {
            return byId;
        }
        // A business application may use uuids as its own ids too, so a uuid that is no id of ours is still tried as an externalId.
        var externalId = DecodedExternalId(id);
        return await Live(db, tenant).SingleOrDefaultAsync(c => c.ExternalId == externalId, cancellationToken);
    }

    /// <summary>
    /// The company's customer named by <paramref name="id"/> (our id first, then the externalId, as
    /// <see cref="FindAsync"/>), live or deleted (only deleted: <paramref name="deletedOnly"/>),
    /// locked FOR UPDATE in the caller's transaction and read as committed.
    /// </summary>
    private static async Task<Customer?> LockAsync(OutboxDbContext db, Tenant tenant, string id, bool deletedOnly, CancellationToken cancellationToken)
    {
        if (Guid.TryParse(id, out var guid)
            && (await db.Customers.FromSql($"SELECT * FROM customers WHERE company_id = {tenant.CompanyId} AND id = {guid} AND (deleted_at IS NOT NULL OR NOT {deletedOnly}) FOR UPDATE")
                .ToListAsync(cancellationToken)).SingleOrDefault() is { } byId)
        {
            return byId;
        }
        var externalId = DecodedExternalId(id);
        return (await db.Customers.FromSql($"SELECT * FROM customers WHERE company_id = {tenant.CompanyId} AND external_id = {externalId} AND (deleted_at IS NOT NULL OR NOT {deletedOnly}) FOR UPDATE")
            .ToListAsync(cancellationToken)).SingleOrDefault();
    }

    /// <summary>A client code such as CL/2026/001 is sent as CL%2F2026%2F001, which routing leaves encoded.</summary>
    private static string DecodedExternalId(string id) =>
        id.Contains("%2F", StringComparison.OrdinalIgnoreCase) ? id.Replace("%2F", "/", StringComparison.OrdinalIgnoreCase) : id;

    public static ProblemHttpResult NotFound(string id) => Problems.NotFound($"Customer '{id}'");

    private static IQueryable<Customer> Live(OutboxDbContext db, Tenant tenant) =>
        db.Customers.Where(c => c.CompanyId == tenant.CompanyId && c.DeletedAt == null);

    /// <summary>Contact details as stored: email trimmed, phone numbers in E.164.</summary>
    private sealed record Contact(string? Email, string? Phone, string? WhatsAppNumber);

    private static Validation Validate(CustomerRequest request, out Contact contact)
    {
        string? email = null, phone = null, whatsApp = null;
        var validation = new Validation()
            .Require("name", request.Name)
            .Storable(("name", request.Name), ("externalId", request.ExternalId))
            .When(request.Name is { Length: > 200 }, "name", "name is at most 200 characters.")
            .When(request.ExternalId is { Length: > 0 } && string.IsNullOrWhiteSpace(request.ExternalId), "externalId", "externalId cannot be blank: omit it to keep the current one, or give \"\" to remove it.")
            .When(request.ExternalId is { Length: > 200 }, "externalId", "externalId is at most 200 characters.")
            .When(Given(request.Email) && !ContactAddresses.TryNormaliseEmail(request.Email, out email), "email", "email must be a valid email address.")
            .When(Given(request.Phone) && !ContactAddresses.TryNormalisePhone(request.Phone, out phone), "phone", PhoneHint("phone"))
            .When(Given(request.WhatsAppNumber) && !ContactAddresses.TryNormalisePhone(request.WhatsAppNumber, out whatsApp), "whatsAppNumber", PhoneHint("whatsAppNumber"))
            .When(request.PreferredLanguage is not null && !FieldRules.IsLanguageCode(request.PreferredLanguage), "preferredLanguage", $"preferredLanguage is {FieldRules.LanguageHint}.")
            .When(request.TimeZone is not null && !FieldRules.IsIanaZone(request.TimeZone), "timeZone", $"'{request.TimeZone}' is not an IANA time zone (e.g. Asia/Kolkata).");
        contact = new Contact(Stored(email), Stored(phone), Stored(whatsApp));
        return validation;

        // A blank contact field means "none", as a form would send it.
        static bool Given(string? value) => !string.IsNullOrWhiteSpace(value);
        static string? Stored(string? value) => string.IsNullOrEmpty(value) ? null : value;
        static string PhoneHint(string field) =>
            $"{field} must be a valid phone number, e.g. +919876543210 (a number without a country code is read as Indian).";
    }

    private static void Apply(Customer customer, CustomerRequest request, Contact contact, DateTimeOffset now)
    {
        // Kept when omitted: business apps address the customer by it (the path, and SQL producers'
        // customer_external_id), so a PUT from a form without the field must not cut them off.
        // "" removes it (the customer is then found by our id only).
        customer.ExternalId = request.ExternalId is "" ? null : request.ExternalId?.Trim() ?? customer.ExternalId;
        customer.Name = request.Name!.Trim();
        customer.Email = contact.Email;
        customer.Phone = contact.Phone;
        customer.WhatsAppNumber = contact.WhatsAppNumber;
        customer.PreferredLanguage = request.PreferredLanguage ?? "en";
        customer.TimeZone = request.TimeZone ?? "Asia/Kolkata";
        customer.UpdatedAt = now;
    }

    /// <summary>Saves; a taken externalId (the unique index decides, so concurrent requests cannot both win) answers 409.</summary>
    private static async Task<ProblemHttpResult?> SaveAsync(OutboxDbContext db, Tenant tenant, Customer customer, CancellationToken cancellationToken)
    {
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            return null;
        }
        catch (DbUpdateException ex) when (ex.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: ExternalIdIndex })
        {
            db.ChangeTracker.Clear();
            if (db.Database.CurrentTransaction is { } failed)
            {
                await failed.RollbackAsync(cancellationToken);   // aborted by the violation: the lookup below needs a working one
            }
            var holderDeleted = await db.Customers.AsNoTracking()
                .Where(c => c.CompanyId == tenant.CompanyId && c.ExternalId == customer.ExternalId)
                .Select(c => c.DeletedAt != null)
                .FirstOrDefaultAsync(cancellationToken);
            return Problems.Conflict(holderDeleted
                ? $"externalId '{customer.ExternalId}' belongs to a deleted customer; it stays reserved so that customer's message history keeps resolving. A returning client: POST /v1/customers/{{id}}/restore with this externalId, then PUT the new details."
                : $"externalId '{customer.ExternalId}' is already used by another customer of this company.");
        }
    }

    /// <summary>A search text matched literally: LIKE's wildcards and its escape character lose their meaning.</summary>
    private static string EscapeLike(string text) =>
        text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal);

    private static CustomerResponse ToResponse(Customer c) =>
        new(c.Id, c.ExternalId, c.Name, c.Email, c.Phone, c.WhatsAppNumber, c.PreferredLanguage, c.TimeZone, c.CreatedAt, c.UpdatedAt);
}
