using System.Net;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Api.Common;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;

namespace OutboxComms.Api.Unsubscribe;

/// <summary>
/// RFC 8058 one-click unsubscribe for general updates. Mail clients POST
/// <c>List-Unsubscribe=One-Click</c> to the link; a person who opens it gets a confirmation page
/// first (a GET never unsubscribes, since link scanners fetch links). Invoices and statutory
/// reminders are not affected. The link is signed, so it needs no API key.
/// </summary>
public static class UnsubscribeEndpoints
{
    public static IEndpointRouteBuilder MapUnsubscribe(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/unsubscribe").WithTags("Unsubscribe").ExcludeFromDescription();
        group.MapGet("/{token}", Confirm);
        group.MapPost("/{token}", Unsubscribe).DisableAntiforgery();
        return endpoints;
    }

    internal static async Task<Results<ContentHttpResult, ProblemHttpResult>> Confirm(string token, UnsubscribeTokens tokens, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var company = tokens.TryRead(token, out var customerId) ? await CompanyNameAsync(db, customerId, cancellationToken) : null;
        if (company is null)
        {
            return Problems.NotFound("This unsubscribe link");
        }
        var html = $"""
            <!doctype html><html lang="en"><meta charset="utf-8"><title>Unsubscribe</title>
            <body style="font-family:sans-serif;max-width:32em;margin:3em auto">
            <p>Stop receiving general updates from {WebUtility.HtmlEncode(company)}?</p>
            <p>Invoices and compliance reminders will still reach you.</p>
            <form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit">Unsubscribe</button></form>
            </body></html>
            """;
        return TypedResults.Content(html, "text/html; charset=utf-8");
    }

    internal static async Task<Results<ContentHttpResult, ProblemHttpResult>> Unsubscribe(string token, UnsubscribeTokens tokens, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!tokens.TryRead(token, out var customerId))
        {
            return Problems.NotFound("This unsubscribe link");
        }
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // The customer's lock first, as every consent change takes it (the preferences PUT, provider
        // opt-outs and complaints): a second click, or a complaint arriving at the same moment, waits
        // and then finds the opt-out already made, so it is recorded once.
        var customer = (await db.Customers
            .FromSql($"SELECT * FROM customers WHERE id = {customerId} FOR NO KEY UPDATE")
            .ToListAsync(cancellationToken)).SingleOrDefault();
        if (customer is null)
        {
            return Problems.NotFound("This unsubscribe link");
        }
        var preference = await db.CommunicationPreferences.SingleOrDefaultAsync(p => p.CustomerId == customer.Id, cancellationToken);
        if (preference is null)
        {
            preference = new CommunicationPreference { CustomerId = customer.Id };
            db.CommunicationPreferences.Add(preference);
        }
        if (!preference.GeneralUpdatesOptOut)
        {
            preference.GeneralUpdatesOptOut = true;
            preference.UpdatedAt = time.GetUtcNow();
            db.ConsentRecords.Add(new ConsentRecord
            {
                CompanyId = customer.CompanyId,
                CustomerId = customer.Id,
                Scope = ConsentScope.GeneralUpdates,
                Channel = null,
                OptedIn = false,
                Source = "one-click unsubscribe from general updates",
                RecordedBy = "recipient",
                RecordedAt = time.GetUtcNow(),
            });
            await db.SaveChangesAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return TypedResults.Content("You will no longer receive general updates. Invoices and compliance reminders are not affected.", "text/plain; charset=utf-8");
    }

    private static Task<string?> CompanyNameAsync(OutboxDbContext db, Guid customerId, CancellationToken cancellationToken) =>
        db.Customers.Where(c => c.Id == customerId)
            .Join(db.Companies, c => c.CompanyId, company => company.Id, (_, company) => company.Name)
            .FirstOrDefaultAsync(cancellationToken);
}
