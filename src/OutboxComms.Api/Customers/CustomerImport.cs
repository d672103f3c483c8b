using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Api.Preferences;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;

namespace OutboxComms.Api.Customers;

public static partial class CustomerEndpoints
{
    public const int MaxImport = 1000;

    /// <summary>Customers to create or replace, each named by its <c>externalId</c> (required here).</summary>
    public sealed record ImportRequest(List<ImportCustomerRequest?>? Customers);

    /// <summary>
    /// A whole customer as PUT takes it, and optionally a change to their preferences as
    /// <c>PUT …/preferences</c> takes it (omitted fields keep their value; each opt-in or opt-out is
    /// recorded as consent, with <c>consentSource</c>, "import" when omitted).
    /// </summary>
    [EchoedFields("id", "createdAt", "updatedAt")]
    public sealed record ImportCustomerRequest(
        string? ExternalId, string? Name, string? Email, string? Phone, string? WhatsAppNumber, string? PreferredLanguage, string? TimeZone,
        PreferenceEndpoints.PreferencesRequest? Preferences = null)
    {
        internal CustomerRequest Customer => new(ExternalId, Name, Email, Phone, WhatsAppNumber, PreferredLanguage, TimeZone);
    }

    /// <summary>What became of each item, in the request's order: <c>CREATED</c>, <c>UPDATED</c> or <c>UNCHANGED</c>.</summary>
    public sealed record ImportedCustomer(Guid Id, string ExternalId, string Outcome);

    public sealed record ImportResponse(int Created, int Updated, int Unchanged, List<ImportedCustomer> Customers);

    /// <summary>
    /// A practice onboarding its client list, or its app syncing it, one request per thousand: each
    /// item is a whole customer as PUT takes it, matched by externalId. A live customer with it is
    /// replaced (UNCHANGED when every field already matches, so a nightly sync of the same list
    /// changes nothing), otherwise one is created. All or none: any invalid item, an externalId given
    /// twice, or one held by a deleted customer (restore it first: its history keeps the id) is a
    /// 400 naming customers[i].field, and nothing is stored. An item's preferences change only when it
    /// names them, as PUT …/preferences changes them; a customer whose preferences or consent changed
    /// is UPDATED even when its details are unchanged.
    /// </summary>
    internal static async Task<Results<Ok<ImportResponse>, ValidationProblem, ProblemHttpResult>> Import(
        ImportRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var items = request.Customers;
        if (items is null || items.Count is 0 or > MaxImport)
        {
            return new Validation().Add("customers", $"customers lists 1 to {MaxImport} customers, each with its externalId.").Problem();
        }
        return await ImportAsync(items, i => $"customers[{i}]", tenant, db, time, cancellationToken);
    }

    /// <summary>
    /// The import of <paramref name="items"/>, whose problems are named <paramref name="label"/>(i).field,
    /// answered together with those <paramref name="found"/> already holds (lines of a file that could not be read as customers).
    /// </summary>
    /// <param name="given">The fields the items carry (a file's columns): an existing customer keeps the others as they are. Null: every field (the JSON import, as PUT).</param>
    private static async Task<Results<Ok<ImportResponse>, ValidationProblem, ProblemHttpResult>> ImportAsync(
        IReadOnlyList<ImportCustomerRequest?> items, Func<int, string> label, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken,
        Validation? found = null, IReadOnlySet<string>? given = null)
    {
        var validation = found ?? new Validation();
        var contacts = new Contact[items.Count];
        var externalIds = new string[items.Count];
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < items.Count; i++)
        {
            var prefix = label(i);
            if (items[i]?.Customer is not { } item)
            {
                validation.Add(prefix, $"{prefix} is a customer, not null.");
                continue;
            }
            var blankId = string.IsNullOrWhiteSpace(item.ExternalId);
            var itemValidation = Validate(blankId ? item with { ExternalId = null } : item, out contacts[i])
                .When(blankId, "externalId", "externalId is required here: an import matches customers by it.");
            validation.Merge(prefix, itemValidation);
            externalIds[i] = item.ExternalId?.Trim() ?? "";
            if (externalIds[i].Length > 0 && !seen.TryAdd(externalIds[i], i))
            {
                validation.Add($"{prefix}.externalId", $"externalId '{externalIds[i]}' is also {label(seen[externalIds[i]])}: give each customer once.");
            }
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        // Deleted holders too: their externalId stays reserved. Locked until the commit, so a DELETE
        // or a PUT of one of them waits rather than being overwritten by what this import read before it.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var existing = await db.Customers
            .FromSql($"SELECT * FROM customers WHERE company_id = {tenant.CompanyId} AND external_id = ANY ({externalIds}) ORDER BY id FOR UPDATE")
            .ToDictionaryAsync(c => c.ExternalId!, StringComparer.Ordinal, cancellationToken);
        var now = time.GetUtcNow();
        var outcomes = new List<ImportedCustomer>(items.Count);
        var preferences = new List<(Guid CustomerId, string Label, PreferenceEndpoints.PreferencesRequest Request)>();
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i]!.Customer;
            if (existing.TryGetValue(externalIds[i], out var customer))
            {
                if (customer.DeletedAt is not null)
                {
                    validation.Add($"{label(i)}.externalId",
                        $"externalId '{externalIds[i]}' belongs to a deleted customer; it stays reserved so that customer's message history keeps resolving. A returning client: POST /v1/customers/{{id}}/restore with this externalId first.");
                    continue;
                }
                var before = Fields(customer);
                if (given is not null)
                {
                    // A column the file does not have is no news: the customer keeps that field.
                    bool Has(string field) => given.Contains(field);
                    item = item with
                    {
                        Email = Has("email") ? item.Email : customer.Email,
                        Phone = Has("phone") ? item.Phone : customer.Phone,
                        WhatsAppNumber = Has("whatsAppNumber") ? item.WhatsAppNumber : customer.WhatsAppNumber,
                        PreferredLanguage = Has("preferredLanguage") ? item.PreferredLanguage : customer.PreferredLanguage,
                        TimeZone = Has("timeZone") ? item.TimeZone : customer.TimeZone,
                    };
                    contacts[i] = new Contact(
                        Has("email") ? contacts[i].Email : customer.Email,
                        Has("phone") ? contacts[i].Phone : customer.Phone,
                        Has("whatsAppNumber") ? contacts[i].WhatsAppNumber : customer.WhatsAppNumber);
                }
                Apply(customer, item, contacts[i], now);
                var changed = Fields(customer) != before;
                if (!changed)
                {
                    db.Entry(customer).State = EntityState.Unchanged;   // UpdatedAt stays what it was
                }
                outcomes.Add(new ImportedCustomer(customer.Id, externalIds[i], changed ? "UPDATED" : "UNCHANGED"));
            }
            else
            {
                customer = new Customer { Id = Guid.CreateVersion7(now), CompanyId = tenant.CompanyId, Name = "", CreatedAt = now };
                Apply(customer, item, contacts[i], now);
                db.Customers.Add(customer);
                outcomes.Add(new ImportedCustomer(customer.Id, externalIds[i], "CREATED"));
            }
            if (items[i]!.Preferences is { } wanted)
            {
                // A file's cells are named by their column (lines[3].invoiceDeliveryChannel), JSON by its path.
                preferences.Add((customer.Id, given is null ? $"{label(i)}.preferences" : label(i), wanted));
            }
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var preferred = await PreferenceEndpoints.ApplyImportedAsync(db, tenant, preferences, validation, now, cancellationToken);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        for (var i = 0; i < outcomes.Count; i++)
        {
            if (outcomes[i].Outcome == "UNCHANGED" && preferred.Contains(outcomes[i].Id))
            {
                outcomes[i] = outcomes[i] with { Outcome = "UPDATED" };
            }
        }
        // An externalId another request creates meanwhile is the unique index's to refuse (a 409
        // asking to retry, which then updates it).
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return TypedResults.Ok(new ImportResponse(
            outcomes.Count(o => o.Outcome == "CREATED"), outcomes.Count(o => o.Outcome == "UPDATED"), outcomes.Count(o => o.Outcome == "UNCHANGED"), outcomes));

        static (string? ExternalId, string Name, string? Email, string? Phone, string? WhatsAppNumber, string PreferredLanguage, string TimeZone) Fields(Customer c) =>
            (c.ExternalId, c.Name, c.Email, c.Phone, c.WhatsAppNumber, c.PreferredLanguage, c.TimeZone);
    }
}
