using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Security;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;
using WireMock.Server;

namespace OutboxComms.Tests.Webhooks;

/// <summary>
/// Delivery webhooks through the real API host and PostgreSQL: signatures, forward-only status
/// moves, redelivery, unknown ids.
/// </summary>
public sealed class WebhookEndpointTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    private ApiFactory api = null!;
    private HttpClient client = null!;
    // Stands in for Amazon SNS: serves the signing certificate and answers subscription confirmations.
    private readonly WireMockServer sns = WireMockServer.Start();
    private readonly RSA snsKey = RSA.Create(2048);

    public ValueTask InitializeAsync()
    {
        api = new ApiFactory(db.ConnectionString, new Dictionary<string, string?>
        {
            ["Webhooks:SnsOriginPattern"] = $"^{Regex.Escape(sns.Url!.TrimEnd('/'))}$",
            ["Webhooks:WhatsAppAppSecret"] = "operators-app-secret",
        });
        client = api.CreateClient();
        using var certificate = new CertificateRequest("CN=sns.ap-south-1.amazonaws.com", snsKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        sns.Given(WireMock.RequestBuilders.Request.Create().WithPath(SnsCertificatePath).UsingGet())
            .RespondWith(WireMock.ResponseBuilders.Response.Create().WithBody(certificate.ExportCertificatePem()));
        sns.Given(WireMock.RequestBuilders.Request.Create().WithPath("/").WithParam("Action", "ConfirmSubscription").UsingGet())
            .RespondWith(WireMock.ResponseBuilders.Response.Create().WithBody("<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:ap-south-1:123456789012:ses-notifications:1b2c</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        client.Dispose();
        await api.DisposeAsync();
        sns.Stop();
        snsKey.Dispose();
    }

    private SecretProtector Secrets => api.Services.GetRequiredService<SecretProtector>();

    private async Task<Guid> CompanyAsync(string assignments, params object[] secrets)
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await using var command = db.DataSource.CreateCommand($"INSERT INTO company_settings (company_id) VALUES ($1); ");
        command.Parameters.AddWithValue(company);
        await command.ExecuteNonQueryAsync();
        await using var update = db.DataSource.CreateCommand($"UPDATE company_settings SET {assignments} WHERE company_id = $1");
        update.Parameters.AddWithValue(company);
        for (var i = 0; i < secrets.Length; i++)
        {
            // Each secret is encrypted for the column it is assigned to ("…_encrypted = $2").
            var column = Regex.Match(assignments, $@"(\w+_encrypted) = \${i + 2}\b").Groups[1].Value;
            update.Parameters.AddWithValue(secrets[i] is string s ? Secrets.Protect(s, TestKeys.Slot(company, column)) : secrets[i]);
        }
        await update.ExecuteNonQueryAsync();
        return company;
    }

    private async Task<long> SentMessageAsync(Guid company, string provider, string providerMessageId, string channel = "WHATSAPP", Guid? to = null)
    {
        var customer = to ?? await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var command = db.DataSource.CreateCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status, sent_at, provider_name, provider_message_id)
            VALUES ($1, $2, 'INVOICE', $3, 'x', 'SENT', now(), $4, $5) RETURNING id
            """);
        command.Parameters.AddWithValue(company);
        command.Parameters.AddWithValue(customer);
        command.Parameters.AddWithValue(channel);
        command.Parameters.AddWithValue(provider);
        command.Parameters.AddWithValue(providerMessageId);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private async Task<(string Status, DateTimeOffset? Delivered, DateTimeOffset? Read, DateTimeOffset? Response, string? Error)> RowAsync(long id)
    {
        await using var command = db.DataSource.CreateCommand("SELECT status, delivered_at, read_at, response_at, error_message FROM communication_logs WHERE id = $1");
        command.Parameters.AddWithValue(id);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetString(0), Optional(reader, 1), Optional(reader, 2), Optional(reader, 3), reader.IsDBNull(4) ? null : reader.GetString(4));
    }

    private static DateTimeOffset? Optional(NpgsqlDataReader reader, int i) => reader.IsDBNull(i) ? null : reader.GetFieldValue<DateTimeOffset>(i);

    private sealed record Receipt(int Received, int Applied, int Stale, int Duplicates, int UnknownMessages);

    private async Task<(HttpStatusCode Status, Receipt? Receipt)> PostAsync(string path, HttpContent content, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        return (response.StatusCode, response.IsSuccessStatusCode ? await response.Content.ReadFromJsonAsync<Receipt>(TestContext.Current.CancellationToken) : null);
    }

    // --- WhatsApp Cloud API ----------------------------------------------------------------

    /// <summary>A company sending through the Cloud API from business number id 106540352242922 (the payloads' <c>metadata.phone_number_id</c>).</summary>
    private const string WhatsAppCompany = "whatsapp_provider = 'WHATSAPP_BUSINESS_API', whatsapp_phone_id = '106540352242922', whatsapp_webhook_secret_encrypted = $2";

    private static string WhatsAppStatus(string wamid, string status, long timestamp, string? errors = null) =>
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"WABA\",\"changes\":[{\"field\":\"messages\",\"value\":{\"messaging_product\":\"whatsapp\","
        + "\"metadata\":{\"display_phone_number\":\"912255550100\",\"phone_number_id\":\"106540352242922\"},"
        + $"\"statuses\":[{{\"id\":\"{wamid}\",\"status\":\"{status}\",\"timestamp\":\"{timestamp}\",\"recipient_id\":\"919876543210\"{errors}}}]}}}}]}}]}}";

    private static (string, string) HubSignature(string secret, string body) =>
        ("X-Hub-Signature-256", "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(body))));

    [Fact]
    public async Task WhatsApp_statuses_only_move_forward_and_read_implies_delivered()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.READ1");
        var path = $"/webhooks/whatsapp/{company}";

        var read = WhatsAppStatus("wamid.READ1", "read", 1764000100);
        var (status, receipt) = await PostAsync(path, new StringContent(read, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", read));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, receipt!.Applied);
        var afterRead = await RowAsync(id);
        Assert.Equal("READ", afterRead.Status);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1764000100), afterRead.Read);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1764000100), afterRead.Delivered); // read without delivered still proves delivery

        // The "delivered" that arrives late keeps the status READ but gives the delivery its own, earlier time.
        var lateDelivered = WhatsAppStatus("wamid.READ1", "delivered", 1764000050);
        (_, receipt) = await PostAsync(path, new StringContent(lateDelivered, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", lateDelivered));
        Assert.Equal(1, receipt!.Stale);
        var afterDelivered = await RowAsync(id);
        Assert.Equal(("READ", DateTimeOffset.FromUnixTimeSeconds(1764000050), afterRead.Read), (afterDelivered.Status, afterDelivered.Delivered, afterDelivered.Read));
        var lateFailed = WhatsAppStatus("wamid.READ1", "failed", 1764000200, ""","errors":[{"code":131026,"title":"Message undeliverable"}]""");
        await PostAsync(path, new StringContent(lateFailed, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", lateFailed));
        Assert.Equal(afterDelivered, await RowAsync(id));
    }

    [Fact]
    public async Task WhatsApp_failure_records_metas_error_and_a_redelivered_event_is_a_duplicate()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.FAIL1");
        var body = WhatsAppStatus("wamid.FAIL1", "failed", 1764000300, ""","errors":[{"code":131026,"title":"Message undeliverable","error_data":{"details":"recipient not on WhatsApp"}}]""");

        var (_, first) = await PostAsync($"/webhooks/whatsapp/{company}", new StringContent(body, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", body));
        var (_, again) = await PostAsync($"/webhooks/whatsapp/{company}", new StringContent(body, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", body));

        Assert.Equal((1, 0), (first!.Applied, first.Duplicates));
        Assert.Equal((0, 1), (again!.Applied, again.Duplicates));
        var row = await RowAsync(id);
        Assert.Equal(("FAILED", "WhatsApp 131026: Message undeliverable (recipient not on WhatsApp)"), (row.Status, row.Error));
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_whatsapp_user_who_stopped_marketing_messages_gets_no_more_general_updates_on_whatsapp_unless_resubscribed_since()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var stopper = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543210");
        var resubscribed = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543211");
        var first = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.MKT1", to: stopper);
        await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.MKT2", to: stopper);
        await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.MKT3", to: resubscribed);
        // The practice resumed this one's WhatsApp general updates after the failure Meta reports late.
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
            VALUES ($1, $2, 'GENERAL_UPDATES', 'WHATSAPP', true, 'asked again by phone', 'crm-key', '2025-11-24 16:30:00+00') RETURNING 1
            """, company, resubscribed);
        const string stopped = ""","errors":[{"code":131050,"title":"Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business."}]""";

        foreach (var (wamid, at) in new[] { ("wamid.MKT1", 1764000300L), ("wamid.MKT2", 1764000400L), ("wamid.MKT3", 1764000500L) })
        {
            var body = WhatsAppStatus(wamid, "failed", at, stopped);
            var (_, receipt) = await PostAsync($"/webhooks/whatsapp/{company}", Json(body), HubSignature("meta-app-secret", body));
            Assert.Equal(1, receipt!.Applied);
        }

        Assert.Equal("FAILED", (await RowAsync(first)).Status);
        Assert.Equal("{WHATSAPP}/false", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT general_updates_opt_out_channels::text || '/' || general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", stopper));
        // Two failures, one record; email general updates and every invoice are untouched.
        Assert.Equal("GENERAL_UPDATES:WHATSAPP/false/stopped marketing messages in WhatsApp: no more general updates on WhatsApp/WHATSAPP", await ConsentsAsync(stopper));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", resubscribed));
        Assert.Equal("FAILED", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(DISTINCT status, ',') FROM webhook_events WHERE company_id = $1", company));
    }

    private static string WhatsAppMarketingChoice(string waId, string value, long timestamp) =>
        "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"WABA\",\"changes\":[{\"field\":\"user_preferences\",\"value\":{\"messaging_product\":\"whatsapp\","
        + "\"metadata\":{\"display_phone_number\":\"912255550100\",\"phone_number_id\":\"106540352242922\"},"
        + $"\"contacts\":[{{\"profile\":{{\"name\":\"Client\"}},\"wa_id\":\"{waId}\"}}],"
        + $"\"user_preferences\":[{{\"wa_id\":\"{waId}\",\"detail\":\"User requested to {value} marketing messages\",\"category\":\"marketing_messages\",\"value\":\"{value}\",\"timestamp\":{timestamp}}}]}}}}]}}]}}";

    [Fact]
    public async Task A_whatsapp_user_stopping_and_resuming_marketing_messages_stops_and_resumes_general_updates_on_whatsapp_for_every_customer_with_that_number()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var stored = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543220");
        // A plain SQL producer's customer: no WhatsApp number, the phone written the Indian way.
        var byPhone = await TestData.ScalarAsync<Guid>(db.DataSource,
            "INSERT INTO customers (company_id, name, phone, time_zone) VALUES ($1, 'Client', '098765-43220', 'Asia/Kolkata') RETURNING id", company);
        var decided = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+91 98765 43220");
        var viaZeros = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "0091 98765 43220");
        var deleted = await TestData.ScalarAsync<Guid>(db.DataSource,
            "INSERT INTO customers (company_id, name, whatsapp_number, time_zone, deleted_at) VALUES ($1, 'Gone', '+919876543220', 'Asia/Kolkata', now()) RETURNING id", company);
        var otherNumber = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543221");
        var sameEnding = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+44 98765 43220");
        var otherCompany = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var elsewhere = await TestData.CreateCustomerAsync(db.DataSource, otherCompany, whatsApp: "+919876543220");
        var path = $"/webhooks/whatsapp/{company}";

        var stop = WhatsAppMarketingChoice("919876543220", "stop", 1764000600);
        var (_, stopped) = await PostAsync(path, Json(stop), HubSignature("meta-app-secret", stop));
        var (_, again) = await PostAsync(path, Json(stop), HubSignature("meta-app-secret", stop));
        var unknown = WhatsAppMarketingChoice("919999999999", "stop", 1764000600);
        var (_, nobody) = await PostAsync(path, Json(unknown), HubSignature("meta-app-secret", unknown));

        // The same choice again (another event: tapped twice) finds nothing to change.
        var stopAgain = WhatsAppMarketingChoice("919876543220", "stop", 1764000700);
        var (_, already) = await PostAsync(path, Json(stopAgain), HubSignature("meta-app-secret", stopAgain));

        Assert.Equal((1, 1, 1, 1, 0), (stopped!.Applied, again!.Duplicates, nobody!.UnknownMessages, already!.Stale, already.Applied));
        Assert.Contains($"marketing:{api.Services.GetRequiredService<WebhookEventKeys>().Part("919876543220")}:stop:1764000600",
            await TestData.ScalarAsync<string[]>(db.DataSource, "SELECT array_agg(event_key) FROM webhook_events WHERE company_id = $1", company));
        foreach (var customer in new[] { stored, byPhone, decided, viaZeros })
        {
            Assert.Equal("{WHATSAPP}", await StoppedOnAsync(customer));
            Assert.Equal("GENERAL_UPDATES:WHATSAPP/false/stopped marketing messages in WhatsApp/WHATSAPP", await ConsentsAsync(customer));
        }
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id IN ($1, $2, $3, $4)", otherNumber, sameEnding, elsewhere, deleted));

        // The practice changed one customer's WhatsApp general updates after the user resumed (the
        // resume reaches us late): that customer keeps the practice's choice.
        await TestData.ScalarAsync<int>(db.DataSource, """
            INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
            VALUES ($1, $2, 'GENERAL_UPDATES', 'WHATSAPP', false, 'asked by phone', 'crm-key', '2025-11-25') RETURNING 1
            """, company, decided);
        var resume = WhatsAppMarketingChoice("919876543220", "resume", 1764000900);
        var (_, resumed) = await PostAsync(path, Json(resume), HubSignature("meta-app-secret", resume));

        Assert.Equal(1, resumed!.Applied);
        foreach (var customer in new[] { stored, byPhone })
        {
            Assert.Equal("{}", await StoppedOnAsync(customer));
            Assert.EndsWith(",GENERAL_UPDATES:WHATSAPP/true/resumed marketing messages in WhatsApp/WHATSAPP", await ConsentsAsync(customer), StringComparison.Ordinal);
        }
        Assert.Equal("{WHATSAPP}", await StoppedOnAsync(decided));
        Assert.Equal("MARKETING_STOPPED/APPLIED:,MARKETING_STOPPED/UNKNOWN_MESSAGE:,MARKETING_STOPPED/STALE:,MARKETING_RESUMED/APPLIED:", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(status || '/' || outcome || ':' || coalesce(provider_message_id, ''), ',' ORDER BY id) FROM webhook_events WHERE company_id = $1", company));

        Task<string> StoppedOnAsync(Guid customer) => TestData.ScalarAsync<string>(db.DataSource,
            "SELECT general_updates_opt_out_channels::text FROM communication_preferences WHERE customer_id = $1", customer);
    }

    [Fact]
    public async Task A_report_dated_in_the_future_counts_from_its_arrival()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var message = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.AHEAD1");
        var before = DateTimeOffset.UtcNow;

        // A clock far ahead (or a made-up body): delivered on 2100-01-01.
        var body = WhatsAppStatus("wamid.AHEAD1", "delivered", 4102444800);
        var (_, receipt) = await PostAsync($"/webhooks/whatsapp/{company}", Json(body), HubSignature("meta-app-secret", body));

        Assert.Equal(1, receipt!.Applied);
        var row = await RowAsync(message);
        Assert.Equal("DELIVERED", row.Status);
        Assert.InRange(row.Delivered!.Value, before.AddSeconds(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        // The body's own time is kept with the event.
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(4102444800).UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource,
            "SELECT occurred_at FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_practice_onboarded_through_the_operators_meta_app_is_verified_with_the_app_secret_only_the_operator_holds()
    {
        var onboarded = await CompanyAsync("whatsapp_provider = 'WHATSAPP_BUSINESS_API', whatsapp_phone_id = '106540352242922'");
        var message = await SentMessageAsync(onboarded, "WHATSAPP_BUSINESS_API", "wamid.OPERATOR1");
        var ownApp = await CompanyAsync(WhatsAppCompany, "own-app-secret");
        var ownMessage = await SentMessageAsync(ownApp, "WHATSAPP_BUSINESS_API", "wamid.OWNAPP1");
        var body = WhatsAppStatus("wamid.OPERATOR1", "delivered", 1764000100);
        var ownBody = WhatsAppStatus("wamid.OWNAPP1", "delivered", 1764000100);

        var (guessed, _) = await PostAsync($"/webhooks/whatsapp/{onboarded}", Json(body), HubSignature("guessed-secret", body));
        var (signed, receipt) = await PostAsync($"/webhooks/whatsapp/{onboarded}", Json(body), HubSignature("operators-app-secret", body));
        // A practice with its own Meta app keeps its own secret: the operator's signs nothing for it.
        var (notItsApp, _) = await PostAsync($"/webhooks/whatsapp/{ownApp}", Json(ownBody), HubSignature("operators-app-secret", ownBody));

        Assert.Equal((HttpStatusCode.Unauthorized, HttpStatusCode.OK, 1, HttpStatusCode.Unauthorized), (guessed, signed, receipt!.Applied, notItsApp));
        Assert.Equal(("DELIVERED", "SENT"), ((await RowAsync(message)).Status, (await RowAsync(ownMessage)).Status));
    }

    [Fact]
    public async Task A_body_signed_with_a_shared_meta_app_secret_applies_only_to_the_company_whose_business_number_it_names()
    {
        // Two practices onboarded through one Meta app: the same app secret, their own numbers.
        var ours = await CompanyAsync(WhatsAppCompany, "shared-app-secret");
        var theirs = await CompanyAsync("whatsapp_provider = 'WHATSAPP_BUSINESS_API', whatsapp_phone_id = '209876543210987', whatsapp_webhook_secret_encrypted = $2", "shared-app-secret");
        var theirMessage = await SentMessageAsync(theirs, "WHATSAPP_BUSINESS_API", "wamid.THEIRS");
        var theirClient = await TestData.CreateCustomerAsync(db.DataSource, theirs, whatsApp: "+919876543230");
        var ourMessage = await SentMessageAsync(ours, "WHATSAPP_BUSINESS_API", "wamid.OURS");

        // Bodies about our number (106540352242922), signed with the shared secret, sent to their URL.
        var status = WhatsAppStatus("wamid.THEIRS", "failed", 1764000100, ",\"errors\":[{\"code\":131026,\"title\":\"Message undeliverable\"}]");
        var stop = WhatsAppMarketingChoice("919876543230", "stop", 1764000100);
        var (statusAnswer, statusReceipt) = await PostAsync($"/webhooks/whatsapp/{theirs}", Json(status), HubSignature("shared-app-secret", status));
        var (_, stopReceipt) = await PostAsync($"/webhooks/whatsapp/{theirs}", Json(stop), HubSignature("shared-app-secret", stop));
        // The same kind of body sent where it belongs applies.
        var ourStatus = WhatsAppStatus("wamid.OURS", "delivered", 1764000100);
        var (_, ourReceipt) = await PostAsync($"/webhooks/whatsapp/{ours}", Json(ourStatus), HubSignature("shared-app-secret", ourStatus));

        Assert.Equal((HttpStatusCode.OK, 0, 0, 1), (statusAnswer, statusReceipt!.Received, stopReceipt!.Received, ourReceipt!.Applied));
        Assert.Equal(("SENT", "DELIVERED"), ((await RowAsync(theirMessage)).Status, (await RowAsync(ourMessage)).Status));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", theirClient));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1", theirs));
    }

    [Fact]
    public async Task A_status_of_an_unexpected_shape_in_a_signed_whatsapp_batch_is_passed_over_and_the_rest_applies()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var delivered = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.SHAPE1");
        var failed = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.SHAPE2");
        var untouched = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.SHAPE3");
        var body = """
            {"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
             "metadata":{"display_phone_number":"912255550100","phone_number_id":"106540352242922"},
             "statuses":[
              {"id":"wamid.SHAPE3","timestamp":"1764000100","recipient_id":"919876543210"},
              "not an object",
              {"id":"wamid.SHAPE2","status":"failed","timestamp":"1764000100","recipient_id":"919876543210","errors":[{"code":131000,"title":"Something went wrong","error_data":"a string, not an object"}]},
              {"id":"wamid.SHAPE1","status":"delivered","timestamp":"1764000100","recipient_id":"919876543210"}],
             "messages":{"not":"an array"}}}, "not a change"]}]}
            """;

        var (status, receipt) = await PostAsync($"/webhooks/whatsapp/{company}", Json(body), HubSignature("meta-app-secret", body));

        Assert.Equal((HttpStatusCode.OK, 2, 2), (status, receipt!.Received, receipt.Applied));
        Assert.Equal(("DELIVERED", "FAILED", "WhatsApp 131000: Something went wrong", "SENT"),
            ((await RowAsync(delivered)).Status, (await RowAsync(failed)).Status, (await RowAsync(failed)).Error, (await RowAsync(untouched)).Status));
    }

    [Fact]
    public async Task A_resume_received_after_a_late_131050_failure_still_resumes_general_updates_on_whatsapp()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543230");
        await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.OLD1", to: customer);
        var path = $"/webhooks/whatsapp/{company}";
        // An older message's failure, reported after the user had already resumed (the resume's webhook comes last).
        var failed = WhatsAppStatus("wamid.OLD1", "failed", 1764000300, ""","errors":[{"code":131050,"title":"stopped marketing messages"}]""");
        await PostAsync(path, Json(failed), HubSignature("meta-app-secret", failed));
        var resume = WhatsAppMarketingChoice("919876543230", "resume", 1764000400);

        var (_, resumed) = await PostAsync(path, Json(resume), HubSignature("meta-app-secret", resume));

        Assert.Equal(1, resumed!.Applied);
        Assert.Equal("{}", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT general_updates_opt_out_channels::text FROM communication_preferences WHERE customer_id = $1", customer));
        Assert.EndsWith(",GENERAL_UPDATES:WHATSAPP/true/resumed marketing messages in WhatsApp/WHATSAPP", await ConsentsAsync(customer), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Forged_or_unsigned_webhooks_get_401_and_change_nothing()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.FORGED");
        var body = WhatsAppStatus("wamid.FORGED", "delivered", 1764000400);

        var (unsigned, _) = await PostAsync($"/webhooks/whatsapp/{company}", new StringContent(body, Encoding.UTF8, "application/json"));
        var (forged, _) = await PostAsync($"/webhooks/whatsapp/{company}", new StringContent(body, Encoding.UTF8, "application/json"), HubSignature("someone-elses-secret", body));

        Assert.Equal(HttpStatusCode.Unauthorized, unsigned);
        Assert.Equal(HttpStatusCode.Unauthorized, forged);
        Assert.Equal("SENT", (await RowAsync(id)).Status);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1", company));
    }

    // A WhatsApp message sent once per price given (a replayed one more than once), each send
    // costed as the worker records it: on its attempt and summed on the message.
    private async Task<long> CostedWhatsAppAsync(Guid company, string wamid, params decimal[] sends)
    {
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", wamid);
        await using var command = db.DataSource.CreateCommand("""
            WITH costed AS (
                UPDATE communication_logs SET cost = (SELECT sum(c) FROM unnest($3::numeric[]) c), cost_currency = 'INR' WHERE company_id = $1 AND id = $2 RETURNING id)
            INSERT INTO communication_attempts (message_id, company_id, attempt_no, attempted_at, channel, provider_name, outcome, cost, cost_currency)
            SELECT costed.id, $1, n, now() - interval '1 hour' + n * interval '1 minute', 'WHATSAPP', 'WHATSAPP_BUSINESS_API', 'SENT', c, 'INR'
              FROM costed, unnest($3::numeric[]) WITH ORDINALITY AS s(c, n)
            """);
        command.Parameters.AddWithValue(company);
        command.Parameters.AddWithValue(id);
        command.Parameters.AddWithValue(sends);
        await command.ExecuteNonQueryAsync();
        return id;
    }

    private async Task<string> CostsAsync(long id) => await TestData.ScalarAsync<string>(db.DataSource, """
        SELECT m.cost::text || ' = ' || (SELECT string_agg(coalesce(a.cost::text, '-'), ' + ' ORDER BY a.attempt_no) FROM communication_attempts a WHERE a.message_id = m.id)
          FROM communication_logs m WHERE m.id = $1
        """, id);

    private static string Priced(string wamid, string status, long timestamp, string pricing) =>
        WhatsAppStatus(wamid, status, timestamp, $$""","pricing":{{pricing}}""");

    [Fact]
    public async Task A_whatsapp_send_meta_does_not_charge_for_costs_nothing_and_a_replays_earlier_send_keeps_its_cost()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var path = $"/webhooks/whatsapp/{company}";
        async Task Post(string body) => Assert.Equal(HttpStatusCode.OK, (await PostAsync(path, Json(body), HubSignature("meta-app-secret", body))).Status);

        // A replayed message: the first send was charged, the second went in the customer's service window.
        var replayed = await CostedWhatsAppAsync(company, "wamid.FREE1", 0.785m, 0.785m);
        await Post(Priced("wamid.FREE1", "delivered", 1764000100, """{"billable":false,"pricing_model":"PMP","category":"service","type":"free_customer_service"}"""));
        Assert.Equal("0.785000 = 0.785000 + 0.000000", await CostsAsync(replayed));
        await Post(Priced("wamid.FREE1", "read", 1764000200, """{"billable":false,"pricing_model":"PMP","category":"service","type":"free_customer_service"}"""));
        Assert.Equal("0.785000 = 0.785000 + 0.000000", await CostsAsync(replayed));

        // The newer pricing form, with only a free type; and a billable send keeps its rate-card price.
        var entryPoint = await CostedWhatsAppAsync(company, "wamid.FREE2", 0.785m);
        await Post(Priced("wamid.FREE2", "sent", 1764000100, """{"pricing_model":"PMP","category":"marketing","type":"free_entry_point"}"""));
        Assert.Equal("0.000000 = 0.000000", await CostsAsync(entryPoint));
        var charged = await CostedWhatsAppAsync(company, "wamid.PAID1", 0.785m);
        await Post(Priced("wamid.PAID1", "delivered", 1764000100, """{"billable":true,"pricing_model":"PMP","category":"utility","type":"regular"}"""));
        Assert.Equal("0.785000 = 0.785000", await CostsAsync(charged));

        // A failed message is not charged; a failure reported after the message was read changes nothing.
        var failed = await CostedWhatsAppAsync(company, "wamid.FAIL2", 0.785m);
        await Post(WhatsAppStatus("wamid.FAIL2", "failed", 1764000100, ""","errors":[{"code":131026,"title":"Message undeliverable"}]"""));
        Assert.Equal(("FAILED", "0.000000 = 0.000000"), ((await RowAsync(failed)).Status, await CostsAsync(failed)));
        // Reported delivered after the failure (a later event, which Meta does charge for): the cost comes back.
        await Post(Priced("wamid.FAIL2", "delivered", 1764000300, """{"billable":true,"pricing_model":"PMP","category":"utility","type":"regular"}"""));
        Assert.Equal(("DELIVERED", "0.785000 = 0.785000"), ((await RowAsync(failed)).Status, await CostsAsync(failed)));
        var read = await CostedWhatsAppAsync(company, "wamid.READ2", 0.785m);
        await Post(WhatsAppStatus("wamid.READ2", "read", 1764000100));
        await Post(WhatsAppStatus("wamid.READ2", "failed", 1764000200, ""","errors":[{"code":131026,"title":"Message undeliverable"}]"""));
        Assert.Equal(("READ", "0.785000 = 0.785000"), ((await RowAsync(read)).Status, await CostsAsync(read)));

        // An event that came before its message's id was recorded is judged the same when it is applied.
        await Post(WhatsAppStatus("wamid.EARLY1", "failed", 1764000100, ""","errors":[{"code":131026,"title":"Message undeliverable"}]"""));
        var early = await CostedWhatsAppAsync(company, "wamid.EARLY1", 0.785m);
        Assert.Equal(1, await api.Services.GetRequiredService<DeliveryEventRecorder>().ApplyWaitingAsync(["wamid.EARLY1"], TestContext.Current.CancellationToken));
        Assert.Equal(("FAILED", "0.000000 = 0.000000"), ((await RowAsync(early)).Status, await CostsAsync(early)));
    }

    [Fact]
    public async Task An_event_for_an_unknown_message_is_acknowledged_and_kept_for_audit()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var body = WhatsAppStatus("wamid.NOT-OURS", "delivered", 1764000500);

        var (status, receipt) = await PostAsync($"/webhooks/whatsapp/{company}", new StringContent(body, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", body));

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, receipt!.UnknownMessages);
        Assert.Equal("UNKNOWN_MESSAGE", await TestData.ScalarAsync<string>(db.DataSource, "SELECT outcome FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_customers_whatsapp_reply_records_when_they_responded()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.ASKED");
        var body = """
            {"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
             "metadata":{"display_phone_number":"912255550100","phone_number_id":"106540352242922"},
             "messages":[{"from":"919876543210","id":"wamid.REPLY","timestamp":"1764000600","type":"text","text":{"body":"Paid, thanks"},"context":{"from":"912255550100","id":"wamid.ASKED"}}]}}]}]}
            """;

        await PostAsync($"/webhooks/whatsapp/{company}", new StringContent(body, Encoding.UTF8, "application/json"), HubSignature("meta-app-secret", body));

        var row = await RowAsync(id);
        Assert.Equal(("SENT", DateTimeOffset.FromUnixTimeSeconds(1764000600)), (row.Status, row.Response));
        // What the client wrote, and their number, are not kept: only that and when they replied.
        var stored = await TestData.ScalarAsync<string>(db.DataSource, "SELECT payload FROM webhook_events WHERE company_id = $1", company);
        Assert.DoesNotContain("Paid", stored, StringComparison.Ordinal);
        Assert.DoesNotContain("919876543210", stored, StringComparison.Ordinal);
        Assert.Contains("wamid.ASKED", stored, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_whatsapp_verification_handshake_echoes_the_challenge_only_for_the_right_token()
    {
        var company = await CompanyAsync("whatsapp_provider = 'WHATSAPP_BUSINESS_API', whatsapp_verify_token_encrypted = $2", "my-verify-token");

        var ok = await client.GetAsync(new Uri($"/webhooks/whatsapp/{company}?hub.mode=subscribe&hub.verify_token=my-verify-token&hub.challenge=1158201444", UriKind.Relative), TestContext.Current.CancellationToken);
        var wrong = await client.GetAsync(new Uri($"/webhooks/whatsapp/{company}?hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1158201444", UriKind.Relative), TestContext.Current.CancellationToken);

        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("1158201444", await ok.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        Assert.Equal(HttpStatusCode.Forbidden, wrong.StatusCode);
    }

    // --- Twilio ---------------------------------------------------------------------------------

    [Fact]
    public async Task Twilio_status_callbacks_are_verified_against_the_called_url_and_applied()
    {
        // Its WhatsApp token was copied from another company's row by SQL, so it does not decrypt here:
        // refused alone, it does not stop the SMS callbacks (nor answer 500).
        var copied = Secrets.Protect("other-companys-token", TestKeys.Slot(Guid.NewGuid(), "whatsapp_api_key_encrypted"));
        var company = await CompanyAsync("sms_provider = 'TWILIO', sms_account_sid = 'AC123', sms_api_key_encrypted = $2, whatsapp_provider = 'TWILIO', whatsapp_api_key_encrypted = $3",
            "twilio-auth-token", copied);
        var id = await SentMessageAsync(company, "TWILIO", "SM0123456789abcdef", "SMS");
        var form = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["AccountSid"] = "AC123",
            ["ErrorCode"] = "30003",
            ["MessageSid"] = "SM0123456789abcdef",
            ["MessageStatus"] = "undelivered",
            ["To"] = "+919876543210",
        };
        var url = $"{client.BaseAddress}webhooks/twilio/{company}";
        var signed = url + string.Concat(form.Select(p => p.Key + p.Value));
        var signature = Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes("twilio-auth-token"), Encoding.UTF8.GetBytes(signed)));

        var (forged, _) = await PostAsync($"/webhooks/twilio/{company}", new FormUrlEncodedContent(form), ("X-Twilio-Signature", Convert.ToBase64String(new byte[20])));
        Assert.Equal(HttpStatusCode.Unauthorized, forged);
        var (status, receipt) = await PostAsync($"/webhooks/twilio/{company}", new FormUrlEncodedContent(form), ("X-Twilio-Signature", signature));

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, receipt!.Applied);
        Assert.Equal(("FAILED", "Twilio 30003: message undelivered"), ((await RowAsync(id)).Status, (await RowAsync(id)).Error));
        // Kept for audit: the status and code, not the customer's number.
        Assert.DoesNotContain("9876543210", await TestData.ScalarAsync<string>(db.DataSource, "SELECT payload FROM webhook_events WHERE company_id = $1", company), StringComparison.Ordinal);
        Assert.Equal("AccountSid=AC123&ErrorCode=30003&MessageSid=SM0123456789abcdef&MessageStatus=undelivered",
            await TestData.ScalarAsync<string>(db.DataSource, "SELECT payload FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_late_failure_report_about_a_message_whose_content_was_cleared_changes_its_status_but_writes_no_error_text_back()
    {
        var company = await CompanyAsync("sms_provider = 'TWILIO', sms_account_sid = 'AC123', sms_api_key_encrypted = $2", "twilio-auth-token");
        var id = await SentMessageAsync(company, "TWILIO", "SMcleared0000000001", "SMS");
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET content_redacted_at = now() - interval '1 day' WHERE id = $1 RETURNING 1", id);
        var form = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["AccountSid"] = "AC123", ["ErrorCode"] = "30003", ["ErrorMessage"] = "Unreachable handset +919876543210",
            ["MessageSid"] = "SMcleared0000000001", ["MessageStatus"] = "undelivered",
        };
        var signed = $"{client.BaseAddress}webhooks/twilio/{company}" + string.Concat(form.Select(p => p.Key + p.Value));
        var signature = Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes("twilio-auth-token"), Encoding.UTF8.GetBytes(signed)));

        var (status, _) = await PostAsync($"/webhooks/twilio/{company}", new FormUrlEncodedContent(form), ("X-Twilio-Signature", signature));

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(("FAILED", (string?)null), ((await RowAsync(id)).Status, (await RowAsync(id)).Error));
    }

    private async Task<string> ConsentsAsync(Guid customer) =>
        await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT coalesce(string_agg(CASE scope WHEN 'GENERAL_UPDATES' THEN 'GENERAL_UPDATES:' ELSE '' END || coalesce(channel, 'ALL') || '/' || opted_in || '/' || source || '/' || recorded_by, ',' ORDER BY id), '') FROM consent_records WHERE customer_id = $1", customer);

    private async Task<string> OptInsAsync(Guid customer) =>
        await TestData.ScalarAsync<string>(db.DataSource, "SELECT sms_opt_in || '/' || whatsapp_opt_in FROM communication_preferences WHERE customer_id = $1", customer);

    [Fact]
    public async Task A_twilio_failure_saying_the_customer_replied_stop_withdraws_their_sms_opt_in_once()
    {
        var company = await CompanyAsync("sms_provider = 'TWILIO', sms_account_sid = 'AC123', sms_api_key_encrypted = $2", "twilio-auth-token");
        var id = await SentMessageAsync(company, "TWILIO", "SM5f0c2a9e6d1b4c8a", "SMS");
        var customer = await TestData.ScalarAsync<Guid>(db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", id);
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "sms_opt_in = true, whatsapp_opt_in = true");
        var form = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["AccountSid"] = "AC123", ["ErrorCode"] = "21610", ["MessageSid"] = "SM5f0c2a9e6d1b4c8a", ["MessageStatus"] = "failed", ["To"] = "+919876543210",
        };
        var signed = $"{client.BaseAddress}webhooks/twilio/{company}" + string.Concat(form.Select(p => p.Key + p.Value));
        var signature = Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes("twilio-auth-token"), Encoding.UTF8.GetBytes(signed)));

        var (_, first) = await PostAsync($"/webhooks/twilio/{company}", new FormUrlEncodedContent(form), ("X-Twilio-Signature", signature));
        var (_, again) = await PostAsync($"/webhooks/twilio/{company}", new FormUrlEncodedContent(form), ("X-Twilio-Signature", signature));
        // Another of their messages fails the same way afterwards: the opt-in is already withdrawn.
        var second = await SentMessageAsync(company, "TWILIO", "SM77aa01bb02cc03dd", "SMS", to: customer);
        form["MessageSid"] = "SM77aa01bb02cc03dd";
        var resigned = Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes("twilio-auth-token"),
            Encoding.UTF8.GetBytes($"{client.BaseAddress}webhooks/twilio/{company}" + string.Concat(form.Select(p => p.Key + p.Value)))));
        var (_, later) = await PostAsync($"/webhooks/twilio/{company}", new FormUrlEncodedContent(form), ("X-Twilio-Signature", resigned));

        Assert.Equal((1, 1, 1), (first!.Applied, again!.Duplicates, later!.Applied));
        Assert.Equal(("FAILED", "FAILED"), ((await RowAsync(id)).Status, (await RowAsync(second)).Status));
        Assert.Equal("false/true", await OptInsAsync(customer));
        Assert.Equal("SMS/false/provider opt-out/TWILIO", await ConsentsAsync(customer));
    }

    // --- Amazon SES through SNS ----------------------------------------------------------------

    private const string SnsCertificatePath = "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem";
    private const string SesTopic = "arn:aws:sns:ap-south-1:123456789012:ses-notifications";

    /// <summary>An SNS message as SNS sends it: its fields, signed (SignatureVersion 1: SHA1, 2: SHA256) over the canonical text.</summary>
    private StringContent SnsMessage(string type, string message, string topic = SesTopic, string version = "1", string? certificateUrl = null, string? tamperedMessage = null, string? tamperedToken = null, TimeSpan? age = null)
    {
        var timestamp = (DateTimeOffset.UtcNow - (age ?? TimeSpan.FromSeconds(2))).ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        var fields = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["Message"] = message, ["MessageId"] = Guid.NewGuid().ToString(), ["Timestamp"] = timestamp, ["TopicArn"] = topic, ["Type"] = type,
        };
        if (type == "SubscriptionConfirmation")
        {
            fields["SubscribeURL"] = $"{sns.Url}/?Action=ConfirmSubscription&TopicArn={topic}&Token=2336412f37fb687f5d51e6e2425c464de";
            fields["Token"] = "2336412f37fb687f5d51e6e2425c464de";
        }
        var signed = string.Concat(fields.Select(f => $"{f.Key}\n{f.Value}\n"));
        var signature = snsKey.SignData(Encoding.UTF8.GetBytes(signed), version == "1" ? HashAlgorithmName.SHA1 : HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var body = new System.Text.Json.Nodes.JsonObject();
        foreach (var (name, value) in fields)
        {
            body[name] = value;
        }
        body["Message"] = tamperedMessage ?? message;
        if (tamperedToken is not null)
        {
            body["Token"] = tamperedToken;
        }
        body["SignatureVersion"] = version;
        body["Signature"] = Convert.ToBase64String(signature);
        body["SigningCertURL"] = certificateUrl ?? sns.Url + SnsCertificatePath;
        body["UnsubscribeURL"] = $"{sns.Url}/?Action=Unsubscribe&SubscriptionArn={topic}:1b2c";
        return new StringContent(body.ToJsonString(), Encoding.UTF8, "text/plain");
    }

    private static string SesBounce(string messageId, string type = "Permanent") =>
        $$$"""{"notificationType":"Bounce","bounce":{"bounceType":"{{{type}}}","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"client@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"timestamp":"2026-12-06T10:14:58.000Z","feedbackId":"0102019a-fb"},"mail":{"timestamp":"2026-12-06T10:14:55.000Z","source":"accounts@practice.example","messageId":"{{{messageId}}}","destination":["client@example.com"]}}""";

    private static string SesDelivery(string messageId) =>
        $$$"""{"eventType":"Delivery","delivery":{"timestamp":"2026-12-06T10:14:57.120Z","processingTimeMillis":546,"recipients":["client@example.com"],"smtpResponse":"250 ok"},"mail":{"timestamp":"2026-12-06T10:14:56.574Z","source":"accounts@practice.example","messageId":"{{{messageId}}}","destination":["client@example.com"]}}""";

    private int SnsCalls(string path) => sns.LogEntries.Count(e => e.RequestMessage.Path == path);

    [Fact]
    public async Task Ses_bounces_and_deliveries_signed_by_sns_for_the_companys_topic_move_the_message()
    {
        var company = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);
        var bounced = await SentMessageAsync(company, "AWS_SES", "0109019af1c2d3e4-5f6a7b8c-aaaa-4bbb-cccc-ddddeeeeffff-000000", "EMAIL");
        var delivered = await SentMessageAsync(company, "AWS_SES", "0109019af1c2d3e4-5f6a7b8c-1111-4222-3333-444455556666-000000", "EMAIL");
        var soft = await SentMessageAsync(company, "AWS_SES", "0109019af1c2d3e4-5f6a7b8c-7777-4888-9999-000011112222-000000", "EMAIL");
        var bounce = SnsMessage("Notification", SesBounce("0109019af1c2d3e4-5f6a7b8c-aaaa-4bbb-cccc-ddddeeeeffff-000000"));
        var bounceBody = await bounce.ReadAsStringAsync(TestContext.Current.CancellationToken);

        var (status, first) = await PostAsync($"/webhooks/ses/{company}", bounce);
        var (_, again) = await PostAsync($"/webhooks/ses/{company}", new StringContent(bounceBody, Encoding.UTF8, "text/plain"));
        var (_, delivery) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", SesDelivery("0109019af1c2d3e4-5f6a7b8c-1111-4222-3333-444455556666-000000"), version: "2"));
        var (_, transient) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", SesBounce("0109019af1c2d3e4-5f6a7b8c-7777-4888-9999-000011112222-000000", "Transient")));

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal((1, 1, 1, 1), (first!.Applied, again!.Duplicates, delivery!.Applied, transient!.Applied));
        Assert.Equal(("BOUNCED", "SES bounce (Permanent/General): smtp; 550 5.1.1 user unknown"), ((await RowAsync(bounced)).Status, (await RowAsync(bounced)).Error));
        var row = await RowAsync(delivered);
        Assert.Equal(("DELIVERED", new DateTimeOffset(2026, 12, 6, 10, 14, 57, 120, TimeSpan.Zero)), (row.Status, row.Delivered));
        Assert.Equal(("FAILED", "SES bounce (Transient/General): smtp; 550 5.1.1 user unknown"), ((await RowAsync(soft)).Status, (await RowAsync(soft)).Error));
        Assert.Equal(1, SnsCalls(SnsCertificatePath)); // fetched once, then kept
    }

    [Fact]
    public async Task An_sns_message_tampered_from_another_topic_or_with_a_certificate_outside_sns_changes_nothing()
    {
        var company = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);
        var id = await SentMessageAsync(company, "AWS_SES", "0109019af1c2d3e4-aaaa0000-1111-4222-3333-444455556666-000000", "EMAIL");
        var genuine = SesBounce("0109019af1c2d3e4-aaaa0000-1111-4222-3333-444455556666-000000");
        // The same certificate, at an address outside the SNS pattern: never fetched.
        var foreignUrl = new UriBuilder(sns.Url + SnsCertificatePath) { Host = "127.0.0.1" }.Uri.AbsoluteUri;
        Assert.False(OutboxComms.Core.Webhooks.AwsSesWebhook.IsCertificateUrl(foreignUrl, api.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<OutboxComms.Core.Webhooks.WebhookOptions>>().Value.SnsOriginPattern));

        var (tampered, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", SesDelivery("x"), tamperedMessage: genuine));
        var (otherTopic, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", genuine, topic: "arn:aws:sns:ap-south-1:999999999999:someone-elses-topic"));
        var (foreignCertificate, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", genuine, certificateUrl: foreignUrl));
        var (notJson, _) = await PostAsync($"/webhooks/ses/{company}", new StringContent(genuine[..20], Encoding.UTF8, "text/plain"));
        // A checked address that redirects (here to the genuine certificate) is not followed.
        sns.Given(WireMock.RequestBuilders.Request.Create().WithPath("/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem").UsingGet())
            .RespondWith(WireMock.ResponseBuilders.Response.Create().WithStatusCode(302).WithHeader("Location", sns.Url + SnsCertificatePath));
        var beforeRedirect = SnsCalls(SnsCertificatePath);
        var (redirected, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", genuine, certificateUrl: sns.Url + "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"));

        Assert.Equal([HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized],
            [tampered, otherTopic, foreignCertificate, notJson, redirected]);
        Assert.Equal(beforeRedirect, SnsCalls(SnsCertificatePath));
        Assert.Equal("SENT", (await RowAsync(id)).Status);
        Assert.DoesNotContain(sns.LogEntries, e => e.RequestMessage.Url.Contains("127.0.0.1", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_signed_sns_notification_is_accepted_through_sns_hour_of_retries_and_refused_when_hours_old_or_from_the_future()
    {
        var company = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);
        const string Replayed = "0109019af1c2d3e4-bbbb0000-1111-4222-3333-444455556666-000000";
        const string Retried = "0109019af1c2d3e4-cccc0000-1111-4222-3333-444455556666-000000";
        var replayed = await SentMessageAsync(company, "AWS_SES", Replayed, "EMAIL");
        var retried = await SentMessageAsync(company, "AWS_SES", Retried, "EMAIL");

        // Signed properly, but four hours ago (SNS gives up after an hour), or ten minutes ahead.
        var (stale, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", SesBounce(Replayed), age: TimeSpan.FromHours(4)));
        var (future, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", SesBounce(Replayed), age: TimeSpan.FromMinutes(-10)));
        // SNS's last retry of a notification it first sent fifty minutes ago.
        var (late, receipt) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", SesBounce(Retried), age: TimeSpan.FromMinutes(50)));

        Assert.Equal((HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.OK), (stale, future, late));
        Assert.Equal(("SENT", "BOUNCED", 1), ((await RowAsync(replayed)).Status, (await RowAsync(retried)).Status, receipt!.Applied));
    }

    [Theory]
    [InlineData("https://sns.ap-south-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", true)]
    [InlineData("https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", true)]
    [InlineData("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", true)]
    [InlineData("https://sns.s3.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", false)]        // an S3 bucket named "sns"
    [InlineData("https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com.evil.example/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", false)]
    [InlineData("http://sns.ap-south-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com:8443/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", false)]
    [InlineData("https://user@sns.ap-south-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem?cache=bust", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com/uploads/attacker.pem", false)]
    [InlineData("not a url", false)]
    public void Only_amazon_sns_regional_certificate_addresses_are_fetched(string url, bool fetched)
    {
        Assert.Equal(fetched, OutboxComms.Core.Webhooks.AwsSesWebhook.IsCertificateUrl(url, OutboxComms.Core.Webhooks.WebhookOptions.DefaultSnsOriginPattern));
    }

    [Theory]
    [InlineData("https://sns.ap-south-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:ap-south-1:123456789012:ses&Token=2336412f37f", true)]
    [InlineData("https://sns.cn-northwest-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=2336412f37f", true)]
    [InlineData("https://sns.s3.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37f", false)]
    [InlineData("http://sns.ap-south-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37f", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com:8443/?Action=ConfirmSubscription&Token=2336412f37f", false)]
    [InlineData("https://user@sns.ap-south-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37f", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com/x?Action=ConfirmSubscription&Token=2336412f37f", false)]
    [InlineData("https://sns.ap-south-1.amazonaws.com/?Action=Unsubscribe&Token=2336412f37f", false)]
    public void Only_amazon_sns_regional_confirmation_addresses_are_called(string url, bool called)
    {
        Assert.Equal(called, OutboxComms.Core.Webhooks.AwsSesWebhook.IsSubscribeUrl(url, OutboxComms.Core.Webhooks.WebhookOptions.DefaultSnsOriginPattern));
    }

    [Fact]
    public async Task A_signed_sns_notification_that_is_not_an_ses_event_is_acknowledged_without_change()
    {
        var company = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);

        var (status, receipt) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", "Successfully validated SNS topic for Amazon SES event publishing."));

        Assert.Equal((HttpStatusCode.OK, 0), (status, receipt!.Received));
    }

    [Fact]
    public async Task An_sns_subscription_is_confirmed_only_when_signed_for_the_companys_topic()
    {
        var company = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);
        var before = SnsCalls("/");

        var (foreign, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("SubscriptionConfirmation", "You have chosen to subscribe to the topic.", topic: "arn:aws:sns:ap-south-1:999999999999:someone-elses-topic"));
        var (forged, _) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("SubscriptionConfirmation", "You have chosen to subscribe to the topic.", tamperedToken: "another-token"));
        Assert.Equal((HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, 0), (foreign, forged, SnsCalls("/") - before));

        var (status, receipt) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("SubscriptionConfirmation", "You have chosen to subscribe to the topic."));

        Assert.Equal((HttpStatusCode.OK, 0), (status, receipt!.Received));
        var confirmation = Assert.Single(sns.LogEntries, e => e.RequestMessage.Path == "/" && e.RequestMessage.Query!.ContainsKey("Token"));
        Assert.Equal(SesTopic, confirmation.RequestMessage.Query!["TopicArn"].Single());
    }

    // --- SendGrid -----------------------------------------------------------------------------

    [Fact]
    public async Task SendGrid_events_are_checked_with_the_ecdsa_verification_key()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var company = await CompanyAsync("email_provider = 'SENDGRID', email_webhook_secret_encrypted = $2", Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()));
        var id = await SentMessageAsync(company, "SENDGRID", "14c5d75ce93", "EMAIL");
        var body = """[{"email":"client@example.com","timestamp":1764000700,"event":"bounce","reason":"550 5.1.1 mailbox does not exist","sg_event_id":"ZGVsaXZlcmVk","sg_message_id":"14c5d75ce93.filter0001.16648.5515E0B88.0"}]""";
        var timestamp = SendGridNow();
        var signature = SendGridSignature(key, timestamp, body);

        var (bad, _) = await PostAsync($"/webhooks/sendgrid/{company}", new StringContent(body, Encoding.UTF8, "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", signature), ("X-Twilio-Email-Event-Webhook-Timestamp", SendGridNow(TimeSpan.FromSeconds(1))));
        // Signed properly, but four days ago: beyond SendGrid's day of retries, so a replay.
        var stale = SendGridNow(TimeSpan.FromDays(-4));
        var (replayed, _) = await PostAsync($"/webhooks/sendgrid/{company}", new StringContent(body, Encoding.UTF8, "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", SendGridSignature(key, stale, body)), ("X-Twilio-Email-Event-Webhook-Timestamp", stale));
        var (good, receipt) = await PostAsync($"/webhooks/sendgrid/{company}", new StringContent(body, Encoding.UTF8, "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", signature), ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp));
        // A retry a day later, with the first try's signature, is still taken (and is a duplicate).
        var dayOld = SendGridNow(TimeSpan.FromDays(-1));
        var (retried, again) = await PostAsync($"/webhooks/sendgrid/{company}", new StringContent(body, Encoding.UTF8, "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", SendGridSignature(key, dayOld, body)), ("X-Twilio-Email-Event-Webhook-Timestamp", dayOld));

        Assert.Equal((HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized), (bad, replayed));
        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK), (good, retried));
        Assert.Equal((1, 1), (receipt!.Applied, again!.Duplicates));
        var row = await RowAsync(id);
        Assert.Equal(("BOUNCED", "SendGrid bounce: 550 5.1.1 mailbox does not exist"), (row.Status, row.Error));
    }

    private static string SendGridNow(TimeSpan? offset = null) =>
        (DateTimeOffset.UtcNow + (offset ?? TimeSpan.Zero)).ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string SendGridSignature(ECDsa key, string timestamp, string body) =>
        Convert.ToBase64String(key.SignData(Encoding.UTF8.GetBytes(timestamp + body), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));

    [Fact]
    public async Task Odd_fields_in_a_signed_sendgrid_batch_are_read_or_skipped_and_the_rest_of_the_batch_applies()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var company = await CompanyAsync("email_provider = 'SENDGRID', email_webhook_secret_encrypted = $2", Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()));
        var bounced = await SentMessageAsync(company, "SENDGRID", "sg-bounced", "EMAIL");
        var delivered = await SentMessageAsync(company, "SENDGRID", "sg-delivered", "EMAIL");
        // A timestamp beyond any date, a reason with a NUL from the recipient's server, an id that is null, an event id that is null.
        var body = """
            [{"timestamp":99999999999999,"event":"bounce","reason":"550 mailbox\u0000 unknown","sg_event_id":"ev-1","sg_message_id":"sg-bounced.filter1"},
             {"timestamp":1764000700,"event":"delivered","sg_event_id":"ev-2","sg_message_id":null},
             {"timestamp":1764000700,"event":"delivered","sg_event_id":null,"sg_message_id":"sg-delivered.filter1"}]
            """;
        var timestamp = SendGridNow();
        var signature = SendGridSignature(key, timestamp, body);

        var (status, receipt) = await PostAsync($"/webhooks/sendgrid/{company}", Json(body),
            ("X-Twilio-Email-Event-Webhook-Signature", signature), ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp));

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal((2, 2), (receipt!.Received, receipt.Applied));
        Assert.Equal(("BOUNCED", "SendGrid bounce: 550 mailbox unknown"), ((await RowAsync(bounced)).Status, (await RowAsync(bounced)).Error));
        Assert.Equal("DELIVERED", (await RowAsync(delivered)).Status);
    }

    [Fact]
    public async Task A_sendgrid_block_fails_a_bounce_bounces_a_machine_open_reads_nothing_and_older_ids_with_dots_match()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var company = await CompanyAsync("email_provider = 'SENDGRID', email_webhook_secret_encrypted = $2", Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()));
        var blocked = await SentMessageAsync(company, "SENDGRID", "sg-blocked", "EMAIL");
        var bounced = await SentMessageAsync(company, "SENDGRID", "sg-bounced2", "EMAIL");
        var prefetched = await SentMessageAsync(company, "SENDGRID", "sg-prefetched", "EMAIL");
        var opened = await SentMessageAsync(company, "SENDGRID", "sg-opened", "EMAIL");
        // SendGrid's older X-Message-Id form holds dots of its own.
        var older = await SentMessageAsync(company, "SENDGRID", "14c5d75ce93.dfd.64b469", "EMAIL");
        var body = """
            [{"timestamp":1764000700,"event":"bounce","type":"blocked","reason":"550 5.7.1 sender IP listed on a blocklist","sg_event_id":"bl-1","sg_message_id":"sg-blocked.filter0425p1las1-8268-5C79C5E1-10.0"},
             {"timestamp":1764000700,"event":"bounce","type":"bounce","reason":"550 5.1.1 no such user","sg_event_id":"bl-2","sg_message_id":"sg-bounced2.filter0425p1las1-8268-5C79C5E1-11.0"},
             {"timestamp":1764000700,"event":"delivered","sg_event_id":"bl-3","sg_message_id":"sg-prefetched.filter0425p1las1-8268-5C79C5E1-12.0"},
             {"timestamp":1764000710,"event":"open","sg_machine_open":true,"sg_event_id":"bl-4","sg_message_id":"sg-prefetched.filter0425p1las1-8268-5C79C5E1-12.0"},
             {"timestamp":1764000720,"event":"open","sg_machine_open":false,"sg_event_id":"bl-5","sg_message_id":"sg-opened.filter0425p1las1-8268-5C79C5E1-13.0"},
             {"timestamp":1764000700,"event":"delivered","sg_event_id":"bl-6","sg_message_id":"14c5d75ce93.dfd.64b469.filter0001p1las1-16816-5A023E36-1.0"}]
            """;
        var timestamp = SendGridNow();

        var (status, receipt) = await PostAsync($"/webhooks/sendgrid/{company}", Json(body),
            ("X-Twilio-Email-Event-Webhook-Signature", SendGridSignature(key, timestamp, body)), ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp));

        Assert.Equal((HttpStatusCode.OK, 5, 5), (status, receipt!.Received, receipt.Applied));
        Assert.Equal(("FAILED", "SendGrid blocked: 550 5.7.1 sender IP listed on a blocklist"), ((await RowAsync(blocked)).Status, (await RowAsync(blocked)).Error));
        Assert.Equal(("BOUNCED", "SendGrid bounce: 550 5.1.1 no such user"), ((await RowAsync(bounced)).Status, (await RowAsync(bounced)).Error));
        Assert.Equal(("DELIVERED", null), ((await RowAsync(prefetched)).Status, (await RowAsync(prefetched)).Read));
        Assert.Equal("READ", (await RowAsync(opened)).Status);
        Assert.Equal("DELIVERED", (await RowAsync(older)).Status);
    }

    [Fact]
    public async Task A_bounce_and_a_failure_of_one_email_leave_it_bounced_whichever_comes_first()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var company = await CompanyAsync("email_provider = 'SENDGRID', email_webhook_secret_encrypted = $2", Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()));
        var blockedFirst = await SentMessageAsync(company, "SENDGRID", "sg-order-1", "EMAIL");
        var bouncedFirst = await SentMessageAsync(company, "SENDGRID", "sg-order-2", "EMAIL");
        foreach (var body in new[]
        {
            """
            [{"timestamp":1764000700,"event":"bounce","type":"blocked","reason":"550 5.7.1 blocklisted","sg_event_id":"or-1","sg_message_id":"sg-order-1.filter0425p1las1-1"},
             {"timestamp":1764000700,"event":"bounce","type":"bounce","reason":"550 5.1.1 no such user","sg_event_id":"or-2","sg_message_id":"sg-order-2.filter0425p1las1-2"}]
            """,
            """
            [{"timestamp":1764000800,"event":"bounce","type":"bounce","reason":"550 5.1.1 no such user","sg_event_id":"or-3","sg_message_id":"sg-order-1.filter0425p1las1-1"},
             {"timestamp":1764000800,"event":"bounce","type":"blocked","reason":"550 5.7.1 blocklisted","sg_event_id":"or-4","sg_message_id":"sg-order-2.filter0425p1las1-2"}]
            """,
        })
        {
            var timestamp = SendGridNow();
            Assert.Equal(HttpStatusCode.OK, (await PostAsync($"/webhooks/sendgrid/{company}", Json(body),
                ("X-Twilio-Email-Event-Webhook-Signature", SendGridSignature(key, timestamp, body)), ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp))).Status);
        }

        Assert.Equal(("BOUNCED", "SendGrid bounce: 550 5.1.1 no such user"), ((await RowAsync(blockedFirst)).Status, (await RowAsync(blockedFirst)).Error));
        Assert.Equal(("BOUNCED", "SendGrid bounce: 550 5.1.1 no such user"), ((await RowAsync(bouncedFirst)).Status, (await RowAsync(bouncedFirst)).Error));
        // Each failed when its bounce says.
        var failedAt = await TestData.ScalarAsync<long[]>(db.DataSource,
            "SELECT array_agg(extract(epoch FROM failed_at)::bigint ORDER BY id) FROM communication_logs WHERE id IN ($1, $2)", blockedFirst, bouncedFirst);
        Assert.Equal([1764000800L, 1764000700L], failedAt);
    }

    [Fact]
    public async Task A_whatsapp_status_with_a_timestamp_beyond_any_date_is_applied_at_its_receipt()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.FAR1");
        var body = WhatsAppStatus("wamid.FAR1", "delivered", 99999999999999);
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);

        var (status, receipt) = await PostAsync($"/webhooks/whatsapp/{company}", Json(body), HubSignature("meta-app-secret", body));

        Assert.Equal((HttpStatusCode.OK, 1), (status, receipt!.Applied));
        var row = await RowAsync(id);
        Assert.Equal("DELIVERED", row.Status);
        Assert.InRange(row.Delivered!.Value, before, DateTimeOffset.UtcNow.AddSeconds(1));
    }

    [Fact]
    public async Task A_webhook_body_over_a_megabyte_is_refused_even_when_sent_without_a_length()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");

        var (status, _) = await PostAsync($"/webhooks/whatsapp/{company}", new UnknownLengthContent(new string(' ', 1024 * 1024 + 1)), ("Transfer-Encoding", "chunked"));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
    }

    /// <summary>A body whose length is not told in advance (sent chunked).</summary>
    private sealed class UnknownLengthContent(string text) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(Encoding.UTF8.GetBytes(text)).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    [Fact]
    public async Task A_bounce_and_a_delivery_go_by_their_own_times_and_a_delivery_beats_a_failure_whatever_order_they_arrive_in()
    {
        var ses = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);
        const string Accepted = "0109019af1c2d3e4-5f6a7b8c-abab-4cdc-8ded-efefefefefef-000000", Reordered = "0109019af1c2d3e4-5f6a7b8c-cdcd-4efe-8faf-010101010101-000000";
        var bounced = await SentMessageAsync(ses, "AWS_SES", Accepted, "EMAIL");
        var reordered = await SentMessageAsync(ses, "AWS_SES", Reordered, "EMAIL");
        var whatsApp = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var late = await SentMessageAsync(whatsApp, "WHATSAPP_BUSINESS_API", "wamid.LATE1");
        var older = await SentMessageAsync(whatsApp, "WHATSAPP_BUSINESS_API", "wamid.OLDER1");
        var first = await SentMessageAsync(whatsApp, "WHATSAPP_BUSINESS_API", "wamid.FIRST1");
        var seen = await SentMessageAsync(whatsApp, "WHATSAPP_BUSINESS_API", "wamid.SEEN1");

        // The recipient's server accepted the mail (SES Delivery, 10:14:57), then bounced it (10:14:58)…
        await PostAsync($"/webhooks/ses/{ses}", SnsMessage("Notification", SesDelivery(Accepted)));
        var (_, bounce) = await PostAsync($"/webhooks/ses/{ses}", SnsMessage("Notification", SesBounce(Accepted)));
        // …and the same two reports arriving the other way round.
        await PostAsync($"/webhooks/ses/{ses}", SnsMessage("Notification", SesBounce(Reordered)));
        var (_, earlierDelivery) = await PostAsync($"/webhooks/ses/{ses}", SnsMessage("Notification", SesDelivery(Reordered)));
        // A failure, then a delivery report made later (a carrier's late report); one made before the failure, arriving after it;
        // and the same two the other way round: each message ends DELIVERED, as the order of arrival must not decide.
        const string Undeliverable = ""","errors":[{"code":131026,"title":"Message undeliverable"}]""";
        foreach (var body in new[]
        {
            WhatsAppStatus("wamid.LATE1", "failed", 1764000300, Undeliverable), WhatsAppStatus("wamid.LATE1", "delivered", 1764000400),
            WhatsAppStatus("wamid.OLDER1", "failed", 1764000300, Undeliverable), WhatsAppStatus("wamid.OLDER1", "delivered", 1764000200),
            WhatsAppStatus("wamid.FIRST1", "delivered", 1764000200), WhatsAppStatus("wamid.FIRST1", "failed", 1764000300, Undeliverable),
            WhatsAppStatus("wamid.SEEN1", "failed", 1764000300, Undeliverable), WhatsAppStatus("wamid.SEEN1", "read", 1764000200),
        })
        {
            await PostAsync($"/webhooks/whatsapp/{whatsApp}", Json(body), HubSignature("meta-app-secret", body));
        }

        Assert.Equal((1, 1, 0, 0, 0), (bounce!.Received, bounce.Applied, bounce.Stale, bounce.Duplicates, bounce.UnknownMessages));
        var row = await RowAsync(bounced);
        Assert.Equal(("BOUNCED", "SES bounce (Permanent/General): smtp; 550 5.1.1 user unknown"), (row.Status, row.Error));
        Assert.NotNull(row.Delivered);
        Assert.Equal(1, earlierDelivery!.Stale);
        Assert.Equal(("BOUNCED", "SES bounce (Permanent/General): smtp; 550 5.1.1 user unknown"), ((await RowAsync(reordered)).Status, (await RowAsync(reordered)).Error));
        var delivered = await RowAsync(late);
        Assert.Equal(("DELIVERED", null), (delivered.Status, delivered.Error));
        Assert.False(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT failed_at IS NOT NULL FROM communication_logs WHERE id = $1", late));
        foreach (var (message, at) in new[] { (older, 1764000200L), (first, 1764000200L) })
        {
            var row2 = await RowAsync(message);
            Assert.Equal(("DELIVERED", null, DateTimeOffset.FromUnixTimeSeconds(at)), (row2.Status, row2.Error, row2.Delivered));
            Assert.False(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT failed_at IS NOT NULL FROM communication_logs WHERE id = $1", message));
        }
        Assert.Equal(("READ", null), ((await RowAsync(seen)).Status, (await RowAsync(seen)).Error));
    }

    [Fact]
    public async Task After_a_replay_the_earlier_sends_late_reports_no_longer_move_the_message()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.REPLAYED1");
        const string Undeliverable = ""","errors":[{"code":131026,"title":"Message undeliverable"}]""";
        var failed = WhatsAppStatus("wamid.REPLAYED1", "failed", 1764000300, Undeliverable);
        await PostAsync($"/webhooks/whatsapp/{company}", Json(failed), HubSignature("meta-app-secret", failed));
        await new MessageReplay(db.DataSource, TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<MessageReplay>.Instance)
            .ReplayAsync(new ReplayFilter { CompanyId = company, MessageId = id }, "ops-cli", TestContext.Current.CancellationToken);
        // The resend is refused (outside the 24-hour window) without a new id, as the worker records it.
        await TestData.ScalarAsync<int>(db.DataSource,
            "UPDATE communication_logs SET status = 'FAILED', failed_at = now(), error_message = 'WhatsApp 131047: Re-engagement message' WHERE id = $1 RETURNING 1", id);

        var late = WhatsAppStatus("wamid.REPLAYED1", "delivered", 1764000400);
        var (_, receipt) = await PostAsync($"/webhooks/whatsapp/{company}", Json(late), HubSignature("meta-app-secret", late));

        Assert.Equal(1, receipt!.UnknownMessages);
        Assert.Equal(("FAILED", "WhatsApp 131047: Re-engagement message"), ((await RowAsync(id)).Status, (await RowAsync(id)).Error));
    }

    // --- Temporary failures reported after the send ------------------------------------------------

    /// <summary>A message SENT by its first attempt, which cost ₹0.78 (as the worker records a send).</summary>
    private async Task<long> SentWithCostAsync(Guid company, string provider, string providerMessageId, int retryCount = 0)
    {
        var id = await SentMessageAsync(company, provider, providerMessageId);
        await using var command = db.DataSource.CreateCommand("""
            WITH m AS (UPDATE communication_logs SET cost = 0.78, cost_currency = 'INR', attempt_count = 1, retry_count = $3 WHERE company_id = $1 AND id = $2)
            INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, provider_name, outcome, cost, cost_currency)
            VALUES ($2, $1, 1, 'WHATSAPP', 'x', 'SENT', 0.78, 'INR')
            """);
        command.Parameters.AddWithValue(company);
        command.Parameters.AddWithValue(id);
        command.Parameters.AddWithValue(retryCount);
        await command.ExecuteNonQueryAsync();
        return id;
    }

    private sealed record Requeued(string Status, int RetryCount, DateTimeOffset? NextAttemptAt, string? ProviderMessageId, string? StatusReason, string? Error, decimal? Cost);

    private async Task<Requeued> RequeuedAsync(long id)
    {
        await using var command = db.DataSource.CreateCommand(
            "SELECT status, retry_count, next_attempt_at, provider_message_id, status_reason, error_message, cost FROM communication_logs WHERE id = $1");
        command.Parameters.AddWithValue(id);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return new Requeued(reader.GetString(0), reader.GetInt32(1), Optional(reader, 2), reader.IsDBNull(3) ? null : reader.GetString(3),
            reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5), reader.IsDBNull(6) ? null : reader.GetDecimal(6));
    }

    private static string MetaFailure(string wamid, long timestamp, int code, string title) =>
        WhatsAppStatus(wamid, "failed", timestamp, $",\"errors\":[{{\"code\":{code},\"title\":\"{title}\"}}]");

    [Fact]
    public async Task A_spam_rate_limit_reported_after_the_send_sends_the_message_again_after_the_backoff_once_however_often_it_is_reported()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var id = await SentWithCostAsync(company, "WHATSAPP_BUSINESS_API", "wamid.SPAM1");
        var report = MetaFailure("wamid.SPAM1", 1764000300, 131048, "Spam rate limit hit");
        var again = MetaFailure("wamid.SPAM1", 1764000301, 131048, "Spam rate limit hit");   // the same failure under another event key

        var before = DateTimeOffset.UtcNow;
        var (_, first) = await PostAsync($"/webhooks/whatsapp/{company}", Json(report), HubSignature("meta-app-secret", report));
        var after = DateTimeOffset.UtcNow;
        var (_, redelivered) = await PostAsync($"/webhooks/whatsapp/{company}", Json(report), HubSignature("meta-app-secret", report));
        var (_, reportedAgain) = await PostAsync($"/webhooks/whatsapp/{company}", Json(again), HubSignature("meta-app-secret", again));

        Assert.Equal((1, 1, 1), (first!.Applied, redelivered!.Duplicates, reportedAgain!.UnknownMessages));
        var row = await RequeuedAsync(id);
        // PENDING again, the account's condition waited out as an outage is (no retry used up, one
        // outage attempt counted), due after the dispatcher's first backoff (30 s × 1.618 ± 10 %).
        Assert.Equal(("PENDING", 0, null), (row.Status, row.RetryCount, row.ProviderMessageId));
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "SELECT outage_attempts FROM communication_logs WHERE id = $1", id));
        Assert.InRange(row.NextAttemptAt!.Value, before + TimeSpan.FromSeconds(43), after + TimeSpan.FromSeconds(54));
        Assert.Equal("WhatsApp 131048: Spam rate limit hit", row.Error);
        Assert.StartsWith("the provider reported after taking it that the send failed for a temporary reason (WhatsApp 131048: Spam rate limit hit); sent again: waiting out the account's condition (1 of 50 attempts that use up no retries) at ", row.StatusReason, StringComparison.Ordinal);
        // Meta charges nothing for a failed message: the send's cost is waived, once.
        Assert.Equal(0m, row.Cost);
        Assert.Equal((0m, 0.78m), (await TestData.ScalarAsync<decimal>(db.DataSource, "SELECT cost FROM communication_attempts WHERE message_id = $1 AND outcome = 'SENT'", id),
            await TestData.ScalarAsync<decimal>(db.DataSource, "SELECT waived_cost FROM communication_attempts WHERE message_id = $1 AND outcome = 'SENT'", id)));
        // The attempt history says why, under the send it is about; no provider call is counted.
        Assert.Equal("1 TRANSIENT_FAILURE reported after the send: WhatsApp 131048: Spam rate limit hit", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT attempt_no || ' ' || outcome || ' ' || error_message FROM communication_attempts WHERE message_id = $1 AND outcome <> 'SENT'", id));
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "SELECT attempt_count FROM communication_logs WHERE id = $1", id));
    }

    [Fact]
    public async Task A_temporary_failure_reported_before_the_worker_recorded_the_send_sends_it_again_when_applied()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var report = MetaFailure("wamid.EARLYT", 1764000500, 130429, "Rate limit hit");
        var (_, waiting) = await PostAsync($"/webhooks/whatsapp/{company}", Json(report), HubSignature("meta-app-secret", report));
        var id = await SentWithCostAsync(company, "WHATSAPP_BUSINESS_API", "wamid.EARLYT");

        Assert.Equal(1, waiting!.UnknownMessages);
        Assert.Equal(1, await api.Services.GetRequiredService<DeliveryEventRecorder>().ApplyWaitingAsync(["wamid.EARLYT"], TestContext.Current.CancellationToken));
        // Waited out as the account's condition, as when reported after the recording (the stored signal keeps the kind).
        Assert.Equal(("PENDING", 0, 0m), ((await RequeuedAsync(id)).Status, (await RequeuedAsync(id)).RetryCount, (await RequeuedAsync(id)).Cost));
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "SELECT outage_attempts FROM communication_logs WHERE id = $1", id));
    }

    [Fact]
    public async Task A_temporary_failure_reported_by_gupshup_or_twilio_sends_the_message_again_and_another_code_fails_it()
    {
        var gupshup = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-t1a3");
        var wallet = await SentMessageAsync(gupshup, "GUPSHUP", "a0b1c2d3-0000-4aaa-8bbb-000000001003");
        var rateLimited = await SentMessageAsync(gupshup, "GUPSHUP", "a0b1c2d3-0000-4aaa-8bbb-000000004001");
        var undeliverable = await SentMessageAsync(gupshup, "GUPSHUP", "a0b1c2d3-0000-4aaa-8bbb-000000001002");
        var path = $"/webhooks/gupshup/{gupshup}?token=gs-callback-token-t1a3";
        await PostAsync(path, GupshupEvent("failed", "a0b1c2d3-0000-4aaa-8bbb-000000001003", detail: "{\"code\":1003,\"reason\":\"Wallet Balance Low\"}"));
        await PostAsync(path, GupshupEvent("failed", "a0b1c2d3-0000-4aaa-8bbb-000000004001", detail: "{\"code\":4001,\"reason\":\"API Rate Limited\"}"));
        await PostAsync(path, GupshupEvent("failed", "a0b1c2d3-0000-4aaa-8bbb-000000001002", detail: "{\"code\":1002,\"reason\":\"Number Does Not Exists On WhatsApp\"}"));

        var twilio = await CompanyAsync("whatsapp_provider = 'TWILIO', whatsapp_api_key_encrypted = $2", "twilio-auth-token");
        var queued = await SentMessageAsync(twilio, "TWILIO", "SM30001aaaaaaaaaaaaaaaaaaaaaaaaaaa");
        var form = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["ErrorCode"] = "30001", ["MessageSid"] = "SM30001aaaaaaaaaaaaaaaaaaaaaaaaaaa", ["MessageStatus"] = "failed" };
        var signed = $"{client.BaseAddress}webhooks/twilio/{twilio}" + string.Concat(form.Select(p => p.Key + p.Value));
        await PostAsync($"/webhooks/twilio/{twilio}", new FormUrlEncodedContent(form),
            ("X-Twilio-Signature", Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes("twilio-auth-token"), Encoding.UTF8.GetBytes(signed)))));

        Assert.Equal(("PENDING", 0), ((await RequeuedAsync(wallet)).Status, (await RequeuedAsync(wallet)).RetryCount));
        // Gupshup's 4001 says to stop sending and contact Gupshup: final.
        Assert.Equal("FAILED", (await RequeuedAsync(rateLimited)).Status);
        Assert.Equal(("PENDING", 0, "Twilio 30001: message failed"), ((await RequeuedAsync(queued)).Status, (await RequeuedAsync(queued)).RetryCount, (await RequeuedAsync(queued)).Error));
        Assert.Equal(("FAILED", 0), ((await RequeuedAsync(undeliverable)).Status, (await RequeuedAsync(undeliverable)).RetryCount));
    }

    [Fact]
    public async Task A_temporary_failure_reported_late_changes_nothing_delivered_nor_a_message_being_sent_again_and_fails_one_out_of_retries()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        var delivered = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.LATE1");
        var inFlight = await SentMessageAsync(company, "WHATSAPP_BUSINESS_API", "wamid.LATE2");
        var spent = await SentWithCostAsync(company, "WHATSAPP_BUSINESS_API", "wamid.LATE3", retryCount: 3);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET outage_attempts = 50 WHERE id = $1 RETURNING 1", spent);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET status = 'DELIVERED', delivered_at = now() WHERE id = $1 RETURNING 1", delivered);
        // Claimed by a worker for its next attempt (a row is PENDING while it is sent again).
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET status = 'PENDING', locked_by = 'worker-7', locked_until = now() + interval '1 minute' WHERE id = $1 RETURNING 1", inFlight);

        foreach (var wamid in new[] { "wamid.LATE1", "wamid.LATE2", "wamid.LATE3" })
        {
            var report = MetaFailure(wamid, 1764000400, 130429, "Rate limit hit");
            await PostAsync($"/webhooks/whatsapp/{company}", Json(report), HubSignature("meta-app-secret", report));
        }

        Assert.Equal(("DELIVERED", 0), ((await RequeuedAsync(delivered)).Status, (await RequeuedAsync(delivered)).RetryCount));
        Assert.Equal(("PENDING", 0, "wamid.LATE2"), ((await RequeuedAsync(inFlight)).Status, (await RequeuedAsync(inFlight)).RetryCount, (await RequeuedAsync(inFlight)).ProviderMessageId));
        // Past its outage budget and out of retries (3 of 3 used): failed, as any failure report does.
        Assert.Equal(("FAILED", "WhatsApp 130429: Rate limit hit"), ((await RequeuedAsync(spent)).Status, (await RequeuedAsync(spent)).Error));
    }

    [Fact]
    public async Task A_temporary_failure_reported_late_resolves_preferred_again_keeps_the_retry_limit_and_fails_a_cleared_message()
    {
        var company = await CompanyAsync(WhatsAppCompany, "meta-app-secret");
        // Sent to the customer's channel of the day (WhatsApp) for a PREFERRED request.
        var preferred = await SentWithCostAsync(company, "WHATSAPP_BUSINESS_API", "wamid.PREF1");
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET requested_channel = 'PREFERRED' WHERE id = $1 RETURNING 1", preferred);
        // A SQL producer's max_retries of 1,000, ten retries spent: the limit is 10, as the worker reads it.
        var greedy = await SentWithCostAsync(company, "WHATSAPP_BUSINESS_API", "wamid.GREEDY1", retryCount: 10);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET max_retries = 1000 WHERE id = $1 RETURNING 1", greedy);
        // Its text cleared by content retention: nothing is left to send again.
        var cleared = await SentWithCostAsync(company, "WHATSAPP_BUSINESS_API", "wamid.CLEARED1");
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET content = '', content_redacted_at = now() WHERE id = $1 RETURNING 1", cleared);

        foreach (var wamid in new[] { "wamid.PREF1", "wamid.GREEDY1", "wamid.CLEARED1" })
        {
            var report = MetaFailure(wamid, 1764000600, 131056, "Pair rate limit hit");
            var (status, _) = await PostAsync($"/webhooks/whatsapp/{company}", Json(report), HubSignature("meta-app-secret", report));
            Assert.Equal(HttpStatusCode.OK, status);
        }

        Assert.Equal(("PENDING", "PREFERRED"), ((await RequeuedAsync(preferred)).Status, await TestData.ScalarAsync<string>(db.DataSource, "SELECT channel FROM communication_logs WHERE id = $1", preferred)));
        Assert.Equal("FAILED", (await RequeuedAsync(greedy)).Status);
        Assert.Equal("FAILED", (await RequeuedAsync(cleared)).Status);
    }

    // --- Gupshup ----------------------------------------------------------------------------------

    private static StringContent GupshupEvent(string kind, string id, string? gsId = null, string? detail = null)
    {
        var payload = new System.Text.Json.Nodes.JsonObject { ["id"] = id, ["type"] = kind, ["destination"] = "919876543210" };
        if (gsId is not null)
        {
            payload["gsId"] = gsId;
        }
        payload["payload"] = System.Text.Json.Nodes.JsonNode.Parse(detail ?? """{"ts":1764570000}""");
        var root = new System.Text.Json.Nodes.JsonObject
        {
            ["app"] = "RaoAssociates", ["timestamp"] = 1764570000000, ["version"] = 2, ["type"] = "message-event", ["payload"] = payload,
        };
        return Json(root.ToJsonString());
    }

    [Fact]
    public async Task Gupshup_callbacks_with_the_companys_token_move_the_message_by_gupshups_message_id()
    {
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-5c1f");
        var read = await SentMessageAsync(company, "GUPSHUP", "ee4a68a0-1203-4c85-8dc3-49d0b3226a35");
        var failed = await SentMessageAsync(company, "GUPSHUP", "59f8db86-c0bb-4d5c-9b1b-8a3d1b0e8a11");
        var path = $"/webhooks/gupshup/{company}?token=gs-callback-token-5c1f";

        var (_, delivered) = await PostAsync(path, GupshupEvent("delivered", "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSQUY", gsId: "ee4a68a0-1203-4c85-8dc3-49d0b3226a35"));
        var (_, seen) = await PostAsync(path, GupshupEvent("read", "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSQUY", gsId: "ee4a68a0-1203-4c85-8dc3-49d0b3226a35"));
        var (_, enqueued) = await PostAsync(path, GupshupEvent("enqueued", "59f8db86-c0bb-4d5c-9b1b-8a3d1b0e8a11"));
        var (_, refused) = await PostAsync(path, GupshupEvent("failed", "59f8db86-c0bb-4d5c-9b1b-8a3d1b0e8a11", detail: "{\"code\":1002,\"reason\":\"Number Does Not Exists On WhatsApp\"}"));

        Assert.Equal((1, 1, 0, 1), (delivered!.Applied, seen!.Applied, enqueued!.Received, refused!.Applied));
        var row = await RowAsync(read);
        Assert.Equal("READ", row.Status);
        Assert.NotNull(row.Delivered);
        Assert.Equal(("FAILED", "Gupshup 1002: Number Does Not Exists On WhatsApp"), ((await RowAsync(failed)).Status, (await RowAsync(failed)).Error));
    }

    [Fact]
    public async Task A_gupshup_failure_whatsapp_reported_is_matched_by_gsid_not_by_the_whatsapp_id_in_id()
    {
        // Gupshup's DLR events (a failure WhatsApp reported, as sent/delivered/read) name WhatsApp's
        // message id in "id" and Gupshup's messageId, which our send stored, in "gsId".
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-a7d2");
        var id = await SentMessageAsync(company, "GUPSHUP", "7a1c0d3e-5b2f-4c6d-9e8f-0a1b2c3d4e5f");

        var (_, receipt) = await PostAsync($"/webhooks/gupshup/{company}?token=gs-callback-token-a7d2",
            GupshupEvent("failed", "wamid.HBgMOTE5ODc2NTQzMjEwFQIAERgSQkE", gsId: "7a1c0d3e-5b2f-4c6d-9e8f-0a1b2c3d4e5f", detail: "{\"code\":131026,\"reason\":\"Message undeliverable\"}"));

        Assert.Equal((1, 0), (receipt!.Applied, receipt.UnknownMessages));
        Assert.Equal(("FAILED", "Gupshup 131026: Message undeliverable"), ((await RowAsync(id)).Status, (await RowAsync(id)).Error));
    }

    private static StringContent GupshupV3(string statuses) => Json(
        "{\"gs_app_id\":\"82ed52f4-30c0-4f12-81b4-e7ad07bd41de\",\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"WABA\",\"changes\":[{\"field\":\"messages\","
        + $"\"value\":{{\"messaging_product\":\"whatsapp\",\"statuses\":[{statuses}]}}}}]}}]}}");

    [Fact]
    public async Task Gupshup_v3_callbacks_in_metas_shape_move_the_message_by_gs_id()
    {
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-v3c9");
        var read = await SentMessageAsync(company, "GUPSHUP", "2baff204-c39a-4121-90b5-f53f26d522b3");
        var failed = await SentMessageAsync(company, "GUPSHUP", "3cb0e315-d4ab-4232-a1c6-064037e633c4");
        var path = $"/webhooks/gupshup/{company}?token=gs-callback-token-v3c9";

        var (_, enqueued) = await PostAsync(path, GupshupV3(
            "{\"gs_id\":\"2baff204-c39a-4121-90b5-f53f26d522b3\",\"id\":\"wamid.HBgMOTE5MTYzODA1ODczFQIAERgSNkZC\",\"recipient_id\":\"919163805873\",\"status\":\"enqueued\",\"timestamp\":1764570000000}"));
        var (_, seen) = await PostAsync(path, GupshupV3(
            "{\"gs_id\":\"2baff204-c39a-4121-90b5-f53f26d522b3\",\"id\":\"wamid.HBgMOTE5MTYzODA1ODczFQIAERgSNkZC\",\"recipient_id\":\"919163805873\",\"status\":\"read\",\"timestamp\":1764570060000}"));
        var (_, refused) = await PostAsync(path, GupshupV3(
            "{\"gs_id\":\"3cb0e315-d4ab-4232-a1c6-064037e633c4\",\"id\":\"wamid.HBgMOTE5MTYzODA1ODczFQIAERgSNkZD\",\"recipient_id\":\"919163805873\",\"status\":\"failed\",\"timestamp\":\"1764570070\","
            + "\"errors\":[{\"code\":131026,\"title\":\"Message undeliverable\"}]}"));

        Assert.Equal((0, 1, 1), (enqueued!.Received, seen!.Applied, refused!.Applied));
        var row = await RowAsync(read);
        Assert.Equal(("READ", DateTimeOffset.FromUnixTimeMilliseconds(1764570060000)), (row.Status, row.Read));
        Assert.Equal(("FAILED", "Gupshup 131026: Message undeliverable"), ((await RowAsync(failed)).Status, (await RowAsync(failed)).Error));
    }

    [Fact]
    public async Task An_event_moves_only_messages_its_own_provider_sent_whatever_id_it_names()
    {
        // Whoever holds the company's Gupshup callback URL (its token travels in the query) must
        // not be able to fail the company's invoice email by naming that email's SES id.
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-31ab");
        var email = await SentMessageAsync(company, "AWS_SES", "0109019af1c2d3e4-aaaa-4bbb-cccc-000000000042-000000", "EMAIL");
        var whatsApp = await SentMessageAsync(company, "GUPSHUP", "0109019af1c2d3e4-aaaa-4bbb-cccc-000000000043-000000");

        var (_, forged) = await PostAsync($"/webhooks/gupshup/{company}?token=gs-callback-token-31ab",
            GupshupEvent("failed", "0109019af1c2d3e4-aaaa-4bbb-cccc-000000000042-000000", detail: "{\"code\":1002,\"reason\":\"forged\"}"));
        var (_, own) = await PostAsync($"/webhooks/gupshup/{company}?token=gs-callback-token-31ab",
            GupshupEvent("read", "0109019af1c2d3e4-aaaa-4bbb-cccc-000000000043-000000"));

        Assert.Equal((0, 1), (forged!.Applied, forged.UnknownMessages));
        Assert.Equal("SENT", (await RowAsync(email)).Status);
        Assert.Equal(1, own!.Applied);
        Assert.Equal("READ", (await RowAsync(whatsApp)).Status);
    }

    [Fact]
    public async Task A_gupshup_failure_with_metas_stopped_marketing_code_stops_general_updates_on_whatsapp()
    {
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-9d0e");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543210");
        var id = await SentMessageAsync(company, "GUPSHUP", "f6a7b8c9-3333-4eee-8fff-0123456789ab", to: customer);

        var (_, receipt) = await PostAsync($"/webhooks/gupshup/{company}?token=gs-callback-token-9d0e",
            GupshupEvent("failed", "f6a7b8c9-3333-4eee-8fff-0123456789ab", detail: "{\"code\":131050,\"reason\":\"Recipient has chosen to stop receiving marketing messages\"}"));

        Assert.Equal(1, receipt!.Applied);
        Assert.Equal("FAILED", (await RowAsync(id)).Status);
        Assert.Equal("{WHATSAPP}/false", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT general_updates_opt_out_channels::text || '/' || general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", customer));
    }

    [Fact]
    public async Task A_gupshup_opted_out_failure_withdraws_the_whatsapp_opt_in_of_a_customer_the_row_names_by_external_id()
    {
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-77aa");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543210", externalId: "CLIENT-0042");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "sms_opt_in = true, whatsapp_opt_in = true");
        // Their opt-in, recorded before the provider's signal (the events below are of 2025-12-01): withdrawn.
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by, recorded_at) VALUES ($1, $2, 'WHATSAPP', true, 'api', 'test', '2025-11-01') RETURNING 1", company, customer);
        // Resuming general updates on WhatsApp after the signal is no opt-in to the channel.
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by) VALUES ($1, $2, 'GENERAL_UPDATES', 'WHATSAPP', true, 'resumed', 'test') RETURNING 1", company, customer);
        var id = await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, status, sent_at, provider_name, provider_message_id)
            VALUES ($1, 'CLIENT-0042', 'INVOICE', 'WHATSAPP', 'x', 'SENT', now(), 'GUPSHUP', 'c1d2e3f4-0000-4aaa-8bbb-0123456789ab') RETURNING id
            """, company);
        var other = await SentMessageAsync(company, "GUPSHUP", "d4e5f6a7-1111-4ccc-9ddd-0123456789ab");
        var otherCustomer = await TestData.ScalarAsync<Guid>(db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", other);
        await Outbox.SetPreferencesAsync(db.DataSource, otherCustomer, "whatsapp_opt_in = true");
        // A customer who opted in again after the provider's (late-arriving) signal keeps the new opt-in.
        var returning = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543212");
        await Outbox.SetPreferencesAsync(db.DataSource, returning, "whatsapp_opt_in = true");
        await TestData.ScalarAsync<int>(db.DataSource,
            "INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by) VALUES ($1, $2, 'WHATSAPP', true, 'api', 'test') RETURNING 1", company, returning);
        await SentMessageAsync(company, "GUPSHUP", "e5f6a7b8-2222-4ddd-8eee-0123456789ab", to: returning);
        var path = $"/webhooks/gupshup/{company}?token=gs-callback-token-77aa";

        var (_, late) = await PostAsync(path, GupshupEvent("failed", "e5f6a7b8-2222-4ddd-8eee-0123456789ab", detail: "{\"code\":1012,\"reason\":\"User opted out\"}"));
        var (_, optedOut) = await PostAsync(path, GupshupEvent("failed", "c1d2e3f4-0000-4aaa-8bbb-0123456789ab", detail: "{\"code\":1012,\"reason\":\"User opted out\"}"));
        var (_, notOnWhatsApp) = await PostAsync(path, GupshupEvent("failed", "d4e5f6a7-1111-4ccc-9ddd-0123456789ab", detail: "{\"code\":1002,\"reason\":\"Number Does Not Exists On WhatsApp\"}"));

        Assert.Equal((1, 1), (optedOut!.Applied, notOnWhatsApp!.Applied));
        Assert.StartsWith("Gupshup 1012: User opted out", (await RowAsync(id)).Error, StringComparison.Ordinal);
        Assert.Equal("true/false", await OptInsAsync(customer));
        Assert.Equal("WHATSAPP/true/api/test,GENERAL_UPDATES:WHATSAPP/true/resumed/test,WHATSAPP/false/provider opt-out/GUPSHUP", await ConsentsAsync(customer));
        // Any other failure is about the message, not the customer's consent.
        Assert.Equal("false/true", await OptInsAsync(otherCustomer));
        Assert.Equal("", await ConsentsAsync(otherCustomer));
        Assert.Equal(1, late!.Applied);
        Assert.Equal("false/true", await OptInsAsync(returning));
        Assert.Equal("WHATSAPP/true/api/test", await ConsentsAsync(returning));
    }

    [Fact]
    public async Task A_provider_opt_out_queues_behind_a_held_customer_lock_before_touching_the_preferences()
    {
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-31c9");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company, whatsApp: "+919876543213");
        await Outbox.SetPreferencesAsync(db.DataSource, customer, "whatsapp_opt_in = true");
        await SentMessageAsync(company, "GUPSHUP", "f6a7b8c9-3333-4eee-9fff-0123456789ab", to: customer);
        var ct = TestContext.Current.CancellationToken;

        // A preference change in progress holds the customer's lock (as the API's PUT takes it).
        await using var api = await db.DataSource.OpenConnectionAsync(ct);
        await using var change = await api.BeginTransactionAsync(ct);
        await using (var lockCustomer = new NpgsqlCommand("SELECT 1 FROM customers WHERE id = $1 FOR NO KEY UPDATE", api, change))
        {
            lockCustomer.Parameters.AddWithValue(customer);
            await lockCustomer.ExecuteScalarAsync(ct);
        }
        var callback = PostAsync($"/webhooks/gupshup/{company}?token=gs-callback-token-31c9",
            GupshupEvent("failed", "f6a7b8c9-3333-4eee-9fff-0123456789ab", detail: "{\"code\":1012,\"reason\":\"User opted out\"}"));
        var waited = Stopwatch.StartNew();
        while (await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))", api.ProcessID) == 0)
        {
            Assert.False(callback.IsCompleted, "the opt-out did not wait for the customer's lock");
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), "the opt-out never blocked on the customer's lock");
            await Task.Delay(10, ct);
        }
        // While it waits it holds no lock on the preferences the API is about to write (the order
        // that deadlocked: preferences first, then the customer for the consent record's key).
        await using (var probe = db.DataSource.CreateCommand("SELECT 1 FROM communication_preferences WHERE customer_id = $1 FOR UPDATE NOWAIT"))
        {
            probe.Parameters.AddWithValue(customer);
            Assert.Equal(1, await probe.ExecuteScalarAsync(ct));
        }
        await change.CommitAsync(ct);

        Assert.Equal(1, (await callback).Receipt!.Applied);
        Assert.Equal("WHATSAPP/false/provider opt-out/GUPSHUP", await ConsentsAsync(customer));
    }

    [Fact]
    public async Task A_gupshup_callback_without_the_token_or_for_another_provider_changes_nothing()
    {
        var company = await CompanyAsync("whatsapp_provider = 'GUPSHUP', whatsapp_webhook_secret_encrypted = $2", "gs-callback-token-5c1f");
        var id = await SentMessageAsync(company, "GUPSHUP", "ee4a68a0-1203-4c85-8dc3-49d0b3226a35");
        var cloud = await CompanyAsync(WhatsAppCompany, "gs-callback-token-5c1f");
        StringContent Bounce() => GupshupEvent("failed", "ee4a68a0-1203-4c85-8dc3-49d0b3226a35", detail: "{\"code\":1012,\"reason\":\"opted out\"}");

        var (none, _) = await PostAsync($"/webhooks/gupshup/{company}", Bounce());
        var (wrong, _) = await PostAsync($"/webhooks/gupshup/{company}?token=gs-callback-token-5c1e", Bounce());
        var (otherProvider, _) = await PostAsync($"/webhooks/gupshup/{cloud}?token=gs-callback-token-5c1f", Bounce());
        // Nor does a Gupshup company's token (a secret that travels in a URL) sign the Cloud API route.
        var body = WhatsAppStatus("ee4a68a0-1203-4c85-8dc3-49d0b3226a35", "failed", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        var (asCloud, _) = await PostAsync($"/webhooks/whatsapp/{company}", Json(body), HubSignature("gs-callback-token-5c1f", body));

        Assert.Equal([HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized], new[] { none, wrong, otherProvider, asCloud });
        Assert.Equal("SENT", (await RowAsync(id)).Status);
    }

    // --- MessageBird (Conversations) --------------------------------------------------------------

    /// <summary>A MessageBird-Signature-JWT as MessageBird signs it: HS256 over url_hash and payload_hash.</summary>
    /// <summary>As MessageBird signs: no payload_hash for a request without a body (the SMS reports' GET).</summary>
    private static (string, string) MessageBirdJwt(string signingKey, string url, string? body, DateTimeOffset now)
    {
        static string Part(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        static string Hex(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
        var header = Part(Encoding.UTF8.GetBytes("""{"alg":"HS256","typ":"JWT"}"""));
        var claimSet = new Dictionary<string, object>
        {
            ["iss"] = "MessageBird", ["nbf"] = now.ToUnixTimeSeconds(), ["exp"] = now.ToUnixTimeSeconds() + 60, ["jti"] = Guid.NewGuid().ToString(), ["url_hash"] = Hex(url),
        };
        if (body is not null)
        {
            claimSet["payload_hash"] = Hex(body);
        }
        var claims = Part(Encoding.UTF8.GetBytes(System.Text.Json.JsonSerializer.Serialize(claimSet)));
        var signature = Part(HMACSHA256.HashData(Encoding.UTF8.GetBytes(signingKey), Encoding.ASCII.GetBytes($"{header}.{claims}")));
        return ("MessageBird-Signature-JWT", $"{header}.{claims}.{signature}");
    }

    private static string MessageBirdUpdate(string id, string status, string? error = null) => $$$"""
        {"type":"message.updated","contact":{"id":"9354647c5c144a2b4c99f2n42497249","msisdn":919876543210},
         "message":{"id":"{{{id}}}","conversationId":"2e15efafec384e1c82e9842075e87beb","platform":"whatsapp","to":"+919876543210",
                    "channelId":"619747f69cf940a98fb443140ce9aed2","type":"text","direction":"sent","status":"{{{status}}}",
                    "createdDatetime":"2026-12-06T09:00:00Z","updatedDatetime":"2026-12-06T09:00:05Z"{{{error}}}}}
        """;

    [Fact]
    public async Task MessageBird_message_updates_signed_with_the_companys_key_move_the_message()
    {
        var company = await CompanyAsync("whatsapp_provider = 'MESSAGEBIRD', whatsapp_webhook_secret_encrypted = $2", "mb-signing-key-7f2e");
        var id = await SentMessageAsync(company, "MESSAGEBIRD", "ebd5a1f63c2f4aa2a0d9a9bd34ab9d77");
        var failed = await SentMessageAsync(company, "MESSAGEBIRD", "0b9f1d9c47c84d9fa5b4a2f1e9d3c7aa");
        var path = $"/webhooks/messagebird/{company}";
        var url = $"http://localhost{path}";

        var delivered = MessageBirdUpdate("ebd5a1f63c2f4aa2a0d9a9bd34ab9d77", "delivered");
        var (status, receipt) = await PostAsync(path, Json(delivered), MessageBirdJwt("mb-signing-key-7f2e", url, delivered, DateTimeOffset.UtcNow));
        var rejected = MessageBirdUpdate("0b9f1d9c47c84d9fa5b4a2f1e9d3c7aa", "rejected", ""","error":{"code":470,"description":"Message failed to send because more than 24 hours have passed"}""");
        await PostAsync(path, Json(rejected), MessageBirdJwt("mb-signing-key-7f2e", url, rejected, DateTimeOffset.UtcNow));

        Assert.Equal((HttpStatusCode.OK, 1), (status, receipt!.Applied));
        Assert.Equal("DELIVERED", (await RowAsync(id)).Status);
        Assert.Equal(("FAILED", "MessageBird rejected 470: Message failed to send because more than 24 hours have passed"), ((await RowAsync(failed)).Status, (await RowAsync(failed)).Error));
    }

    [Fact]
    public async Task A_messagebird_update_signed_with_another_key_for_another_url_or_too_late_changes_nothing()
    {
        var company = await CompanyAsync("whatsapp_provider = 'MESSAGEBIRD', whatsapp_webhook_secret_encrypted = $2", "mb-signing-key-7f2e");
        var id = await SentMessageAsync(company, "MESSAGEBIRD", "ebd5a1f63c2f4aa2a0d9a9bd34ab9d77");
        var path = $"/webhooks/messagebird/{company}";
        var body = MessageBirdUpdate("ebd5a1f63c2f4aa2a0d9a9bd34ab9d77", "failed");

        var (otherKey, _) = await PostAsync(path, Json(body), MessageBirdJwt("another-key", $"http://localhost{path}", body, DateTimeOffset.UtcNow));
        var (otherUrl, _) = await PostAsync(path, Json(body), MessageBirdJwt("mb-signing-key-7f2e", "http://localhost/webhooks/messagebird/elsewhere", body, DateTimeOffset.UtcNow));
        var (stale, _) = await PostAsync(path, Json(body), MessageBirdJwt("mb-signing-key-7f2e", $"http://localhost{path}", body, DateTimeOffset.UtcNow.AddMinutes(-10)));
        var (unsigned, _) = await PostAsync(path, Json(body));

        Assert.Equal([HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized], new[] { otherKey, otherUrl, stale, unsigned });
        Assert.Equal("SENT", (await RowAsync(id)).Status);
    }

    private async Task<(HttpStatusCode Status, Receipt? Receipt)> GetAsync(string pathAndQuery, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, pathAndQuery);
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        using var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        return (response.StatusCode, response.IsSuccessStatusCode ? await response.Content.ReadFromJsonAsync<Receipt>(TestContext.Current.CancellationToken) : null);
    }

    [Fact]
    public async Task MessageBird_sms_delivery_reports_by_signed_get_move_the_message_and_nothing_else_is_accepted()
    {
        var company = await CompanyAsync("sms_provider = 'MESSAGEBIRD', sms_webhook_secret_encrypted = $2", "mb-signing-key-7f2e");
        var delivered = await SentMessageAsync(company, "MESSAGEBIRD", "b5d424244a5b4fd0b5b5728bccaafbeb", "SMS");
        var failed = await SentMessageAsync(company, "MESSAGEBIRD", "c6e535355b6c5ae1c6c6839cddbbacfc", "SMS");
        var path = $"/webhooks/messagebird-sms/{company}";
        var deliveredReport = $"{path}?id=b5d424244a5b4fd0b5b5728bccaafbeb&reference=42&recipient=919876543210&status=delivered&statusReason=successfully%20delivered&statusErrorCode=&statusDatetime=2026-12-06T10%3A15%3A07%2B05%3A30";
        var failedReport = $"{path}?id=c6e535355b6c5ae1c6c6839cddbbacfc&reference=43&recipient=919876543211&status=delivery_failed&statusReason=unknown%20subscriber&statusErrorCode=104&statusDatetime=2026-12-06T04%3A45%3A09%2B00%3A00";
        string Url(string pathAndQuery) => $"http://localhost{pathAndQuery}";

        var (unsigned, _) = await GetAsync(deliveredReport);
        var (otherKey, _) = await GetAsync(deliveredReport, MessageBirdJwt("another-key", Url(deliveredReport), null, DateTimeOffset.UtcNow));
        var (otherQuery, _) = await GetAsync(failedReport, MessageBirdJwt("mb-signing-key-7f2e", Url(deliveredReport), null, DateTimeOffset.UtcNow));
        Assert.Equal([HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized], new[] { unsigned, otherKey, otherQuery });
        Assert.Equal("SENT", (await RowAsync(delivered)).Status);

        var (status, receipt) = await GetAsync(deliveredReport, MessageBirdJwt("mb-signing-key-7f2e", Url(deliveredReport), null, DateTimeOffset.UtcNow));
        var (_, failure) = await GetAsync(failedReport, MessageBirdJwt("mb-signing-key-7f2e", Url(failedReport), null, DateTimeOffset.UtcNow));

        Assert.Equal((HttpStatusCode.OK, 1, 1), (status, receipt!.Applied, failure!.Applied));
        var row = await RowAsync(delivered);
        Assert.Equal(("DELIVERED", new DateTimeOffset(2026, 12, 6, 4, 45, 7, TimeSpan.Zero)), (row.Status, row.Delivered));
        Assert.Equal(("FAILED", "MessageBird SMS delivery_failed 104: unknown subscriber"), ((await RowAsync(failed)).Status, (await RowAsync(failed)).Error));
        // The recipient is in each stored key as a hash keyed by the encryption key, and in no payload.
        var keys = api.Services.GetRequiredService<WebhookEventKeys>();
        Assert.Equal(
            $"b5d424244a5b4fd0b5b5728bccaafbeb:{keys.Part("919876543210")}:delivered,c6e535355b6c5ae1c6c6839cddbbacfc:{keys.Part("919876543211")}:delivery_failed",
            await TestData.ScalarAsync<string>(db.DataSource, "SELECT string_agg(event_key, ',' ORDER BY id) FROM webhook_events WHERE company_id = $1", company));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1 AND payload LIKE '%98765432%'", company));
        // Only this webhook takes GET, and it takes nothing else.
        var (post, _) = await PostAsync(path, new StringContent(""));
        var (twilioGet, _) = await GetAsync($"/webhooks/twilio/{company}?MessageSid=SM1&MessageStatus=delivered");
        Assert.Equal((HttpStatusCode.NotFound, HttpStatusCode.NotFound), (post, twilioGet));
    }

    // --- Mailgun and Resend ----------------------------------------------------------------------

    [Fact]
    public async Task Mailgun_delivered_event_matches_the_message_id_with_or_without_angle_brackets()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var id = await SentMessageAsync(company, "MAILGUN", "<20261124.abc@mg.practice.example>", "EMAIL");

        var (_, receipt) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "delivered", "20261124.abc@mg.practice.example"));

        Assert.Equal(1, receipt!.Applied);
        Assert.Equal("DELIVERED", (await RowAsync(id)).Status);
    }

    [Fact]
    public async Task A_mailgun_permanent_failure_bounces_only_an_address_that_was_refused()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var refused = await SentMessageAsync(company, "MAILGUN", "<20261207.refused@mg.practice.example>", "EMAIL");
        var unsubscribed = await SentMessageAsync(company, "MAILGUN", "<20261207.unsub@mg.practice.example>", "EMAIL");
        var old = await SentMessageAsync(company, "MAILGUN", "<20261207.old@mg.practice.example>", "EMAIL");
        async Task Fail(string messageId, string failure) =>
            await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "failed", messageId, failure));

        await Fail("20261207.refused@mg.practice.example", """ "reason":"bounce","delivery-status":{"code":550,"message":"5.1.1 The email account that you tried to reach does not exist"} """);
        await Fail("20261207.unsub@mg.practice.example", """ "reason":"suppress-unsubscribe","delivery-status":{"code":605,"message":"Not delivering to previously unsubscribed address"} """);
        await Fail("20261207.old@mg.practice.example", """ "reason":"old","delivery-status":{"code":498,"message":"Too old"} """);

        Assert.Equal(("BOUNCED", "Mailgun failed (bounce) 550: 5.1.1 The email account that you tried to reach does not exist"), ((await RowAsync(refused)).Status, (await RowAsync(refused)).Error));
        Assert.Equal(("FAILED", "Mailgun failed (suppress-unsubscribe) 605: Not delivering to previously unsubscribed address"), ((await RowAsync(unsubscribed)).Status, (await RowAsync(unsubscribed)).Error));
        Assert.Equal(("FAILED", "Mailgun failed (old) 498: Too old"), ((await RowAsync(old)).Status, (await RowAsync(old)).Error));
    }

    [Fact]
    public async Task A_spam_complaint_stops_general_updates_once_and_changes_no_status()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);   // no preferences yet: the defaults
        var invoice = await SentMessageAsync(company, "MAILGUN", "<20261206.inv@mg.practice.example>", "EMAIL", to: customer);
        var update = await SentMessageAsync(company, "MAILGUN", "<20261206.upd@mg.practice.example>", "EMAIL", to: customer);

        var (_, first) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "complained", "20261206.upd@mg.practice.example"));
        var (_, second) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "complained", "20261206.inv@mg.practice.example"));
        var (_, unknown) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "complained", "20261206.nobody@mg.practice.example"));

        Assert.Equal((1, 1, 1), (first!.Applied, second!.Applied, unknown!.UnknownMessages));
        Assert.Equal(("SENT", "SENT"), ((await RowAsync(invoice)).Status, (await RowAsync(update)).Status));
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT general_updates_opt_out AND email_opt_in FROM communication_preferences WHERE customer_id = $1", customer));
        Assert.Equal("GENERAL_UPDATES:ALL/false/spam complaint: no more general updates/MAILGUN", await ConsentsAsync(customer));
        Assert.Equal("COMPLAINED", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(DISTINCT status, ',') FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_complaint_about_a_message_to_a_customer_deleted_since_is_recorded_for_when_they_return()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await SentMessageAsync(company, "MAILGUN", "<20261207.gone@mg.practice.example>", "EMAIL", to: customer);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE customers SET deleted_at = now() WHERE id = $1 RETURNING 1", customer);

        var (_, receipt) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "complained", "20261207.gone@mg.practice.example"));

        Assert.Equal(1, receipt!.Applied);
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", customer));
        Assert.Equal("GENERAL_UPDATES:ALL/false/spam complaint: no more general updates/MAILGUN", await ConsentsAsync(customer));
    }

    [Fact]
    public async Task An_unsubscribe_through_the_email_providers_own_link_stops_general_updates_and_a_later_complaint_adds_nothing()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await SentMessageAsync(company, "MAILGUN", "<20261206.news@mg.practice.example>", "EMAIL", to: customer);

        var (_, unsubscribed) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "unsubscribed", "20261206.news@mg.practice.example"));
        var (_, complained) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow, "complained", "20261206.news@mg.practice.example"));

        Assert.Equal((1, 1), (unsubscribed!.Applied, complained!.Applied));
        Assert.Equal("GENERAL_UPDATES:ALL/false/unsubscribed through the email provider's link: no more general updates/MAILGUN", await ConsentsAsync(customer));
        Assert.Equal("COMPLAINED,UNSUBSCRIBED", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(status, ',' ORDER BY status) FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_complaint_does_not_undo_a_resubscription_made_after_it()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var before = await TestData.CreateCustomerAsync(db.DataSource, company);
        var after = await TestData.CreateCustomerAsync(db.DataSource, company);
        await SentMessageAsync(company, "MAILGUN", "<20261206.before@mg.practice.example>", "EMAIL", to: before);
        await SentMessageAsync(company, "MAILGUN", "<20261206.after@mg.practice.example>", "EMAIL", to: after);
        var complainedAt = DateTimeOffset.UtcNow.AddMinutes(-2);
        // What the preferences PUT records when a practice re-subscribes a customer: one of them
        // before the complaint was made, the other after it (the complaint reaches us late).
        foreach (var (customer, at) in new[] { (before, complainedAt.AddMinutes(-1)), (after, complainedAt.AddMinutes(1)) })
        {
            await TestData.ScalarAsync<int>(db.DataSource, """
                INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
                VALUES ($1, $2, 'GENERAL_UPDATES', NULL, true, 'api', 'crm-key', $3) RETURNING 1
                """, company, customer, at);
        }

        await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", complainedAt, "complained", "20261206.before@mg.practice.example"));
        await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", complainedAt, "complained", "20261206.after@mg.practice.example"));

        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT general_updates_opt_out FROM communication_preferences WHERE customer_id = $1", before));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", after));
        Assert.Equal("GENERAL_UPDATES:ALL/true/api/crm-key", await ConsentsAsync(after));
    }

    [Fact]
    public async Task SendGrid_spam_reports_and_group_unsubscribes_stop_general_updates()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var company = await CompanyAsync("email_provider = 'SENDGRID', email_webhook_secret_encrypted = $2", Convert.ToBase64String(key.ExportSubjectPublicKeyInfo()));
        var reporter = await TestData.CreateCustomerAsync(db.DataSource, company);
        var leaver = await TestData.CreateCustomerAsync(db.DataSource, company);
        await SentMessageAsync(company, "SENDGRID", "a1b2c3d4e5", "EMAIL", to: reporter);
        await SentMessageAsync(company, "SENDGRID", "f6a7b8c9d0", "EMAIL", to: leaver);
        var body = """[{"email":"client@example.com","timestamp":1764000800,"event":"spamreport","sg_event_id":"c3BhbXJlcG9ydA","sg_message_id":"a1b2c3d4e5.filter0001.1.1"},{"email":"client@example.com","timestamp":1764000801,"event":"group_unsubscribe","asm_group_id":42,"sg_event_id":"Z3JvdXB1bnN1Yg","sg_message_id":"f6a7b8c9d0.filter0001.1.2"}]""";
        var timestamp = SendGridNow();
        var signature = SendGridSignature(key, timestamp, body);

        var (_, receipt) = await PostAsync($"/webhooks/sendgrid/{company}", new StringContent(body, Encoding.UTF8, "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", signature), ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp));

        Assert.Equal((2, 2), (receipt!.Received, receipt.Applied));
        Assert.Equal("GENERAL_UPDATES:ALL/false/spam complaint: no more general updates/SENDGRID", await ConsentsAsync(reporter));
        Assert.Equal("GENERAL_UPDATES:ALL/false/unsubscribed through the email provider's link: no more general updates/SENDGRID", await ConsentsAsync(leaver));
    }

    [Fact]
    public async Task An_ses_complaint_through_sns_stops_general_updates()
    {
        var company = await CompanyAsync("email_provider = 'AWS_SES', email_webhook_secret_encrypted = $2", SesTopic);
        var id = await SentMessageAsync(company, "AWS_SES", "0109019af1c2d3e4-5f6a7b8c-cccc-4ddd-eeee-ffff00001111-000000", "EMAIL");
        var customer = await TestData.ScalarAsync<Guid>(db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", id);
        var complaint = """{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"client@example.com"}],"timestamp":"2026-12-06T10:20:00.000Z","feedbackId":"0102019a-cc","complaintFeedbackType":"abuse"},"mail":{"timestamp":"2026-12-06T10:14:55.000Z","source":"accounts@practice.example","messageId":"0109019af1c2d3e4-5f6a7b8c-cccc-4ddd-eeee-ffff00001111-000000","destination":["client@example.com"]}}""";

        var (_, receipt) = await PostAsync($"/webhooks/ses/{company}", SnsMessage("Notification", complaint));

        Assert.Equal(1, receipt!.Applied);
        Assert.Equal("SENT", (await RowAsync(id)).Status);
        Assert.Equal("GENERAL_UPDATES:ALL/false/spam complaint: no more general updates/SES", await ConsentsAsync(customer));
    }

    [Fact]
    public async Task A_mailgun_signature_is_accepted_through_mailguns_eight_hours_of_retries_and_refused_after_them_or_from_the_future()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var retried = await SentMessageAsync(company, "MAILGUN", "<20261124.retried@mg.practice.example>", "EMAIL");
        var old = await SentMessageAsync(company, "MAILGUN", "<20261124.old@mg.practice.example>", "EMAIL");

        // Mailgun retries an event our API did not take (at 5, 10, 15 minutes, 1, 2, 4 hours) with its first signature.
        var (fourHoursLate, _) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow.AddHours(-4), "failed", "20261124.retried@mg.practice.example"));
        var (tenHoursLate, _) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow.AddHours(-10), "failed", "20261124.old@mg.practice.example"));
        var (fromTheFuture, _) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent("mailgun-signing-key", DateTimeOffset.UtcNow.AddHours(1), "failed", "20261124.old@mg.practice.example"));

        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized), (fourHoursLate, tenHoursLate, fromTheFuture));
        Assert.Equal(("BOUNCED", "SENT"), ((await RowAsync(retried)).Status, (await RowAsync(old)).Status));
        // A replayed signature block is refused by its token for longer than that (A_mailgun_signature_is_accepted_again_with_its_own_body_only).
        Assert.True(WebhookNonces.Retention > MailgunWebhook.RetryWindow + TimeSpan.FromMinutes(5));
    }

    [Fact]
    public async Task A_mailgun_signature_is_accepted_again_with_its_own_body_only()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var delivered = await SentMessageAsync(company, "MAILGUN", "<20261124.seen@mg.practice.example>", "EMAIL");
        var target = await SentMessageAsync(company, "MAILGUN", "<20261124.target@mg.practice.example>", "EMAIL");
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(25));
        var genuine = MailgunBody("mailgun-signing-key", DateTimeOffset.UtcNow, token, "delivered", "20261124.seen@mg.practice.example");
        // The same signature block (seen in a log, say) under a forged bounce of another message, within the five minutes.
        var genuineEventId = System.Text.Json.JsonDocument.Parse(genuine).RootElement.GetProperty("event-data").GetProperty("id").GetString()!;
        var forged = genuine.Replace("\"delivered\"", "\"failed\"", StringComparison.Ordinal).Replace("20261124.seen@", "20261124.target@", StringComparison.Ordinal)
            .Replace(genuineEventId, Guid.NewGuid().ToString("N"), StringComparison.Ordinal); // a new event, not a redelivery of the genuine one

        var (first, applied) = await PostAsync($"/webhooks/mailgun/{company}", Json(genuine));
        var (redelivered, duplicate) = await PostAsync($"/webhooks/mailgun/{company}", Json(genuine));
        var (replayed, _) = await PostAsync($"/webhooks/mailgun/{company}", Json(forged));

        Assert.Equal((HttpStatusCode.OK, 1, HttpStatusCode.OK, 1), (first, applied!.Applied, redelivered, duplicate!.Duplicates));
        Assert.Equal(HttpStatusCode.Unauthorized, replayed);
        Assert.Equal(("DELIVERED", "SENT"), ((await RowAsync(delivered)).Status, (await RowAsync(target)).Status));
    }

    [Fact]
    public async Task A_mailgun_token_seen_at_one_company_carries_no_other_body_to_another_that_shares_the_signing_key()
    {
        // Two practices on one Mailgun account (or subaccounts verified with the primary key) share the signing key.
        var one = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "shared-mailgun-signing-key");
        var other = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "shared-mailgun-signing-key");
        var target = await SentMessageAsync(other, "MAILGUN", "<20261209.target@mg.practice.example>", "EMAIL");
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(25));
        var genuine = MailgunBody("shared-mailgun-signing-key", DateTimeOffset.UtcNow, token, "delivered", "20261209.seen@mg.practice.example");
        var genuineEventId = System.Text.Json.JsonDocument.Parse(genuine).RootElement.GetProperty("event-data").GetProperty("id").GetString()!;
        var forged = genuine.Replace("\"delivered\"", "\"failed\"", StringComparison.Ordinal).Replace("20261209.seen@", "20261209.target@", StringComparison.Ordinal)
            .Replace(genuineEventId, Guid.NewGuid().ToString("N"), StringComparison.Ordinal);

        var (first, _) = await PostAsync($"/webhooks/mailgun/{one}", Json(genuine));
        var (replayedElsewhere, _) = await PostAsync($"/webhooks/mailgun/{other}", Json(forged));
        var (sameBodyElsewhere, _) = await PostAsync($"/webhooks/mailgun/{other}", Json(genuine));

        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.Unauthorized), (first, replayedElsewhere));
        Assert.Equal("SENT", (await RowAsync(target)).Status);
        // The genuine event itself is no forgery wherever it is posted (it names its own message only).
        Assert.Equal(HttpStatusCode.OK, sameBodyElsewhere);
    }

    [Fact]
    public async Task A_mailgun_event_whose_user_variable_names_another_message_matches_none()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "mailgun-signing-key");
        var bounced = await SentMessageAsync(company, "MAILGUN", "<20261209.uv1@mg.practice.example>", "EMAIL");
        var other = await SentMessageAsync(company, "MAILGUN", "<20261209.uv2@mg.practice.example>", "EMAIL");
        const string failure = "\"reason\":\"bounce\",\"delivery-status\":{\"code\":550,\"message\":\"5.1.1 unknown user\"}";

        var (_, mismatched) = await PostAsync($"/webhooks/mailgun/{company}", Json(MailgunBody("mailgun-signing-key", DateTimeOffset.UtcNow,
            Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(25)), "failed", "20261209.uv2@mg.practice.example", failure, userVariables: $"{{\"outbox-message-id\":\"{bounced}\"}}")));
        var (_, matching) = await PostAsync($"/webhooks/mailgun/{company}", Json(MailgunBody("mailgun-signing-key", DateTimeOffset.UtcNow,
            Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(25)), "failed", "20261209.uv1@mg.practice.example", failure, userVariables: $"{{\"outbox-message-id\":\"{bounced}\"}}")));

        Assert.Equal((0, 1), (mismatched!.Applied, mismatched.UnknownMessages));
        Assert.Equal("SENT", (await RowAsync(other)).Status);
        Assert.Equal(1, matching!.Applied);
        Assert.Equal("BOUNCED", (await RowAsync(bounced)).Status);
    }

    [Fact]
    public async Task A_mailgun_subaccounts_event_verifies_with_the_primary_accounts_key_through_its_parent_signature()
    {
        var company = await CompanyAsync("email_provider = 'MAILGUN', email_webhook_secret_encrypted = $2", "primary-account-signing-key");
        var id = await SentMessageAsync(company, "MAILGUN", "<20261209.sub@mg.practice.example>", "EMAIL");
        string Signed(string parentKey)
        {
            var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(25));
            var body = MailgunBody("subaccount-signing-key", DateTimeOffset.UtcNow, token, "delivered", "20261209.sub@mg.practice.example");
            var timestamp = System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("signature").GetProperty("timestamp").GetString();
            var parent = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(parentKey), Encoding.UTF8.GetBytes(timestamp + token)));
            return body.Replace("\"signature\":{", $"\"signature\":{{\"parent-signature\":\"{parent}\",", StringComparison.Ordinal);
        }

        var (wrongParent, _) = await PostAsync($"/webhooks/mailgun/{company}", Json(Signed("someone-elses-key")));
        var (parentSigned, receipt) = await PostAsync($"/webhooks/mailgun/{company}", Json(Signed("primary-account-signing-key")));

        Assert.Equal((HttpStatusCode.Unauthorized, HttpStatusCode.OK, 1), (wrongParent, parentSigned, receipt?.Applied));
        Assert.Equal("DELIVERED", (await RowAsync(id)).Status);
    }

    [Fact]
    public async Task An_email_webhook_route_other_than_the_companys_provider_is_refused_even_when_signed_with_its_stored_key()
    {
        // A SendGrid company stores SendGrid's public verification key: anyone could sign a Mailgun or Resend body with it.
        using var sendGridKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var publicKey = Convert.ToBase64String(sendGridKey.ExportSubjectPublicKeyInfo());
        var company = await CompanyAsync("email_provider = 'SENDGRID', email_webhook_secret_encrypted = $2", publicKey);
        var id = await SentMessageAsync(company, "SENDGRID", "<sg.forged@practice.example>", "EMAIL");
        var body = """{"type":"email.bounced","created_at":"2026-11-24T10:00:00.000Z","data":{"email_id":"<sg.forged@practice.example>"}}""";
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var svix = "v1," + Convert.ToBase64String(HMACSHA256.HashData(Convert.FromBase64String(publicKey), Encoding.UTF8.GetBytes($"msg_9.{timestamp}.{body}")));

        var (mailgun, _) = await PostAsync($"/webhooks/mailgun/{company}", MailgunEvent(publicKey, DateTimeOffset.UtcNow, "failed", "sg.forged@practice.example"));
        var (resend, _) = await PostAsync($"/webhooks/resend/{company}", new StringContent(body, Encoding.UTF8, "application/json"),
            ("svix-id", "msg_9"), ("svix-timestamp", timestamp), ("svix-signature", svix));

        Assert.Equal((HttpStatusCode.Unauthorized, HttpStatusCode.Unauthorized), (mailgun, resend));
        Assert.Equal("SENT", (await RowAsync(id)).Status);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_svix_timestamp_beyond_any_date_is_refused_not_an_error()
    {
        var company = await CompanyAsync("email_provider = 'RESEND', email_webhook_secret_encrypted = $2", "whsec_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)));

        var (status, _) = await PostAsync($"/webhooks/resend/{company}", new StringContent("{}", Encoding.UTF8, "application/json"),
            ("svix-id", "msg_1"), ("svix-timestamp", "99999999999999"), ("svix-signature", "v1,AAAA"));

        Assert.Equal(HttpStatusCode.Unauthorized, status);
    }

    private static StringContent MailgunEvent(string signingKey, DateTimeOffset signedAt, string kind, string messageId, string? failure = null) =>
        Json(MailgunBody(signingKey, signedAt, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(25)), kind, messageId, failure));

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <param name="failure">For a failed event: its fields after <c>severity</c>, e.g. <c>"reason":"bounce","delivery-status":{…}</c>.</param>
    /// <param name="userVariables">The event's <c>user-variables</c> object, e.g. <c>{"outbox-message-id":"42"}</c>.</param>
    private static string MailgunBody(string signingKey, DateTimeOffset signedAt, string token, string kind, string messageId, string? failure = null, string? userVariables = null)
    {
        var timestamp = signedAt.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var signature = Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(signingKey), Encoding.UTF8.GetBytes(timestamp + token)));
        return $$$"""
            {"signature":{"timestamp":"{{{timestamp}}}","token":"{{{token}}}","signature":"{{{signature}}}"},
             "event-data":{"id":"{{{Guid.NewGuid():N}}}","event":"{{{kind}}}","severity":"permanent",{{{(failure is null ? "" : failure + ",")}}}{{{(userVariables is null ? "" : $"\"user-variables\":{userVariables},")}}}"timestamp":{{{timestamp}}}.5,
                           "message":{"headers":{"message-id":"{{{messageId}}}"} } } }
            """;
    }

    /// <summary>A Resend event signed as Svix signs it (id, timestamp and body, HMAC-SHA256 with the whsec_ key), now.</summary>
    private Task<(HttpStatusCode Status, Receipt? Receipt)> PostResendAsync(Guid company, byte[] secretKey, string svixId, string body)
    {
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var signature = "v1," + Convert.ToBase64String(HMACSHA256.HashData(secretKey, Encoding.UTF8.GetBytes($"{svixId}.{timestamp}.{body}")));
        return PostAsync($"/webhooks/resend/{company}", Json(body), ("svix-id", svixId), ("svix-timestamp", timestamp), ("svix-signature", signature));
    }

    [Fact]
    public async Task Resend_delivered_event_signed_by_svix_is_applied()
    {
        var secretKey = RandomNumberGenerator.GetBytes(24);
        var company = await CompanyAsync("email_provider = 'RESEND', email_webhook_secret_encrypted = $2", "whsec_" + Convert.ToBase64String(secretKey));
        var id = await SentMessageAsync(company, "RESEND", "4ef9a417-02e9-4d39-ad75-9611e0fcc33c", "EMAIL");
        var body = """{"type":"email.delivered","created_at":"2026-11-24T10:00:00.000Z","data":{"email_id":"4ef9a417-02e9-4d39-ad75-9611e0fcc33c","to":["client@example.com"]}}""";

        var (status, receipt) = await PostResendAsync(company, secretKey, "msg_1", body);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(1, receipt!.Applied);
        var row = await RowAsync(id);
        Assert.Equal(("DELIVERED", new DateTimeOffset(2026, 11, 24, 10, 0, 0, TimeSpan.Zero)), (row.Status, row.Delivered));
    }

    [Fact]
    public async Task A_resend_email_failed_records_resends_failed_reason()
    {
        var secretKey = RandomNumberGenerator.GetBytes(24);
        var company = await CompanyAsync("email_provider = 'RESEND', email_webhook_secret_encrypted = $2", "whsec_" + Convert.ToBase64String(secretKey));
        var id = await SentMessageAsync(company, "RESEND", "56761188-7520-42d8-8898-ff6fc54ce618", "EMAIL");
        // As Resend documents email.failed: the reason in data.failed.reason (not data.bounce, which only bounces carry).
        var body = """{"type":"email.failed","created_at":"2026-11-24T10:00:00.000Z","data":{"email_id":"56761188-7520-42d8-8898-ff6fc54ce618","to":["client@example.com"],"failed":{"reason":"domain_not_verified"}}}""";

        var (_, receipt) = await PostResendAsync(company, secretKey, "msg_failed_1", body);

        Assert.Equal(1, receipt!.Applied);
        Assert.Equal(("FAILED", "Resend email.failed: domain_not_verified"), ((await RowAsync(id)).Status, (await RowAsync(id)).Error));
    }

    [Fact]
    public async Task A_resend_email_suppressed_by_resend_fails_the_message()
    {
        var secretKey = RandomNumberGenerator.GetBytes(24);
        var company = await CompanyAsync("email_provider = 'RESEND', email_webhook_secret_encrypted = $2", "whsec_" + Convert.ToBase64String(secretKey));
        var id = await SentMessageAsync(company, "RESEND", "5af0b518-13fa-4e4a-be86-0722f1ddd44d", "EMAIL");
        var body = """{"type":"email.suppressed","created_at":"2026-11-24T10:00:00.000Z","data":{"email_id":"5af0b518-13fa-4e4a-be86-0722f1ddd44d","to":["client@example.com"]}}""";

        var (_, receipt) = await PostResendAsync(company, secretKey, "msg_2", body);

        Assert.Equal(1, receipt!.Applied);
        var row = await RowAsync(id);
        Assert.Equal("FAILED", row.Status);
        Assert.StartsWith("Resend email.suppressed: the address is on Resend's suppression list", row.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_provider_or_company_is_404()
    {
        var company = await CompanyAsync("email_provider = 'SMTP'");

        var (unknownProvider, _) = await PostAsync($"/webhooks/carrier-pigeon/{company}", new StringContent("{}"));
        var (unknownCompany, _) = await PostAsync($"/webhooks/whatsapp/{Guid.NewGuid()}", new StringContent("{}"));

        Assert.Equal(HttpStatusCode.NotFound, unknownProvider);
        Assert.Equal(HttpStatusCode.NotFound, unknownCompany);
    }
}
