using System.Net;
using Microsoft.Extensions.DependencyInjection;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Tests.Workflows;

namespace OutboxComms.Tests.Api;

public sealed class CustomerEndpointsTests(DatabaseFixture db) : ApiTest(db)
{
    [Fact]
    public async Task A_created_customer_has_its_numbers_in_E164_and_the_defaults_for_what_was_left_out()
    {
        using var client = await NewCompanyClientAsync();

        var (created, customer) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new
        {
            externalId = "CLIENT-77", name = "  Mehta Textiles Pvt Ltd ", email = "accounts@mehta.example", phone = "022 2345 6789", whatsAppNumber = "98765 43210",
        });

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = customer!["id"]!.GetValue<string>();
        Assert.Equal($"/v1/customers/{id}", created.Headers.Location!.OriginalString);
        Assert.Equal("Mehta Textiles Pvt Ltd", customer["name"]!.GetValue<string>());
        Assert.Equal("+912223456789", customer["phone"]!.GetValue<string>());
        Assert.Equal("+919876543210", customer["whatsAppNumber"]!.GetValue<string>());
        Assert.Equal("en", customer["preferredLanguage"]!.GetValue<string>());
        Assert.Equal("Asia/Kolkata", customer["timeZone"]!.GetValue<string>());
        Assert.Equal("+919876543210", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT whatsapp_number FROM customers WHERE id = $1", Guid.Parse(id)));

        var (read, again) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}");
        Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        foreach (var field in new[] { "id", "externalId", "name", "email", "phone", "whatsAppNumber", "preferredLanguage", "timeZone" })
        {
            Assert.Equal(customer[field]!.GetValue<string>(), again![field]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task A_client_list_is_imported_by_external_id_creating_or_replacing_each_and_again_it_changes_nothing()
    {
        using var client = await NewCompanyClientAsync();
        var existing = await CreateCustomerAsync(client, "CL/2026/003", "Iyer & Sons", "old@iyer.example");
        object[] list =
        [
            new { externalId = "CL/2026/001", name = "Mehta Textiles Pvt Ltd", email = "accounts@mehta.example", whatsAppNumber = "98765 43210" },
            new { externalId = "CL/2026/002", name = "Rao Foods LLP", phone = "022 2345 6789", timeZone = "America/New_York" },
            new { externalId = " CL/2026/003 ", name = "Iyer & Sons", email = "accounts@iyer.example" },
        ];

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new { customers = list });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal((2, 1, 0), (body!["created"]!.GetValue<int>(), body["updated"]!.GetValue<int>(), body["unchanged"]!.GetValue<int>()));
        Assert.Equal(["CREATED", "CREATED", "UPDATED"], body["customers"]!.AsArray().Select(c => c!["outcome"]!.GetValue<string>()));
        Assert.Equal(existing, body["customers"]![2]!["id"]!.GetValue<string>());
        var (_, mehta) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL%2F2026%2F001");
        Assert.Equal(("+919876543210", body["customers"]![0]!["id"]!.GetValue<string>()), (mehta!["whatsAppNumber"]!.GetValue<string>(), mehta["id"]!.GetValue<string>()));
        var (_, iyer) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{existing}");
        Assert.Equal("accounts@iyer.example", iyer!["email"]!.GetValue<string>());

        // The nightly sync sends the same list: nothing changes, not even updatedAt.
        var (again, repeat) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new { customers = list });
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal((0, 0, 3), (repeat!["created"]!.GetValue<int>(), repeat["updated"]!.GetValue<int>(), repeat["unchanged"]!.GetValue<int>()));
        var (_, iyerAgain) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{existing}");
        Assert.Equal(iyer["updatedAt"]!.GetValue<DateTimeOffset>(), iyerAgain!["updatedAt"]!.GetValue<DateTimeOffset>());
    }

    [Fact]
    public async Task A_client_list_saved_from_a_spreadsheet_is_imported_and_its_problems_are_named_by_line()
    {
        using var client = await NewCompanyClientAsync();
        async Task<(System.Net.HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body)> PostCsv(byte[] bytes)
        {
            using var content = new ByteArrayContent(bytes);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("text/csv");
            using var response = await client.PostAsync("/v1/customers/import/csv", content, TestContext.Current.CancellationToken);
            var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            return (response.StatusCode, text.Length == 0 ? null : System.Text.Json.Nodes.JsonNode.Parse(text));
        }
        static byte[] Utf8WithBom(string text) => [.. System.Text.Encoding.UTF8.GetPreamble(), .. System.Text.Encoding.UTF8.GetBytes(text)];

        var (status, body) = await PostCsv(Utf8WithBom(
            "Name,ExternalId,WhatsAppNumber,Email\r\n\"Iyer & Sons, Chennai\",CL-1,98765 43210,accounts@iyer.example\r\nमेहता टेक्सटाइल्स,CL-2,,\r\n"));

        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        Assert.Equal(["CREATED", "CREATED"], body!["customers"]!.AsArray().Select(c => c!["outcome"]!.GetValue<string>()));
        var (_, iyer) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1");
        Assert.Equal(("Iyer & Sons, Chennai", "+919876543210", "accounts@iyer.example"),
            (iyer!["name"]!.GetValue<string>(), iyer["whatsAppNumber"]!.GetValue<string>(), iyer["email"]!.GetValue<string>()));
        var (_, mehta) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-2");
        Assert.Equal(("मेहता टेक्सटाइल्स", null), (mehta!["name"]!.GetValue<string>(), mehta["email"]?.GetValue<string>()));

        // Line 3 has a bad address, line 4 a name with an unquoted comma; nothing of the file is stored.
        var (bad, problem) = await PostCsv(System.Text.Encoding.UTF8.GetBytes(
            "externalId,name,email\nCL-3,Rao Foods LLP,rao@foods.example\nCL-4,Bad address,not-an-address\nCL-5,Iyer & Sons, Madurai,\n"));
        WorkflowApi.AssertFields(new HttpResponseMessage(bad), problem, "lines[3].email", "lines[4]");
        var (missing, _) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-3");
        Assert.Equal(System.Net.HttpStatusCode.NotFound, missing.StatusCode);

        var (header, headerProblem) = await PostCsv(System.Text.Encoding.UTF8.GetBytes("client code,name\nCL-6,x\n"));
        WorkflowApi.AssertFields(new HttpResponseMessage(header), headerProblem, "header");
        var (latin1, latin1Problem) = await PostCsv(System.Text.Encoding.Latin1.GetBytes("externalId,name\nCL-7,Müller GmbH\n"));
        WorkflowApi.AssertFields(new HttpResponseMessage(latin1), latin1Problem, "file");
        // A BOM does not make Windows-1252 bytes pass, and Excel's plain CSV ('?' for Devanagari) is caught.
        var (bom, bomProblem) = await PostCsv([.. System.Text.Encoding.UTF8.GetPreamble(), .. System.Text.Encoding.Latin1.GetBytes("externalId,name\nCL-7,Müller GmbH\n")]);
        WorkflowApi.AssertFields(new HttpResponseMessage(bom), bomProblem, "file");
        var (plain, plainProblem) = await PostCsv(System.Text.Encoding.ASCII.GetBytes("externalId,name\nCL-8,????? ????????\n"));
        WorkflowApi.AssertFields(new HttpResponseMessage(plain), plainProblem, "lines[2].name");

        // A reload with fewer columns changes only those it has: CL-1 keeps its WhatsApp number; an empty cell clears.
        var (partial, reloaded) = await PostCsv(System.Text.Encoding.UTF8.GetBytes("externalId,name,email\nCL-1,\"Iyer & Sons, Chennai\",\n"));
        Assert.Equal(System.Net.HttpStatusCode.OK, partial);
        Assert.Equal("UPDATED", reloaded!["customers"]![0]!["outcome"]!.GetValue<string>());
        var (_, iyerAfter) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1");
        Assert.Equal(("+919876543210", null), (iyerAfter!["whatsAppNumber"]!.GetValue<string>(), iyerAfter["email"]?.GetValue<string>()));

        // Excel's trailing commas (its used range ran past the named columns) are no columns; a value under one is named.
        var (trailing, trailingBody) = await PostCsv(System.Text.Encoding.UTF8.GetBytes("externalId,name,,\r\nCL-10,Kapoor Traders,,\r\n"));
        Assert.Equal(System.Net.HttpStatusCode.OK, trailing);
        Assert.Equal("CREATED", trailingBody!["customers"]![0]!["outcome"]!.GetValue<string>());
        var (stray, strayProblem) = await PostCsv(System.Text.Encoding.UTF8.GetBytes("externalId,name,\nCL-11,Nair & Co,98470 12345\n"));
        WorkflowApi.AssertFields(new HttpResponseMessage(stray), strayProblem, "lines[2]");
        Assert.Contains("'98470 12345' in column 3", strayProblem!["errors"]!["lines[2]"]![0]!.GetValue<string>(), StringComparison.Ordinal);

        // JSON sent here, or CSV in another charset, is a 415.
        using var json = new StringContent("{\"customers\":[]}", System.Text.Encoding.UTF8, "application/json");
        Assert.Equal(System.Net.HttpStatusCode.UnsupportedMediaType, (await client.PostAsync("/v1/customers/import/csv", json, TestContext.Current.CancellationToken)).StatusCode);
        using var windows = new StringContent("externalId,name\nCL-9,x\n", System.Text.Encoding.Latin1, "text/csv");
        Assert.Equal(System.Net.HttpStatusCode.UnsupportedMediaType, (await client.PostAsync("/v1/customers/import/csv", windows, TestContext.Current.CancellationToken)).StatusCode);
    }

    [Fact]
    public async Task A_spreadsheet_sets_quiet_hours_and_reminder_frequency_and_names_the_column_of_a_bad_cell()
    {
        using var client = await NewCompanyClientAsync();
        async Task<(System.Net.HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body)> PostCsv(string csv)
        {
            using var content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(csv));
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("text/csv");
            using var response = await client.PostAsync("/v1/customers/import/csv", content, TestContext.Current.CancellationToken);
            var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            return (response.StatusCode, text.Length == 0 ? null : System.Text.Json.Nodes.JsonNode.Parse(text));
        }

        // Excel writes 9:00 for 09:00; a weekly reminder frequency in lower case.
        var (status, _) = await PostCsv("externalId,name,quietHoursStart,quietHoursEnd,reminderFrequency\nCL-1,Iyer & Sons,21:30,9:00,weekly\nCL-2,Rao Foods,,,\n");

        Assert.Equal(HttpStatusCode.OK, status);
        var (_, iyer) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1/preferences");
        Assert.Equal(("21:30", "09:00", "WEEKLY"), (iyer!["quietHours"]!["start"]!.GetValue<string>(), iyer["quietHours"]!["end"]!.GetValue<string>(), iyer["reminderFrequency"]!.GetValue<string>()));
        var (_, rao) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-2/preferences");
        Assert.Null(rao!["quietHours"]);

        // Empty cells keep them; "none" clears the quiet hours.
        Assert.Equal(HttpStatusCode.OK, (await PostCsv("externalId,name,quietHoursStart,quietHoursEnd\nCL-1,Iyer & Sons,,\n")).Status);
        Assert.Equal("21:30", (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1/preferences")).Body!["quietHours"]!["start"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, (await PostCsv("externalId,name,quietHoursStart,quietHoursEnd\nCL-1,Iyer & Sons,none,\n")).Status);
        Assert.Null((await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1/preferences")).Body!["quietHours"]);

        // Named by line and column; nothing of the file is stored.
        var (bad, problem) = await PostCsv("externalId,name,quietHoursStart,quietHoursEnd\nCL-3,Nair & Co,22:00,\nCL-4,Kapoor Traders,10 pm,7:00 am\n"
            + "CL-5,Shah & Co,22:00,22:00:30\nCL-6,Iyer & Sons,22:00,22:00:00\nCL-7,Rao Foods,none,07:00\n");
        WorkflowApi.AssertFields(new HttpResponseMessage(bad), problem, "lines[2].quietHoursEnd", "lines[3].quietHoursStart", "lines[3].quietHoursEnd",
            "lines[4].quietHoursEnd", "lines[5].quietHoursEnd", "lines[6].quietHoursEnd");
        var (frequency, frequencyProblem) = await PostCsv("externalId,name,reminderFrequency,reminderCron\nCL-3,Nair & Co,FORTNIGHTLY,\nCL-4,Kapoor Traders,CUSTOM,\n");
        WorkflowApi.AssertFields(new HttpResponseMessage(frequency), frequencyProblem, "lines[2].reminderFrequency", "lines[3].reminderCron");
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-3")).Response.StatusCode);
    }

    [Fact]
    public async Task An_import_sets_the_preferences_an_item_names_and_records_each_consent_once()
    {
        using var client = await NewCompanyClientAsync();
        var existing = await CreateCustomerAsync(client, "CL-EXISTING", "Iyer & Sons");
        object[] list =
        [
            new
            {
                externalId = "CL-NEW", name = "Mehta Textiles Pvt Ltd", whatsAppNumber = "98765 43210",
                preferences = new { whatsAppOptIn = true, complianceReminderChannel = "WHATSAPP", consentSource = "engagement letter 2026-04-01" },
            },
            new { externalId = "CL-EXISTING", name = "Iyer & Sons", email = "client@example.com" },
        ];

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new { customers = list });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(["CREATED", "UNCHANGED"], body!["customers"]!.AsArray().Select(c => c!["outcome"]!.GetValue<string>()));
        var (_, mehta) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-NEW/preferences");
        Assert.Equal((true, "WHATSAPP", "EMAIL", true), (mehta!["whatsAppOptIn"]!.GetValue<bool>(), mehta["complianceReminderChannel"]!.GetValue<string>(),
            mehta["invoiceDeliveryChannel"]!.GetValue<string>(), mehta["emailOptIn"]!.GetValue<bool>()));
        var (_, consents) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-NEW/consents");
        var consent = Assert.Single(consents!.AsArray());
        Assert.Equal(("CHANNEL", "WHATSAPP", true, "engagement letter 2026-04-01"),
            (consent!["scope"]!.GetValue<string>(), consent["channel"]!.GetValue<string>(), consent["optedIn"]!.GetValue<bool>(), consent["source"]!.GetValue<string>()));
        var (_, untouched) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{existing}/preferences");
        Assert.Null(untouched!["updatedAt"]?.GetValue<DateTimeOffset>());   // an item without preferences leaves them alone

        // The nightly sync sends the same list: nothing changes and no consent is recorded twice.
        var (_, again) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new { customers = list });
        Assert.Equal(["UNCHANGED", "UNCHANGED"], again!["customers"]!.AsArray().Select(c => c!["outcome"]!.GetValue<string>()));
        Assert.Single((await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-NEW/consents")).Body!.AsArray());

        // Only the preferences change: the customer is UPDATED, and the opt-out is recorded as the import's.
        var (_, optOut) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new
        {
            customers = new[] { new { externalId = "CL-EXISTING", name = "Iyer & Sons", email = "client@example.com", preferences = new { emailOptIn = false } } },
        });
        Assert.Equal("UPDATED", optOut!["customers"]![0]!["outcome"]!.GetValue<string>());
        var (_, iyer) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{existing}/preferences");
        Assert.False(iyer!["emailOptIn"]!.GetValue<bool>());
        var iyerConsent = Assert.Single((await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{existing}/consents")).Body!.AsArray());
        Assert.Equal(("EMAIL", false, "import"), (iyerConsent!["channel"]!.GetValue<string>(), iyerConsent["optedIn"]!.GetValue<bool>(), iyerConsent["source"]!.GetValue<string>()));
    }

    [Fact]
    public async Task An_import_with_a_bad_preference_stores_nothing_and_names_it()
    {
        using var client = await NewCompanyClientAsync();

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new
        {
            customers = new object[]
            {
                new { externalId = "CL-A", name = "Fine", preferences = new { smsOptIn = true } },
                new { externalId = "CL-B", name = "Cron without CUSTOM", preferences = new { reminderCron = "0 9 * * 1", invoiceDeliveryChannel = "FAX" } },
            },
        });

        WorkflowApi.AssertFields(response, problem, "customers[1].preferences.reminderCron", "customers[1].preferences.invoiceDeliveryChannel");
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-A")).Response.StatusCode);
    }

    [Fact]
    public async Task A_spreadsheet_sets_the_opt_ins_its_cells_state_and_an_empty_cell_leaves_one_as_it_is()
    {
        using var client = await NewCompanyClientAsync();
        async Task<(HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body)> PostCsv(string text)
        {
            using var content = new StringContent(text, System.Text.Encoding.UTF8, "text/csv");
            using var response = await client.PostAsync("/v1/customers/import/csv", content, TestContext.Current.CancellationToken);
            var answer = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            return (response.StatusCode, answer.Length == 0 ? null : System.Text.Json.Nodes.JsonNode.Parse(answer));
        }

        var (status, _) = await PostCsv(
            "externalId,name,whatsAppNumber,whatsAppOptIn,complianceReminderChannel,consentSource\n" +
            "CL-1,Mehta Silk Mills,98765 43210,TRUE,WhatsApp,signed engagement letter\n" +
            "CL-2,Rao Foods,,,,\n");

        Assert.Equal(HttpStatusCode.OK, status);
        var (_, mehta) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1/preferences");
        Assert.Equal((true, "WHATSAPP"), (mehta!["whatsAppOptIn"]!.GetValue<bool>(), mehta["complianceReminderChannel"]!.GetValue<string>()));
        var consent = Assert.Single((await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1/consents")).Body!.AsArray());
        Assert.Equal("signed engagement letter", consent!["source"]!.GetValue<string>());
        var (_, rao) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-2/preferences");
        Assert.Null(rao!["updatedAt"]?.GetValue<DateTimeOffset>());

        // An empty opt-in cell is no news: CL-1 stays opted in while its channel changes.
        var (reload, reloaded) = await PostCsv("externalId,name,whatsAppNumber,whatsAppOptIn,complianceReminderChannel\nCL-1,Mehta Silk Mills,98765 43210,,email\n");
        Assert.Equal((HttpStatusCode.OK, "UPDATED"), (reload, reloaded!["customers"]![0]!["outcome"]!.GetValue<string>()));
        var (_, after) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-1/preferences");
        Assert.Equal((true, "EMAIL"), (after!["whatsAppOptIn"]!.GetValue<bool>(), after["complianceReminderChannel"]!.GetValue<string>()));

        var (bad, problem) = await PostCsv("externalId,name,smsOptIn\nCL-3,Nair & Co,maybe\n");
        WorkflowApi.AssertFields(new HttpResponseMessage(bad), problem, "lines[2].smsOptIn");
        var (post, postProblem) = await PostCsv("externalId,name,invoiceDeliveryChannel\nCL-3,Nair & Co,POST\n");   // named by its column, as the file has it
        WorkflowApi.AssertFields(new HttpResponseMessage(post), postProblem, "lines[2].invoiceDeliveryChannel");
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL-3")).Response.StatusCode);
    }

    [Fact]
    public async Task An_erasure_deletes_the_customers_whatsapp_marketing_choices_and_the_idempotency_keys_of_single_sends_to_them()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var (created, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId = "CL-WA", name = "Shah & Co", whatsAppNumber = "+91 98765 43210" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var eventKeys = Api.Services.GetRequiredService<OutboxComms.Core.Webhooks.WebhookEventKeys>();
        // Keyed-hashed (now), plainly hashed (stored between 5f1bd20 and 0041), whole (before), and another client's.
        var plainlyHashed = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData("919876543210"u8))[..16];
        await TestData.ScalarAsync<int>(Db.DataSource, """
            INSERT INTO webhook_events (company_id, provider, event_key, status, outcome, payload)
            VALUES ($1, 'whatsapp', 'marketing:' || $2 || ':stop:1764000000', 'MARKETING_STOPPED', 'APPLIED', '{}'),
                   ($1, 'whatsapp', 'marketing:' || $3 || ':stop:1763500000', 'MARKETING_STOPPED', 'APPLIED', '{}'),
                   ($1, 'whatsapp', 'marketing:919876543210:resume:1763000000', 'MARKETING_RESUMED', 'APPLIED', '{}'),
                   ($1, 'whatsapp', 'marketing:919800000000:stop:1764000000', 'MARKETING_STOPPED', 'APPLIED', '{}')
            RETURNING 1
            """, company, eventKeys.Part("919876543210"), plainlyHashed);

        // A single send whose Idempotency-Key the practice built from the client code, and a bulk one.
        Assert.Equal(HttpStatusCode.Accepted, (await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            new { customerExternalId = "CL-WA", type = "INVOICE", channel = "EMAIL", subject = "Invoice", content = "Attached." },
            h => h.Add("Idempotency-Key", "invoice-CL-WA-42"))).Response.StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/bulk",
            new { messages = new[] { new { customerExternalId = "CL-WA", type = "GENERAL_UPDATE", channel = "EMAIL", subject = "News", content = "Hello" } } },
            h => h.Add("Idempotency-Key", "newsletter-2026-12"))).Response.StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/CL-WA/erase")).Response.StatusCode);

        Assert.Equal(["marketing:919800000000:stop:1764000000"], await TestData.ScalarAsync<string[]>(Db.DataSource,
            "SELECT array_agg(event_key) FROM webhook_events WHERE company_id = $1", company));
        Assert.Equal(["newsletter-2026-12"], await TestData.ScalarAsync<string[]>(Db.DataSource,
            "SELECT array_agg(key) FROM idempotency_keys WHERE company_id = $1", company));

        // A client without a WhatsApp number was matched by their phone, written nationally by a SQL producer.
        var byPhone = await TestData.CreateCustomerAsync(Db.DataSource, company);
        await TestData.ScalarAsync<int>(Db.DataSource, """
            WITH c AS (UPDATE customers SET phone = '098450 12345', whatsapp_number = NULL, external_id = 'CL-PH' WHERE id = $2 RETURNING 1)
            INSERT INTO webhook_events (company_id, provider, event_key, status, outcome, payload)
            SELECT $1, 'whatsapp', 'marketing:' || $3 || ':stop:1764000000', 'MARKETING_STOPPED', 'APPLIED', '{}' FROM c
            RETURNING 1
            """, company, byPhone, eventKeys.Part("919845012345"));
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/CL-PH/erase")).Response.StatusCode);
        Assert.Equal(["marketing:919800000000:stop:1764000000"], await TestData.ScalarAsync<string[]>(Db.DataSource,
            "SELECT array_agg(event_key) FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task An_erased_customer_leaves_no_contact_or_message_content_behind_while_consent_statuses_and_costs_stay()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var id = await CreateCustomerAsync(client, "ABCDE1234F", "Mehta Textiles", "accounts@mehta.example");
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { smsOptIn = true, consentSource = "signed letter" })).Response.StatusCode);
        var (_, accepted) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages", new
        {
            customerId = id, type = "INVOICE", channel = "EMAIL", subject = "Invoice for Mehta Textiles", content = "Dear Mehta Textiles, your invoice.",
            metadata = new { invoice = "INV-1042", reminderId = 7 },
            attachments = new[] { new { fileName = "INV-1042.pdf", contentType = "application/pdf", contentBase64 = "JVBERg==" } },
        });
        var sent = accepted!["messages"]![0]!["id"]!.GetValue<long>();
        var (_, pendingAnswer) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages", new { customerId = id, type = "GENERAL_UPDATE", channel = "EMAIL", subject = "News", content = "Hello Mehta" });
        var pending = pendingAnswer!["messages"]![0]!["id"]!.GetValue<long>();
        // The practice's own SQL names the client by its code only; the first message went out, failed once on the way, and was reported on.
        await TestData.ScalarAsync<int>(Db.DataSource, """
            WITH producer AS (INSERT INTO communication_logs (company_id, customer_external_id, type, channel, subject, content, status, metadata, idempotency_key)
                              VALUES ($1, 'ABCDE1234F', 'INVOICE', 'EMAIL', 'Statement', 'Statement for Mehta', 'FAILED', '["Mehta"]', 'statement-ABCDE1234F-2026-03') RETURNING 1),
                 done AS (UPDATE communication_logs SET status = 'SENT', cost = 0.25, cost_currency = 'INR', provider_message_id = 'sg-1', error_message = 'accounts@mehta.example deferred'
                           WHERE company_id = $1 AND id = $2 RETURNING 1),
                 attempt AS (INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, outcome, error_message)
                             VALUES ($2, $1, 1, 'EMAIL', 'TRANSIENT_FAILURE', '450 accounts@mehta.example mailbox busy') RETURNING 1),
                 event AS (INSERT INTO webhook_events (company_id, provider, event_key, provider_message_id, status, outcome, message_id, payload)
                           VALUES ($1, 'sendgrid', 'sg-1:delivered', 'sg-1', 'DELIVERED', 'APPLIED', $2, '{"email":"accounts@mehta.example"}') RETURNING 1)
            SELECT count(*)::int FROM producer, done, attempt, event
            """, company, sent);

        var (erased, erasure) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/ABCDE1234F/erase");

        Assert.Equal(HttpStatusCode.OK, erased.StatusCode);
        Assert.Equal((3, 1, 1), (erasure!["messages"]!.GetValue<int>(), erasure["attachments"]!.GetValue<int>(), erasure["webhookEvents"]!.GetValue<int>()));
        // Nothing of the client is left in any text of the company's rows…
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, """
            SELECT (SELECT count(*) FROM communication_logs m WHERE m.company_id = $1 AND (m::text ILIKE '%mehta%' OR m::text LIKE '%ABCDE1234F%' OR m.metadata ? 'invoice'))
                 + (SELECT count(*) FROM customers c WHERE c.company_id = $1 AND (c::text ILIKE '%mehta%' OR c::text LIKE '%ABCDE1234F%'))
                 + (SELECT count(*) FROM communication_attempts a WHERE a.company_id = $1 AND a::text ILIKE '%mehta%')
                 + (SELECT count(*) FROM communication_attachments f WHERE f.message_id = $2)
                 + (SELECT count(*) FROM webhook_events w WHERE w.company_id = $1)
            """, company, sent));
        // …while the consent evidence, each message's status and its cost stay, and the pending one will never go.
        Assert.Equal(1L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1", Guid.Parse(id)));
        Assert.Equal(("SENT", 0.25m), ((await Outbox.GetAsync(Db.DataSource, sent)).Status, (await Outbox.GetAsync(Db.DataSource, sent)).Cost!.Value));
        Assert.Equal("CANCELLED", (await Outbox.GetAsync(Db.DataSource, pending)).Status);
        Assert.Equal(7, await TestData.ScalarAsync<int>(Db.DataSource, "SELECT (metadata->>'reminderId')::int FROM communication_logs WHERE company_id = $1 AND id = $2", company, sent));
        // A late report about the sent one matches nothing now (unmatched reports go within a day).
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT provider_message_id IS NULL FROM communication_logs WHERE company_id = $1 AND id = $2", company, sent));

        // Gone for good: not found, not restorable; erasing again answers the first erasure; the client's code is free again.
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await client.SendJsonAsync(HttpMethod.Post, $"/v1/customers/{id}/restore")).Response.StatusCode);
        var (again, second) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/customers/{id}/erase");
        Assert.Equal((HttpStatusCode.OK, erasure["erasedAt"]!.GetValue<DateTimeOffset>()), (again.StatusCode, second!["erasedAt"]!.GetValue<DateTimeOffset>()));
        Assert.NotEqual(id, await CreateCustomerAsync(client, "ABCDE1234F", "Mehta Textiles (returning)"));
    }

    [Fact]
    public async Task A_put_with_the_etag_of_an_older_read_is_refused_and_changes_nothing()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CL-ETAG", "Iyer & Sons", "old@iyer.example");
        var (read, _) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}");
        var seen = read.Headers.ETag!.Tag;

        // The CRM fixes the email, reading first; the practice's clerk, from the same older read, fixes the name.
        var (fixedEmail, _) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}", new { externalId = "CL-ETAG", name = "Iyer & Sons", email = "accounts@iyer.example" },
            headers => headers.IfMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue(seen)));
        var (stale, problem) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}", new { externalId = "CL-ETAG", name = "Iyer and Sons LLP", email = "old@iyer.example" },
            headers => headers.IfMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue(seen)));
        var (fresh, _) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}", new { externalId = "CL-ETAG", name = "Iyer and Sons LLP", email = "accounts@iyer.example" },
            headers => headers.IfMatch.Add(fixedEmail.Headers.ETag!));

        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.PreconditionFailed, HttpStatusCode.OK), (fixedEmail.StatusCode, stale.StatusCode, fresh.StatusCode));
        Assert.Equal("application/problem+json", stale.Content.Headers.ContentType!.MediaType);
        Assert.NotEqual(seen, fixedEmail.Headers.ETag!.Tag);
        var (_, customer) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}");
        Assert.Equal(("Iyer and Sons LLP", "accounts@iyer.example"), (customer!["name"]!.GetValue<string>(), customer["email"]!.GetValue<string>()));
    }

    [Fact]
    public async Task An_import_racing_a_delete_of_one_of_its_customers_waits_for_it_and_then_refuses_that_item()
    {
        using var client = await NewCompanyClientAsync();
        var leaving = Guid.Parse(await CreateCustomerAsync(client, "CL-LEAVING", "Leaving client"));
        await using var connection = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var delete = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var command = new Npgsql.NpgsqlCommand("UPDATE customers SET deleted_at = now() WHERE id = $1", connection, delete) { Parameters = { new() { Value = leaving } } })
        {
            await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        var importing = client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new { customers = new[] { new { externalId = "CL-LEAVING", name = "Leaving client", email = "new@leaving.example" } } });
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(importing.IsCompleted);   // waiting for the delete
        await delete.CommitAsync(TestContext.Current.CancellationToken);

        var (response, problem) = await importing;
        WorkflowApi.AssertFields(response, problem, "customers[0].externalId");
        Assert.Equal("client@example.com", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT email FROM customers WHERE id = $1", leaving));
    }

    [Fact]
    public async Task A_put_racing_a_delete_of_its_customer_waits_for_it_and_then_answers_not_found()
    {
        using var client = await NewCompanyClientAsync();
        var leaving = Guid.Parse(await CreateCustomerAsync(client, "CL-GOING", "Leaving client"));
        await using var connection = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var delete = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var command = new Npgsql.NpgsqlCommand("UPDATE customers SET deleted_at = now() WHERE id = $1", connection, delete) { Parameters = { new() { Value = leaving } } })
        {
            await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        var replacing = client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{leaving}", new { name = "Leaving client", email = "new@leaving.example" });
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(replacing.IsCompleted);   // waiting for the delete
        await delete.CommitAsync(TestContext.Current.CancellationToken);

        var (response, _) = await replacing;
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("client@example.com", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT email FROM customers WHERE id = $1", leaving));
    }

    [Fact]
    public async Task A_nul_in_a_query_is_named_by_its_parameter()
    {
        using var client = await NewCompanyClientAsync();

        var (listed, problem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers?search=Iyer%00&externalId=CL%00");

        WorkflowApi.AssertFields(listed, problem, "externalId", "search");
    }

    [Fact]
    public async Task An_import_with_any_bad_item_stores_nothing_and_names_each_problem()
    {
        using var client = await NewCompanyClientAsync();
        var gone = await CreateCustomerAsync(client, "CL-GONE", "Former client");
        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/v1/customers/{gone}", TestContext.Current.CancellationToken)).StatusCode);

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new
        {
            customers = new object?[]
            {
                new { externalId = "CL-1", name = "Fine" },
                new { externalId = "CL-2", name = "Bad email", email = "not-an-address" },
                new { name = "No external id" },
                new { externalId = "CL-1", name = "Twice" },
                null,
            },
        });
        WorkflowApi.AssertFields(response, problem, "customers[1].email", "customers[2].externalId", "customers[3].externalId", "customers[4]");

        var (held, heldProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new
        {
            customers = new[] { new { externalId = "CL-NEW", name = "New" }, new { externalId = "CL-GONE", name = "Back again" } },
        });
        WorkflowApi.AssertFields(held, heldProblem, "customers[1].externalId");
        Assert.Contains("/restore", heldProblem!["errors"]!["customers[1].externalId"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(1, await TestData.ScalarAsync<long>(Db.DataSource,
            "SELECT count(*) FROM customers WHERE company_id = (SELECT company_id FROM customers WHERE id = $1)", Guid.Parse(gone)));

        var (empty, emptyProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/import", new { customers = Array.Empty<object>() });
        WorkflowApi.AssertFields(empty, emptyProblem, "customers");
    }

    [Fact]
    public async Task A_customer_is_addressed_by_our_id_or_by_its_external_id()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-12", "Iyer & Sons");
        // A business application whose own ids are uuids can still address by them.
        var uuidExternalId = Guid.NewGuid().ToString();
        var uuidCustomer = await CreateCustomerAsync(client, uuidExternalId, "Kapoor Exports");

        var (byExternalId, found) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-12");
        Assert.Equal(HttpStatusCode.OK, byExternalId.StatusCode);
        Assert.Equal(id, found!["id"]!.GetValue<string>());
        Assert.Equal(uuidCustomer, (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{uuidExternalId}")).Body!["id"]!.GetValue<string>());

        var (replaced, updated) = await client.SendJsonAsync(HttpMethod.Put, "/v1/customers/CLIENT-12", new
        {
            externalId = "CLIENT-12", name = "Iyer & Sons LLP", email = "office@iyer.example", preferredLanguage = "hi", timeZone = "Asia/Dubai",
        });
        Assert.Equal(HttpStatusCode.OK, replaced.StatusCode);
        Assert.Equal("Iyer & Sons LLP", updated!["name"]!.GetValue<string>());
        Assert.Equal("hi", updated["preferredLanguage"]!.GetValue<string>());
        Assert.Equal("Asia/Dubai", updated["timeZone"]!.GetValue<string>());
        Assert.True(updated["updatedAt"]!.GetValue<DateTimeOffset>() > updated["createdAt"]!.GetValue<DateTimeOffset>());
        Assert.Equal("Iyer & Sons LLP", (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}")).Body!["name"]!.GetValue<string>());

        // A PUT without externalId (a form that never shows it) keeps it: the business app still finds the customer by it.
        var (withoutExternalId, kept) = await client.SendJsonAsync(HttpMethod.Put, "/v1/customers/CLIENT-12", new { name = "Iyer & Sons LLP", email = "office@iyer.example" });
        Assert.Equal(HttpStatusCode.OK, withoutExternalId.StatusCode);
        Assert.Equal("CLIENT-12", kept!["externalId"]!.GetValue<string>());
        Assert.Equal(id, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-12")).Body!["id"]!.GetValue<string>());
        // "" removes it: the customer is then found by our id only.
        var (removed, detached) = await client.SendJsonAsync(HttpMethod.Put, "/v1/customers/CLIENT-12", new { externalId = "", name = "Iyer & Sons LLP" });
        Assert.Equal(HttpStatusCode.OK, removed.StatusCode);
        Assert.Null(detached!["externalId"]);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-12")).Response.StatusCode);

        // A client code with slashes, as many practices number their clients, reached with the slashes encoded.
        var (slashed, slashedCustomer) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId = "CL/2026/001", name = "Rao Exports" });
        Assert.Equal(HttpStatusCode.Created, slashed.StatusCode);
        var (bySlashedId, foundSlashed) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL%2F2026%2F001");
        Assert.Equal((HttpStatusCode.OK, slashedCustomer!["id"]!.GetValue<string>()), (bySlashedId.StatusCode, foundSlashed!["id"]!.GetValue<string>()));

        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-404")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{Guid.NewGuid()}")).Response.StatusCode);
        var (missingPut, problem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/customers/CLIENT-404", new { name = "Nobody" });
        Assert.Equal(HttpStatusCode.NotFound, missingPut.StatusCode);
        Assert.Equal("application/problem+json", missingPut.Content.Headers.ContentType!.MediaType);
        Assert.Contains("CLIENT-404", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_duplicate_external_id_is_a_409_problem_within_a_company_but_not_across_companies()
    {
        using var client = await NewCompanyClientAsync();
        using var other = await NewCompanyClientAsync("Another practice");
        await CreateCustomerAsync(client, "CLIENT-1", "First");
        var second = await CreateCustomerAsync(client, "CLIENT-2", "Second");

        var (created, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId = "CLIENT-1", name = "Duplicate" });
        var (renamed, renameProblem) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{second}", new { externalId = "CLIENT-1", name = "Second" });
        var (elsewhere, _) = await other.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId = "CLIENT-1", name = "Same id, other practice" });

        Assert.Equal(HttpStatusCode.Conflict, created.StatusCode);
        Assert.Equal("application/problem+json", created.Content.Headers.ContentType!.MediaType);
        Assert.Contains("CLIENT-1", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Conflict, renamed.StatusCode);
        Assert.Contains("CLIENT-1", renameProblem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("CLIENT-2", (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{second}")).Body!["externalId"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.Created, elsewhere.StatusCode);
    }

    [Fact]
    public async Task Invalid_fields_answer_a_400_problem_naming_each_field()
    {
        using var client = await NewCompanyClientAsync();

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new
        {
            externalId = " ", email = "accounts@", phone = "12", whatsAppNumber = "not a number", preferredLanguage = "English", timeZone = "Mars/Olympus",
        });
        var (windowsZone, windowsBody) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { name = "Client", timeZone = "India Standard Time" });

        var errors = ValidationProblemAssert.NamesFields(response, body, "name", "externalId", "email", "phone", "whatsAppNumber", "preferredLanguage", "timeZone");
        Assert.Contains("Mars/Olympus", errors["timeZone"], StringComparison.Ordinal);
        Assert.Contains("+919876543210", errors["whatsAppNumber"], StringComparison.Ordinal);
        ValidationProblemAssert.NamesFields(windowsZone, windowsBody, "timeZone");
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM customers WHERE name = 'Client'"));
    }

    [Fact]
    public async Task Text_postgresql_cannot_store_is_a_400_problem_not_a_500()
    {
        using var client = await NewCompanyClientAsync();

        // A NUL character in a name and in a search: PostgreSQL refuses both (22021).
        var (created, createdProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { name = "Mehta\0Textiles" });
        var (searched, searchedProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers?search=%00");

        // Each is named by its field (a query parameter too).
        foreach (var (response, problem, field) in new[] { (created, createdProblem, "name"), (searched, searchedProblem, "search") })
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
            Assert.Contains("NUL", problem!["errors"]![field]![0]!.GetValue<string>(), StringComparison.Ordinal);
        }
        // The same for the other resources' text: a template's body, a consent's source, a setting.
        var id = await CreateCustomerAsync(client, "CLIENT-NUL", "Nul Check Client");
        var (template, templateProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/nul-check", new { channel = "SMS", body = "Dear\0client" });
        var (consent, consentProblem) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { emailOptIn = true, consentSource = "letter\0" });
        var (setting, settingProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SMTP", enabled = false, host = "smtp.practice.example", fromEmail = "a@practice.example", fromName = "Rao\0" });
        ValidationProblemAssert.NamesFields(template, templateProblem, "body");
        ValidationProblemAssert.NamesFields(consent, consentProblem, "consentSource");
        ValidationProblemAssert.NamesFields(setting, settingProblem, "fromName");
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM customers WHERE name LIKE 'Mehta%Textiles'"));
    }

    [Fact]
    public async Task Delete_is_soft_the_customer_disappears_but_its_row_and_message_history_stay()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var id = await CreateCustomerAsync(client, "CLIENT-9", "Leaving Client");
        var message = await Outbox.EnqueueAsync(Db.DataSource, company, Guid.Parse(id));

        var (deleted, _) = await client.SendJsonAsync(HttpMethod.Delete, "/v1/customers/CLIENT-9");

        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-9")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}", new { name = "Back" })).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Delete, $"/v1/customers/{id}")).Response.StatusCode);
        Assert.Empty((await client.SendJsonAsync(HttpMethod.Get, "/v1/customers")).Body!["items"]!.AsArray());
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT deleted_at IS NOT NULL FROM customers WHERE id = $1", Guid.Parse(id)));
        Assert.Equal(Guid.Parse(id), await TestData.ScalarAsync<Guid>(Db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", message));

        // The external id stays with the deleted customer, so its history keeps resolving; the 409 says why.
        var (reused, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId = "CLIENT-9", name = "New Client" });
        Assert.Equal(HttpStatusCode.Conflict, reused.StatusCode);
        Assert.Contains("deleted customer", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("/restore", problem["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_deleted_customer_is_restored_by_external_id_or_id_with_its_preferences_and_a_retry_answers_the_same()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var id = await CreateCustomerAsync(client, "CL/2026/009", "Returning Client");
        await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { whatsAppOptIn = true, consentSource = "engagement letter" });
        var other = await CreateCustomerAsync(client, "CLIENT-10", "Other Client");
        await client.SendJsonAsync(HttpMethod.Delete, $"/v1/customers/{id}");
        await client.SendJsonAsync(HttpMethod.Delete, $"/v1/customers/{other}");
        var (_, otherKey) = await Api.NewCompanyAsync();
        using var stranger = Api.As(otherKey);

        var (foreign, _) = await stranger.SendJsonAsync(HttpMethod.Post, "/v1/customers/CL%2F2026%2F009/restore");
        var (restored, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/CL%2F2026%2F009/restore");
        var (again, againBody) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/customers/{id}/restore");
        var (byId, _) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/customers/{other}/restore");
        var (unknown, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers/CLIENT-404/restore");

        Assert.Equal(HttpStatusCode.NotFound, foreign.StatusCode);
        Assert.Equal((HttpStatusCode.OK, id, "CL/2026/009"), (restored.StatusCode, body!["id"]!.GetValue<string>(), body["externalId"]!.GetValue<string>()));
        Assert.Equal((HttpStatusCode.OK, body["updatedAt"]!.GetValue<DateTimeOffset>()), (again.StatusCode, againBody!["updatedAt"]!.GetValue<DateTimeOffset>()));
        Assert.Equal(HttpStatusCode.OK, byId.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CL%2F2026%2F009")).Response.StatusCode);
        Assert.True((await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences")).Body!["whatsAppOptIn"]!.GetValue<bool>());
        Assert.False(await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT bool_or(deleted_at IS NOT NULL) FROM customers WHERE company_id = $1", company));
    }

    [Fact]
    public async Task The_list_pages_by_id_and_filters_by_external_id_and_by_a_literal_search_on_name_and_email()
    {
        using var client = await NewCompanyClientAsync();
        var ids = new List<string>
        {
            await CreateCustomerAsync(client, "C-1", "Agarwal Traders", "billing@agarwal.example"),
            await CreateCustomerAsync(client, "C-2", "Bose Sons Union Foods", "accounts@bose.example"),
            await CreateCustomerAsync(client, "C-3", "Chawla 100% Organic", "hello@chawla.example"),
            await CreateCustomerAsync(client, "C-4", "Desai Steel", "desai@TRADERS.example"),
            await CreateCustomerAsync(client, "C-5", "Engineers_United", null),
        };

        var seen = new List<string>();
        string? after = null;
        var pages = 0;
        do
        {
            var (response, page) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers?limit=2{(after is null ? "" : $"&after={after}")}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            seen.AddRange(page!["items"]!.AsArray().Select(c => c!["id"]!.GetValue<string>()));
            after = page["next"]?.GetValue<string>();
            pages++;
        }
        while (after is not null);

        Assert.Equal(3, pages);
        Assert.Equal(ids.Order(StringComparer.Ordinal), seen);
        Assert.Equal(5, (await client.SendJsonAsync(HttpMethod.Get, "/v1/customers")).Body!["items"]!.AsArray().Count);
        Assert.Equal([ids[2]], await IdsAsync(client, "/v1/customers?externalId=C-3"));
        Assert.Equal(new[] { ids[0], ids[3] }.Order(StringComparer.Ordinal), await IdsAsync(client, "/v1/customers?search=traders"));
        // LIKE wildcards in the search are plain characters: "%" is not "anything", "_" is not "any one character".
        Assert.Equal([ids[2]], await IdsAsync(client, "/v1/customers?search=%25"));
        Assert.Equal([ids[4]], await IdsAsync(client, "/v1/customers?search=s_u"));

        var (tooMany, problem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers?limit=501");
        ValidationProblemAssert.NamesFields(tooMany, problem, "limit");
        var (none, noneProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers?limit=0");
        ValidationProblemAssert.NamesFields(none, noneProblem, "limit");
    }

    [Fact]
    public async Task Another_company_cannot_see_change_or_delete_a_customer_by_id_or_external_id()
    {
        var (_, keyA) = await Api.NewCompanyAsync("Practice A");
        var (_, keyB) = await Api.NewCompanyAsync("Practice B");
        using var a = Api.As(keyA);
        using var b = Api.As(keyB);
        var id = await CreateCustomerAsync(a, "A-CLIENT", "A's client", "client@a.example");
        var before = (await a.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}")).Body!.ToJsonString();

        foreach (var address in new[] { id, "A-CLIENT" })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{address}")).Response.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{address}", new { name = "Taken over" })).Response.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Delete, $"/v1/customers/{address}")).Response.StatusCode);
        }
        Assert.Empty(await IdsAsync(b, "/v1/customers"));
        Assert.Empty(await IdsAsync(b, "/v1/customers?externalId=A-CLIENT"));
        Assert.Empty(await IdsAsync(b, "/v1/customers?search=client"));
        Assert.Equal(before, (await a.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}")).Body!.ToJsonString());

        using var anonymous = Api.CreateClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.SendJsonAsync(HttpMethod.Get, "/v1/customers")).Response.StatusCode);
        using var admin = Api.As(TestKeys.Admin);
        Assert.Equal(HttpStatusCode.Forbidden, (await admin.SendJsonAsync(HttpMethod.Get, "/v1/customers")).Response.StatusCode);
    }

    private static async Task<List<string>> IdsAsync(HttpClient client, string path)
    {
        var (response, page) = await client.SendJsonAsync(HttpMethod.Get, path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return page!["items"]!.AsArray().Select(c => c!["id"]!.GetValue<string>()).ToList();
    }
}
