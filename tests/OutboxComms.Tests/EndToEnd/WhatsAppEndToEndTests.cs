using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace OutboxComms.Tests.EndToEnd;

/// <summary>
/// The whole product with no test double of ours: a business app inserts by SQL, the worker sends
/// through the real WhatsApp Cloud API client (to a loopback server speaking Meta's wire format) with
/// the company's encrypted token, and Meta's signed delivery webhook moves the message on.
/// </summary>
public sealed class WhatsAppEndToEndTests(PostgresServer server) : IAsyncLifetime
{
    private readonly DatabaseFixture db = new(server);
    private readonly WireMockServer meta = WireMockServer.Start();

    public ValueTask InitializeAsync() => db.InitializeAsync();

    public async ValueTask DisposeAsync()
    {
        meta.Stop();
        await db.DisposeAsync();
    }

    [Fact]
    public async Task A_committed_invoice_reaches_whatsapp_and_the_delivery_receipt_comes_back()
    {
        meta.Given(Request.Create().WithPath("/v21.0/106540352242922/messages").UsingPost().WithHeader("Authorization", "Bearer EAAG-live-token"))
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/json")
                .WithBody("""{"messaging_product":"whatsapp","contacts":[{"input":"919876543210","wa_id":"919876543210"}],"messages":[{"id":"wamid.E2E"}]}"""));
        await using var api = new ApiFactory(db.ConnectionString);
        var (company, key) = await api.NewCompanyAsync();
        using var client = api.As(key);
        var (settings, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/whatsapp", new
        {
            provider = "WHATSAPP_BUSINESS_API", enabled = true, apiKey = "EAAG-live-token", phoneNumberId = "106540352242922",
            webhookSecret = "meta-app-secret", baseUrl = meta.Url + "/v21.0/", cost = 0.7850m, costCurrency = "INR",
        });
        Assert.Equal(HttpStatusCode.OK, settings.StatusCode);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "98765 43210", externalId: "CLIENT-77");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "whatsapp_opt_in = true, invoice_delivery_channel = 'WHATSAPP'");

        long id;
        await using (var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken))
        await using (var transaction = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken))
        {
            await using var insert = new Npgsql.NpgsqlCommand(
                "INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content) VALUES ($1, 'CLIENT-77', 'INVOICE', 'PREFERRED', 'Invoice INV-1042 for ₹11,800 is ready.') RETURNING id",
                connection, transaction) { Parameters = { new() { Value = company } } };
            id = (long)(await insert.ExecuteScalarAsync(TestContext.Current.CancellationToken))!;
            await transaction.CommitAsync(TestContext.Current.CancellationToken);
        }

        await using (var worker = new WorkerHarness(db.ConnectionString, []))
        {
            await worker.StartAsync();
            for (var i = 0; i < 200 && (await Outbox.GetAsync(db.DataSource, id)).Status != "SENT"; i++)
            {
                await Task.Delay(50, TestContext.Current.CancellationToken);
            }
        }

        var sent = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("SENT", "WHATSAPP", "WHATSAPP_BUSINESS_API", "wamid.E2E", 0.785m), (sent.Status, sent.Channel, sent.ProviderName, sent.ProviderMessageId, sent.Cost));
        var request = JsonDocument.Parse(Assert.Single(meta.LogEntries).RequestMessage.Body!).RootElement;
        Assert.Equal("919876543210", request.GetProperty("to").GetString());
        Assert.Equal("Invoice INV-1042 for ₹11,800 is ready.", request.GetProperty("text").GetProperty("body").GetString());

        var webhook = $$"""{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"912255550100","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.E2E","status":"delivered","timestamp":"1764000900","recipient_id":"919876543210"}]} }]}]}""";
        using var post = new HttpRequestMessage(HttpMethod.Post, $"/webhooks/whatsapp/{company}") { Content = new StringContent(webhook, Encoding.UTF8, "application/json") };
        post.Headers.Add("X-Hub-Signature-256", "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData("meta-app-secret"u8.ToArray(), Encoding.UTF8.GetBytes(webhook))));
        using var anonymous = api.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await anonymous.SendAsync(post, TestContext.Current.CancellationToken)).StatusCode);
        Assert.Equal("DELIVERED", (await Outbox.GetAsync(db.DataSource, id)).Status);

        // The token never sat in the database in clear.
        var stored = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT whatsapp_api_key_encrypted FROM company_settings WHERE company_id = $1", company);
        Assert.Equal("EAAG-live-token", api.Services.GetRequiredService<SecretProtector>().Unprotect(stored, TestKeys.Slot(company, "whatsapp_api_key_encrypted")));
        Assert.DoesNotContain("EAAG-live-token", Encoding.UTF8.GetString(stored), StringComparison.Ordinal);
    }
}
