using System.Diagnostics;
using System.Net;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.EndToEnd;

/// <summary>The API commits without the trigger's NOTIFY and wakes the workers itself, after the commit.</summary>
public sealed class ApiWakesWorkerTests(PostgresServer server) : IAsyncLifetime
{
    private readonly DatabaseFixture db = new(server);

    public ValueTask InitializeAsync() => db.InitializeAsync();

    public ValueTask DisposeAsync() => db.DisposeAsync();

    [Fact]
    public async Task A_message_posted_to_the_api_wakes_an_idle_worker_long_before_its_poll()
    {
        await using var api = new ApiFactory(db.ConnectionString);
        var (company, key) = await api.NewCompanyAsync();
        await using (var replace = db.DataSource.CreateCommand("DELETE FROM company_settings WHERE company_id = $1"))
        {
            replace.Parameters.AddWithValue(company);
            await replace.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var email = WorkerHarness.Email();
        await using var worker = new WorkerHarness(db.ConnectionString, [email], settings: new() { ["Dispatch:PollInterval"] = "00:01:00" });
        await worker.StartAsync();
        await Task.Delay(500, TestContext.Current.CancellationToken);
        using var client = api.As(key);

        var clock = Stopwatch.StartNew();
        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages", new { customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice", content = "Attached." });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        while (email.Calls == 0 && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.Equal(1, email.Calls);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}; the poll alone would take a minute");
        Assert.NotNull(body);
    }
}
