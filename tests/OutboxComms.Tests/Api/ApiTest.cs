using System.Net;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

/// <summary>An API test class: its own database and the real host on it. Each test still makes its own companies.</summary>
public abstract class ApiTest(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    protected DatabaseFixture Db { get; } = db;

    protected ApiFactory Api { get; private set; } = null!;

    public ValueTask InitializeAsync()
    {
        Api = new ApiFactory(Db.ConnectionString);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => Api.DisposeAsync();

    /// <summary>A client holding the first key of a new company.</summary>
    protected async Task<HttpClient> NewCompanyClientAsync(string name = "Rao & Associates, Company Secretaries")
    {
        var (_, key) = await Api.NewCompanyAsync(name);
        return Api.As(key);
    }

    /// <summary>Creates a customer through the API; returns its id.</summary>
    protected static async Task<string> CreateCustomerAsync(HttpClient client, string? externalId, string name, string? email = "client@example.com")
    {
        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId, name, email });
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return body!["id"]!.GetValue<string>();
    }
}
