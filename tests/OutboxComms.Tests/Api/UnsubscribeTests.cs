using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

/// <summary>One-click unsubscribe: the link in general-update emails, the endpoint, and what the worker does after.</summary>
public sealed class UnsubscribeTests(PostgresServer server) : IAsyncLifetime
{
    private readonly DatabaseFixture db = new(server);

    public ValueTask InitializeAsync() => db.InitializeAsync();

    public ValueTask DisposeAsync() => db.DisposeAsync();

    [Fact]
    public async Task A_deleted_customers_unsubscribe_is_recorded_and_still_stands_when_they_return()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var api = new ApiFactory(db.ConnectionString);
        using var browser = api.CreateClient();
        var link = new Uri($"/unsubscribe/{api.Services.GetRequiredService<OutboxComms.Core.Preferences.UnsubscribeTokens>().Create(customer)}", UriKind.Relative);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE customers SET deleted_at = now() WHERE id = $1 RETURNING 1", customer);

        var asked = await browser.GetAsync(link, TestContext.Current.CancellationToken);
        var clicked = await browser.PostAsync(link, new FormUrlEncodedContent(new Dictionary<string, string> { ["List-Unsubscribe"] = "One-Click" }), TestContext.Current.CancellationToken);

        // A withdrawal of consent is kept whoever the practice has deleted (India's DPDP Act): the old email's link still works.
        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK), (asked.StatusCode, clicked.StatusCode));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1 AND NOT opted_in", customer));
        // The client returns: restored, they still get no general updates.
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE customers SET deleted_at = NULL WHERE id = $1 RETURNING 1", customer);
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", customer));
    }

    [Fact]
    public async Task Two_clicks_at_once_queue_behind_the_customer_lock_and_record_one_unsubscribe()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);   // no preferences row yet
        await using var api = new ApiFactory(db.ConnectionString);
        using var browser = api.CreateClient();
        var link = new Uri($"/unsubscribe/{api.Services.GetRequiredService<OutboxComms.Core.Preferences.UnsubscribeTokens>().Create(customer)}", UriKind.Relative);
        var ct = TestContext.Current.CancellationToken;

        // A consent change in progress holds the customer's lock; both clicks must wait for it.
        await using var holder = await db.DataSource.OpenConnectionAsync(ct);
        await using var change = await holder.BeginTransactionAsync(ct);
        await using (var lockCustomer = new Npgsql.NpgsqlCommand("SELECT 1 FROM customers WHERE id = $1 FOR NO KEY UPDATE", holder, change))
        {
            lockCustomer.Parameters.AddWithValue(customer);
            await lockCustomer.ExecuteScalarAsync(ct);
        }
        var clicks = Enumerable.Range(0, 2).Select(_ => browser.PostAsync(link,
            new FormUrlEncodedContent(new Dictionary<string, string> { ["List-Unsubscribe"] = "One-Click" }), ct)).ToArray();
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))", holder.ProcessID) < 1)
        {
            Assert.False(clicks.All(c => c.IsCompleted), "the clicks did not wait for the customer's lock");
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), "the clicks never blocked on the customer's lock");
            await Task.Delay(10, ct);
        }
        await change.CommitAsync(ct);

        Assert.All(await Task.WhenAll(clicks), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1", customer));
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", customer));
    }

    [Fact]
    public async Task A_general_update_carries_a_one_click_link_that_stops_general_updates_but_not_invoices()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var email = WorkerHarness.Email();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(1));
        await using var worker = new WorkerHarness(db.ConnectionString, [email], time, new() { ["PublicBaseUrl"] = "https://comms.practice.example/" });
        await using var api = new ApiFactory(db.ConnectionString);
        using var browser = api.CreateClient();

        var update = await Outbox.EnqueueAsync(db.DataSource, company, customer, type: "GENERAL_UPDATE");
        var invoice = await Outbox.EnqueueAsync(db.DataSource, company, customer, type: "INVOICE");
        await worker.RunOnceAsync();

        var sentUpdate = email.Sent.Single(m => m.MessageId == update);
        Assert.Null(email.Sent.Single(m => m.MessageId == invoice).UnsubscribeUrl);
        var link = sentUpdate.UnsubscribeUrl!;
        Assert.StartsWith("https://comms.practice.example/unsubscribe/", link.AbsoluteUri, StringComparison.Ordinal);

        // Opening the link only asks; a forged link is not found.
        var page = await browser.GetAsync(new Uri(link.AbsolutePath, UriKind.Relative), TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("<form method=\"post\">", await page.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1", customer));
        var forged = await browser.PostAsync(new Uri(link.AbsolutePath[..^3] + "AAA", UriKind.Relative), null, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.NotFound, forged.StatusCode);

        // The mail client's one-click POST (RFC 8058).
        var click = await browser.PostAsync(new Uri(link.AbsolutePath, UriKind.Relative),
            new FormUrlEncodedContent(new Dictionary<string, string> { ["List-Unsubscribe"] = "One-Click" }), TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, click.StatusCode);
        Assert.Equal("GENERAL_UPDATES:ALL:recipient:false:one-click unsubscribe from general updates", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT scope || ':' || coalesce(channel, 'ALL') || ':' || recorded_by || ':' || opted_in || ':' || source FROM consent_records WHERE customer_id = $1", customer));

        var nextUpdate = await Outbox.EnqueueAsync(db.DataSource, company, customer, type: "GENERAL_UPDATE");
        var nextInvoice = await Outbox.EnqueueAsync(db.DataSource, company, customer, type: "INVOICE");
        time.Advance(TimeSpan.FromMinutes(1));
        await worker.RunOnceAsync();

        var suppressed = await Outbox.GetAsync(db.DataSource, nextUpdate);
        Assert.Equal(("SUPPRESSED", "customer unsubscribed from general updates"), (suppressed.Status, suppressed.StatusReason));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, nextInvoice)).Status);
    }
}
