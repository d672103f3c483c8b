using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Workflows;

/// <summary>Helpers shared by the workflow API tests: a practice with a customer, and validation-problem checks.</summary>
internal static class WorkflowApi
{
    /// <summary>The template keys the workflow tests use; every practice has them on every channel.</summary>
    public static readonly string[] TemplateKeys =
    [
        "payment-reminder", "payment-overdue", "compliance-reminder", "compliance-final-reminder", "compliance-overdue",
        "weekly-digest", "daily", "daily-update", "newsletter", "csr-reminder", "boom", "t",
    ];

    /// <summary>A new company (its own key) with the <see cref="TemplateKeys"/> templates.</summary>
    public static async Task<(Guid Company, HttpClient Client)> CompanyAsync(ApiFactory api, DatabaseFixture db)
    {
        var (company, key) = await api.NewCompanyAsync();
        await TestData.CreateTemplatesAsync(db.DataSource, company, TemplateKeys);
        return (company, api.As(key));
    }

    /// <summary>A new company (see <see cref="CompanyAsync"/>) with one customer in <paramref name="timeZone"/>, external id CLIENT-77.</summary>
    public static async Task<(HttpClient Client, Guid Company, Guid Customer)> PracticeAsync(ApiFactory api, DatabaseFixture db, string timeZone = "Asia/Kolkata")
    {
        var (company, client) = await CompanyAsync(api, db);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, timeZone: timeZone, externalId: "CLIENT-77");
        return (client, company, customer);
    }

    /// <summary>Asserts a 400 validation problem naming exactly these fields.</summary>
    public static void AssertFields(HttpResponseMessage response, JsonNode? body, params string[] fields)
    {
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var errors = body!["errors"]!.AsObject().Select(e => e.Key).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(fields.Order(StringComparer.Ordinal).ToArray(), errors);
    }

    public static string Text(this JsonNode? node, string name) => node![name]!.GetValue<string>();
}

/// <summary>
/// The API on a class-wide database with a fake clock at Monday 5 January 2026, 06:00 UTC (11:30 in
/// Kolkata, the default company zone: inside FY 2025-26, before its annual filings fall due).
/// Each test creates its own companies.
/// </summary>
public abstract class WorkflowApiTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    protected DatabaseFixture Db => db;

    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 1, 5, 6, 0, 0, TimeSpan.Zero));

    protected ApiFactory Api { get; private set; } = null!;

    public ValueTask InitializeAsync()
    {
        Api = new ApiFactory(db.ConnectionString) { Time = Time };
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => Api.DisposeAsync();

    protected Task<(HttpClient Client, Guid Company, Guid Customer)> PracticeAsync(string timeZone = "Asia/Kolkata") => WorkflowApi.PracticeAsync(Api, db, timeZone);
}
