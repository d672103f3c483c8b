using System.Net;
using System.Text.Json.Nodes;
using OutboxComms.Tests.Infrastructure;
using static OutboxComms.Tests.Api.MessageTestData;

namespace OutboxComms.Tests.Api;

public sealed class MessageEndpointsTests(DatabaseFixture db) : ApiTests(db)
{
    [Fact]
    public async Task Sending_an_email_stores_a_pending_row_and_answers_202_with_its_id_and_links()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        var (response, body) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice INV-1042", content = "Dear client, your invoice is attached.",
            maxRetries = 5, metadata = new { invoiceNo = "INV-1042" },
        });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var message = body!["messages"]!.AsArray().Single()!;
        var id = message["id"]!.GetValue<long>();
        Assert.Equal(("PENDING", "EMAIL"), (message["status"]!.GetValue<string>(), message["channel"]!.GetValue<string>()));
        Assert.Equal($"/v1/messages/{id}", message["links"]!["self"]!.GetValue<string>());
        Assert.Equal($"/v1/messages/{id}", response.Headers.Location!.OriginalString);
        var row = await Outbox.GetAsync(Db.DataSource, id);
        Assert.Equal(("PENDING", "EMAIL", null, "Invoice INV-1042", "Dear client, your invoice is attached."), (row.Status, row.Channel, row.RequestedChannel, row.Subject, row.Content));
        Assert.Equal(company, await TestData.ScalarAsync<Guid>(Db.DataSource, "SELECT company_id FROM communication_logs WHERE id = $1", id));
        Assert.Equal(5, await TestData.ScalarAsync<int>(Db.DataSource, "SELECT max_retries FROM communication_logs WHERE id = $1", id));
        Assert.Equal("INV-1042", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT metadata->>'invoiceNo' FROM communication_logs WHERE id = $1", id));
    }

    [Fact]
    public async Task A_customer_is_found_by_external_id_and_a_template_message_stores_its_data_and_schedule()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company, externalId: "CLIENT-77");
        await CreateTemplateAsync(Db.DataSource, company, "mgt7-reminder");
        using var client = Api.As(key);
        var notBefore = DateTimeOffset.UtcNow.AddHours(6);

        var (response, body) = await client.PostAsync("/v1/messages", new
        {
            customerExternalId = "CLIENT-77", type = "COMPLIANCE_REMINDER", channel = "PREFERRED", templateKey = "mgt7-reminder",
            data = new { form = "MGT-7", dueDate = "2025-11-29" }, notBefore, expiresAt = notBefore.AddDays(2),
        });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = Ids(body).Single();
        Assert.Equal("PREFERRED", body!["messages"]![0]!["channel"]!.GetValue<string>());
        await using var command = Db.DataSource.CreateCommand(
            "SELECT customer_id, customer_external_id, channel, template_key, template_data->>'form', next_attempt_at, expires_at FROM communication_logs WHERE id = $1");
        command.Parameters.AddWithValue(id);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        Assert.True(await reader.ReadAsync(TestContext.Current.CancellationToken));
        Assert.Equal(customer, reader.GetGuid(0));
        Assert.Equal(("CLIENT-77", "PREFERRED", "mgt7-reminder", "MGT-7"), (reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4)));
        Assert.Equal(notBefore, reader.GetFieldValue<DateTimeOffset>(5), TimeSpan.FromMilliseconds(1));
        Assert.Equal(notBefore.AddDays(2), reader.GetFieldValue<DateTimeOffset>(6), TimeSpan.FromMilliseconds(1));
    }

    [Fact]
    public async Task Template_data_under_the_models_own_names_is_refused_by_field_name()
    {
        var (company, key) = await Api.NewCompanyAsync();
        await TestData.CreateCustomerAsync(Db.DataSource, company, externalId: "CLIENT-78");
        await CreateTemplateAsync(Db.DataSource, company, "general-note");
        using var client = Api.As(key);

        // {{ message }} is the model's message (id, type, channel…): the app's text would never be seen.
        var (response, problem) = await client.PostAsync("/v1/messages", new
        {
            customerExternalId = "CLIENT-78", type = "GENERAL_UPDATE", channel = "EMAIL", templateKey = "general-note",
            data = new { message = "Office closed on 2 October", customer = new { name = "Mehta" }, note = "fine" },
        });

        Assert.Equal(["data.customer", "data.message"], ErrorFields(problem));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
    }

    [Fact]
    public async Task Every_invalid_field_is_named_in_one_validation_problem()
    {
        var (_, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);

        var (response, problem) = await client.PostAsync("/v1/messages", new
        {
            type = "NEWSLETTER", channel = "FAX", maxRetries = 99, expiresAt = DateTimeOffset.UtcNow.AddMinutes(-1), metadata = "not an object",
            attachments = new object[]
            {
                new { fileName = "../etc/passwd", contentBase64 = "bm90IGJhc2U2NA==" },
                new { fileName = "invoice.pdf", contentType = "pdf", contentBase64 = "%%%not base64%%%" },
                new { fileName = "statement.pdf", url = "http://files.example.com/statement.pdf" },
                new { fileName = "both.pdf", url = "https://files.example.com/a.pdf", contentBase64 = "AAAA" },
            },
        });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(
            ["attachments[0].fileName", "attachments[1].contentBase64", "attachments[1].contentType", "attachments[2].url", "attachments[3].contentBase64",
             "channel", "content", "customerId", "expiresAt", "maxRetries", "metadata", "type"],
            ErrorFields(problem));
    }

    [Fact]
    public async Task Email_content_needs_a_subject_template_and_content_exclude_each_other_and_sms_carries_no_attachments()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        var (noSubject, noSubjectProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "BOTH", content = "Hi" });
        // The customer's channel for invoices may be email (every customer's default).
        var (preferred, preferredProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "PREFERRED", content = "Hi" });
        var (both, bothProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "SMS", content = "Hi", templateKey = "x" });
        var (sms, smsProblem) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, customerExternalId = "C-1", type = "INVOICE", channel = "SMS", content = "Hi",
            attachments = new[] { new { fileName = "a.pdf", url = "https://files.example.com/a.pdf" } },
        });

        Assert.Equal([HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.BadRequest], new[] { noSubject.StatusCode, both.StatusCode, sms.StatusCode });
        Assert.Equal(["subject"], ErrorFields(noSubjectProblem));
        Assert.Equal(HttpStatusCode.BadRequest, preferred.StatusCode);
        Assert.Equal(["subject"], ErrorFields(preferredProblem));
        Assert.Equal(["templateKey"], ErrorFields(bothProblem));
        Assert.Equal(["attachments", "customerExternalId"], ErrorFields(smsProblem));
        // WhatsApp takes one document per message.
        var (whatsApp, whatsAppProblem) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "WHATSAPP", content = "Hi",
            attachments = new[] { new { fileName = "a.pdf", url = "https://files.example.com/a.pdf" }, new { fileName = "b.pdf", url = "https://files.example.com/b.pdf" } },
        });
        Assert.Equal(HttpStatusCode.BadRequest, whatsApp.StatusCode);
        Assert.Equal(["attachments"], ErrorFields(whatsAppProblem));
        // So does a message to BOTH channels: its WhatsApp half would fail.
        var (toBoth, toBothProblem) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "BOTH", subject = "Invoices", content = "Hi",
            attachments = new[] { new { fileName = "a.pdf", url = "https://files.example.com/a.pdf" }, new { fileName = "b.pdf", url = "https://files.example.com/b.pdf" } },
        });
        Assert.Equal(HttpStatusCode.BadRequest, toBoth.StatusCode);
        Assert.Equal(["attachments"], ErrorFields(toBothProblem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task A_value_of_the_wrong_json_type_is_named_and_a_non_json_body_is_refused()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);

        var (wrongType, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages", """{"type":"INVOICE","maxRetries":"three"}""");
        using var form = new StringContent("type=INVOICE", System.Text.Encoding.UTF8, "application/x-www-form-urlencoded");
        using var notJson = await client.PostAsync("/v1/messages", form, TestContext.Current.CancellationToken);

        Assert.Equal(HttpStatusCode.BadRequest, wrongType.StatusCode);
        Assert.Equal(["maxRetries"], ErrorFields(problem));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, notJson.StatusCode);

        // A misspelt field is named, not dropped: a not_before left out would have sent the reminder at once.
        var (misspelt, misspeltProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            """{"customerExternalId":"CL-1","type":"INVOICE","channel":"EMAIL","subject":"Invoice","content":"Attached.","not_before":"2026-12-01T10:00:00+05:30"}""");
        var (nested, nestedProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/bulk",
            """{"messages":[{"customerExternalId":"CL-1","type":"INVOICE","channel":"EMAIL","subject":"Invoice","content":"Attached.","notbefore":"2026-12-01T10:00:00+05:30","sendAt":"10:00"}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, misspelt.StatusCode);
        Assert.Equal(["not_before"], ErrorFields(misspeltProblem));
        Assert.Equal(HttpStatusCode.BadRequest, nested.StatusCode);
        Assert.Equal(["messages[0].sendAt"], ErrorFields(nestedProblem));   // field names are case-insensitive: notbefore is notBefore
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
    }

    [Fact]
    public async Task An_instant_without_an_offset_is_refused_by_field_name_rather_than_read_in_the_servers_time_zone()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        var (local, localProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            $$"""{"customerId":"{{customer}}","type":"PAYMENT_REMINDER","channel":"EMAIL","subject":"Due","content":"Due tomorrow","expiresAt":"2031-11-19T23:59:59"}""");
        var (bulk, bulkProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/bulk",
            $$"""{"messages":[{"customerId":"{{customer}}","type":"INVOICE","channel":"EMAIL","subject":"Invoice","content":"Attached","notBefore":"2031-11-19"}]}""");
        var (withOffset, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            $$"""{"customerId":"{{customer}}","type":"PAYMENT_REMINDER","channel":"EMAIL","subject":"Due","content":"Due tomorrow","expiresAt":"2031-11-19T23:59:59+05:30","notBefore":"2031-11-18T04:30:00Z"}""");
        var (westward, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            $$"""{"customerId":"{{customer}}","type":"INVOICE","channel":"EMAIL","subject":"Invoice","content":"Attached","notBefore":"2031-11-18T04:30:00.125-05:00"}""");

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.Accepted, HttpStatusCode.Accepted),
            (local.StatusCode, bulk.StatusCode, withOffset.StatusCode, westward.StatusCode));
        Assert.Equal(["expiresAt"], ErrorFields(localProblem));
        Assert.StartsWith("expiresAt has no offset: write Z for UTC", localProblem!["errors"]!["expiresAt"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(["messages[0].notBefore"], ErrorFields(bulkProblem));
        Assert.StartsWith("messages[0].notBefore is a date without a time and offset", bulkProblem!["errors"]!["messages[0].notBefore"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(new DateTime(2031, 11, 19, 18, 29, 59), await TestData.ScalarAsync<DateTime>(Db.DataSource,
            "SELECT expires_at AT TIME ZONE 'UTC' FROM communication_logs WHERE company_id = $1 AND type = 'PAYMENT_REMINDER'", company));
        Assert.Equal(new DateTime(2031, 11, 18, 9, 30, 0, 125), await TestData.ScalarAsync<DateTime>(Db.DataSource,
            "SELECT next_attempt_at AT TIME ZONE 'UTC' FROM communication_logs WHERE company_id = $1 AND type = 'INVOICE'", company));
    }

    [Fact]
    public async Task A_nul_character_which_postgresql_cannot_store_is_refused_by_field_name()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        var (response, problem) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice\0", content = "Dear\0client", metadata = new { invoice = new[] { "INV\u0000-1" } },
        });
        var (template, templateProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "EMAIL", templateKey = "invoice", data = new { name = "A\0" } });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(["content", "metadata", "subject"], ErrorFields(problem).Order());
        Assert.Equal(HttpStatusCode.BadRequest, template.StatusCode);
        Assert.Equal(["data"], ErrorFields(templateProblem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task An_unpaired_surrogate_escape_in_json_fields_is_refused_by_field_name_not_a_500()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        // Valid JSON, and .NET keeps it as a JsonElement, but jsonb refuses a lone surrogate (in a value or a property name).
        var (single, singleProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            $$$"""{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c","metadata":{"k":"\ud800"}}""");
        var (bulk, bulkProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/bulk",
            $$$"""{"messages":[{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c"},{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c","metadata":{"\udc00k":"x"}}]}""");

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest), (single.StatusCode, bulk.StatusCode));
        Assert.Equal(["metadata"], ErrorFields(singleProblem));
        Assert.Equal(["messages[1].metadata"], ErrorFields(bulkProblem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task A_number_jsonb_cannot_hold_is_refused_by_field_name_and_one_it_can_is_stored()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        // Valid JSON, but PostgreSQL's numeric keeps at most 131,072 digits before the point and 16,383 after.
        var (single, singleProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            $$$"""{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c","metadata":{"k":1e131072}}""");
        var (bulk, bulkProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/bulk",
            $$$"""{"messages":[{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c"},{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c","metadata":{"k":[0.5e-16383]}}]}""");
        // Large, and yet within numeric's range: stored.
        var (fits, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            $$$"""{"customerId":"{{{customer}}}","type":"GENERAL_UPDATE","channel":"EMAIL","subject":"s","content":"c","metadata":{"k":1e131071,"tiny":1e-16383,"zero":0e999999}}""");

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.Accepted), (single.StatusCode, bulk.StatusCode, fits.StatusCode));
        Assert.Equal(["metadata"], ErrorFields(singleProblem));
        Assert.Equal(["messages[1].metadata"], ErrorFields(bulkProblem));
        Assert.Equal(1, await CountAsync(Db.DataSource, company));
    }

    /// <summary>The API's check of a JSON number against what PostgreSQL's jsonb really takes, number by number.</summary>
    [Theory]
    [InlineData("123.456")]
    [InlineData("-1.5e1000")]
    [InlineData("1e131071")]
    [InlineData("1e131072")]
    [InlineData("0.000005e131075")]
    [InlineData("0.000005e131078")]
    [InlineData("1e-16383")]
    [InlineData("1e-16384")]
    [InlineData("1.0e-16383")]
    [InlineData("5e-16384")]
    [InlineData("0e999999")]
    [InlineData("0e-16383")]
    [InlineData("0e-16384")]
    public async Task A_number_is_judged_storable_exactly_when_jsonb_takes_it(string number)
    {
        bool postgresql;
        try
        {
            postgresql = await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT ('{\"x\":' || $1 || '}')::jsonb IS NOT NULL", number);
        }
        catch (Npgsql.PostgresException ex) when (ex.SqlState == "22003")
        {
            postgresql = false;   // value overflows numeric format
        }

        Assert.Equal(postgresql, OutboxComms.Api.Common.Validation.StorableNumber(number));
    }

    [Fact]
    public async Task The_customer_must_exist_in_the_callers_company_and_not_be_deleted_and_the_template_must_exist()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var (other, _) = await Api.NewCompanyAsync("Other practice");
        var othersCustomer = await TestData.CreateCustomerAsync(Db.DataSource, other, externalId: "SHARED-1");
        var deleted = await TestData.CreateCustomerAsync(Db.DataSource, company);
        await TestData.ScalarAsync<int>(Db.DataSource, "WITH d AS (UPDATE customers SET deleted_at = now() WHERE id = $1 RETURNING 1) SELECT count(*)::int FROM d", deleted);
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);

        var (byId, byIdProblem) = await client.PostAsync("/v1/messages", new { customerId = othersCustomer, type = "INVOICE", channel = "WHATSAPP", content = "Hi" });
        var (byExternal, byExternalProblem) = await client.PostAsync("/v1/messages", new { customerExternalId = "SHARED-1", type = "INVOICE", channel = "WHATSAPP", content = "Hi" });
        var (gone, goneProblem) = await client.PostAsync("/v1/messages", new { customerId = deleted, type = "INVOICE", channel = "WHATSAPP", content = "Hi" });
        var (template, templateProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "WHATSAPP", templateKey = "no-such-template" });

        Assert.All(new[] { byId, byExternal, gone, template }, r => Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode));
        Assert.Equal(["customerId"], ErrorFields(byIdProblem));
        Assert.Equal(["customerExternalId"], ErrorFields(byExternalProblem));
        Assert.Contains("deleted", goneProblem!["errors"]!["customerId"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(["templateKey"], ErrorFields(templateProblem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));
        Assert.Equal(0, await CountAsync(Db.DataSource, other));
    }

    [Fact]
    public async Task A_template_without_a_version_for_the_requested_channel_is_refused_and_preferred_takes_any()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        await CreateTemplateAsync(Db.DataSource, company, "invoice-issued", "EMAIL");
        using var client = Api.As(key);

        // The single checked insert, a BOTH pair, and a bulk item: each would have failed at the worker.
        var (whatsApp, whatsAppProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "WHATSAPP", templateKey = "invoice-issued" });
        var (both, bothProblem) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "BOTH", templateKey = "invoice-issued" });
        var (bulk, bulkProblem) = await client.PostAsync("/v1/messages/bulk", new
        {
            messages = new object[]
            {
                new { customerId = customer, type = "INVOICE", channel = "EMAIL", templateKey = "invoice-issued" },
                new { customerId = customer, type = "INVOICE", channel = "SMS", templateKey = "invoice-issued" },
            },
        });
        Assert.All(new[] { whatsApp, both, bulk }, r => Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode));
        Assert.Equal("Template 'invoice-issued' has no WHATSAPP version (it has EMAIL): add one, or send on a channel it has.",
            whatsAppProblem!["errors"]!["templateKey"]![0]!.GetValue<string>());
        Assert.Equal(["templateKey"], ErrorFields(bothProblem));
        Assert.Equal(["messages[1].templateKey"], ErrorFields(bulkProblem));
        Assert.Equal(0, await CountAsync(Db.DataSource, company));

        var (email, _) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "EMAIL", templateKey = "invoice-issued" });
        var (preferred, _) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "PREFERRED", templateKey = "invoice-issued" });
        await CreateTemplateAsync(Db.DataSource, company, "invoice-issued", "WHATSAPP");
        var (bothNow, _) = await client.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "BOTH", templateKey = "invoice-issued" });
        Assert.Equal((HttpStatusCode.Accepted, HttpStatusCode.Accepted, HttpStatusCode.Accepted), (email.StatusCode, preferred.StatusCode, bothNow.StatusCode));
        Assert.Equal(4, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task Attachment_links_to_plainly_internal_hosts_are_refused_by_field_name_unless_the_operator_allows_private_networks()
    {
        await using var strict = new ApiFactory(Db.ConnectionString, new Dictionary<string, string?> { ["Attachments:AllowPrivateNetworks"] = "false" });
        var (company, key) = await strict.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = strict.As(key);
        object Send(params string[] urls) => new
        {
            customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice INV-8", content = "Attached.",
            attachments = urls.Select((url, i) => new { fileName = $"file{i}.pdf", url }).ToArray(),
        };

        // The worker would refuse to fetch each of these and fail the message: the API says so at once.
        var (refused, problem) = await client.PostAsync("/v1/messages", Send(
            "https://169.254.169.254/latest/meta-data/iam/", "https://10.0.0.5/statement.pdf", "http://127.0.0.1:8080/terms.pdf", "https://[::ffff:192.168.1.9]/a.pdf", "https://files.localhost/b.pdf"));
        var (accepted, _) = await client.PostAsync("/v1/messages", Send("https://files.practice.example/terms.pdf"));

        Assert.Equal(["attachments[0].url", "attachments[1].url", "attachments[2].url", "attachments[3].url", "attachments[4].url"], ErrorFields(problem));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Equal("url names an internal address, which attachment links may not reach (Attachments:AllowPrivateNetworks).",
            problem!["errors"]!["attachments[0].url"]![0]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
    }

    [Fact]
    public async Task Both_creates_an_email_row_and_a_whatsapp_row_each_with_the_attachment()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company, whatsApp: "+919876543210");
        using var client = Api.As(key);
        var pdf = "%PDF-1.7 invoice"u8.ToArray();

        var (response, body) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "BOTH", subject = "Invoice INV-7", content = "Your invoice is attached.",
            attachments = new object[] { new { fileName = "INV-7.pdf", contentType = "application/pdf", contentBase64 = Convert.ToBase64String(pdf) } },
        });
        // A link is copied too (one document: WhatsApp carries no more).
        var (linked, linkedBody) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "BOTH", subject = "Terms", content = "Our terms are attached.",
            attachments = new object[] { new { fileName = "terms.pdf", url = "http://127.0.0.1:8080/terms.pdf" } },
        });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var messages = body!["messages"]!.AsArray();
        Assert.Equal(["EMAIL", "WHATSAPP"], messages.Select(m => m!["channel"]!.GetValue<string>()));
        Assert.All(messages, m => Assert.Equal("BOTH", m!["requestedChannel"]!.GetValue<string>()));
        var ids = Ids(body);
        Assert.True(ids[0] < ids[1]);
        foreach (var id in ids)
        {
            var row = await Outbox.GetAsync(Db.DataSource, id);
            Assert.Equal("BOTH", row.RequestedChannel);
            Assert.Equal(ids[0], await TestData.ScalarAsync<long>(Db.DataSource, "SELECT split_from FROM communication_logs WHERE id = $1", id));
            Assert.Equal(pdf, await TestData.ScalarAsync<byte[]>(Db.DataSource, "SELECT content FROM communication_attachments WHERE message_id = $1 AND file_name = 'INV-7.pdf'", id));
            Assert.Equal((long)pdf.Length, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT size_bytes FROM communication_attachments WHERE message_id = $1 AND file_name = 'INV-7.pdf'", id));
        }
        Assert.Equal(HttpStatusCode.Accepted, linked.StatusCode);
        Assert.Equal(2, Ids(linkedBody).Length);
        foreach (var id in Ids(linkedBody))
        {
            Assert.Equal("http://127.0.0.1:8080/terms.pdf", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT url FROM communication_attachments WHERE message_id = $1 AND file_name = 'terms.pdf'", id));
        }
    }

    [Fact]
    public async Task Both_without_attachments_stores_both_rows_in_channel_order_with_customer_and_schedule()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company, whatsApp: "+919876543210", externalId: "CLIENT-9");
        using var client = Api.As(key);

        var (response, body) = await client.PostAsync("/v1/messages", new
        {
            customerExternalId = "CLIENT-9", type = "PAYMENT_REMINDER", channel = "BOTH", subject = "Payment due", content = "INR 11,800 is due.",
            notBefore = "2031-01-01T03:30:00Z", maxRetries = 5,
        });

        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var messages = body!["messages"]!.AsArray();
        Assert.Equal(["EMAIL", "WHATSAPP"], messages.Select(m => m!["channel"]!.GetValue<string>()));
        var ids = Ids(body);
        Assert.True(ids[0] < ids[1]);
        Assert.Equal($"/v1/messages/{ids[0]}", response.Headers.Location!.OriginalString);
        foreach (var id in ids)
        {
            var row = await Outbox.GetAsync(Db.DataSource, id);
            Assert.Equal(("PENDING", "BOTH"), (row.Status, row.RequestedChannel));
            // One pair: both rows marked with the first one's id, as the worker marks its split.
            Assert.Equal(ids[0], await TestData.ScalarAsync<long>(Db.DataSource, "SELECT split_from FROM communication_logs WHERE id = $1", id));
            Assert.Equal(customer, await TestData.ScalarAsync<Guid>(Db.DataSource, "SELECT customer_id FROM communication_logs WHERE id = $1", id));
            Assert.Equal("CLIENT-9", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT customer_external_id FROM communication_logs WHERE id = $1", id));
            Assert.Equal(new DateTimeOffset(2031, 1, 1, 3, 30, 0, TimeSpan.Zero), await TestData.ScalarAsync<DateTime>(Db.DataSource, "SELECT next_attempt_at FROM communication_logs WHERE id = $1", id));
            Assert.Equal(5, await TestData.ScalarAsync<int>(Db.DataSource, "SELECT max_retries FROM communication_logs WHERE id = $1", id));
        }
    }

    [Fact]
    public async Task Attachments_are_limited_to_10_MB_each_and_20_MB_together()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);
        const int MB = 1024 * 1024;
        string Base64Of(int bytes) => Convert.ToBase64String(new byte[bytes]);

        object Request(params int[] sizes) => new
        {
            customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Statements", content = "Attached.",
            attachments = sizes.Select((size, i) => new { fileName = $"statement-{i}.pdf", contentBase64 = Base64Of(size) }).ToArray(),
        };

        var (oneTooBig, oneTooBigProblem) = await client.PostAsync("/v1/messages", Request(1024, (10 * MB) + 1));
        var (tooMuch, tooMuchProblem) = await client.PostAsync("/v1/messages", Request(10 * MB, 10 * MB, 1));
        var (justFits, _) = await client.PostAsync("/v1/messages", Request(10 * MB, 10 * MB));

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest), (oneTooBig.StatusCode, tooMuch.StatusCode));
        Assert.Equal(["attachments[1].contentBase64"], ErrorFields(oneTooBigProblem));
        Assert.Equal(["attachments"], ErrorFields(tooMuchProblem));
        Assert.Equal(HttpStatusCode.Accepted, justFits.StatusCode);
        Assert.Equal(20L * MB, await TestData.ScalarAsync<decimal>(Db.DataSource,
            "SELECT sum(size_bytes) FROM communication_attachments a JOIN communication_logs m ON m.id = a.message_id WHERE m.company_id = $1", company));
    }

    [Fact]
    public async Task The_same_idempotency_key_and_body_answer_the_original_response_and_another_body_is_a_conflict()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);
        var request = new { customerId = customer, type = "PAYMENT_REMINDER", channel = "BOTH", subject = "Payment due", content = "Your payment is due." };

        var (first, firstBody) = await client.PostAsync("/v1/messages", request, idempotencyKey: "order-1042-reminder");
        var (again, againBody) = await client.PostAsync("/v1/messages", request, idempotencyKey: "order-1042-reminder");
        var (different, conflict) = await client.PostAsync("/v1/messages", request with { content = "Something else." }, idempotencyKey: "order-1042-reminder");
        var (bulk, bulkConflict) = await client.PostAsync("/v1/messages/bulk", new { messages = new[] { request } }, idempotencyKey: "order-1042-reminder");
        var (other, _) = await client.PostAsync("/v1/messages", request, idempotencyKey: "order-1043-reminder");

        Assert.Equal([HttpStatusCode.Accepted, HttpStatusCode.Accepted, HttpStatusCode.Conflict, HttpStatusCode.Conflict, HttpStatusCode.Accepted],
            new[] { first.StatusCode, again.StatusCode, different.StatusCode, bulk.StatusCode, other.StatusCode });
        Assert.True(JsonNode.DeepEquals(firstBody, againBody));
        Assert.Equal(2, Ids(againBody).Length);
        Assert.Equal("true", again.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(first.Headers.Location, again.Headers.Location);
        Assert.Contains("order-1042-reminder", conflict!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(409, bulkConflict!["status"]!.GetValue<int>());
        Assert.Equal(4, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task The_original_response_is_returned_even_when_a_cancel_changed_the_message_since()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);
        var request = new { customerId = customer, type = "GENERAL_UPDATE", channel = "SMS", content = "Office closed on Friday." };
        var (_, firstBody) = await client.PostAsync("/v1/messages", request, idempotencyKey: "closure-notice");
        var id = Ids(firstBody).Single();
        await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{id}/cancel");

        var (again, againBody) = await client.PostAsync("/v1/messages", request, idempotencyKey: "closure-notice");

        Assert.Equal(HttpStatusCode.Accepted, again.StatusCode);
        Assert.Equal("PENDING", againBody!["messages"]![0]!["status"]!.GetValue<string>());
        Assert.Equal(id, Ids(againBody).Single());
        Assert.Equal(1, await CountAsync(Db.DataSource, company));
    }

    [Fact]
    public async Task Concurrent_requests_with_one_idempotency_key_create_one_message()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var request = new { customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice", content = "Attached." };
        var clients = Enumerable.Range(0, 12).Select(_ => Api.As(key)).ToList();

        var results = await Task.WhenAll(clients.Select(c => c.PostAsync("/v1/messages", request, idempotencyKey: "invoice-77")));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.Accepted, r.Response.StatusCode));
        Assert.Single(results.Select(r => Ids(r.Body).Single()).Distinct());
        Assert.Equal(1, await CountAsync(Db.DataSource, company));
        clients.ForEach(c => c.Dispose());
    }

    [Fact]
    public async Task Get_shows_status_timestamps_cost_attachment_metadata_and_attempts()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        using var client = Api.As(key);
        var (_, created) = await client.PostAsync("/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice", content = "Attached.",
            attachments = new[] { new { fileName = "INV-1.pdf", contentType = "application/pdf", contentBase64 = Convert.ToBase64String("%PDF secret bytes"u8.ToArray()) } },
        });
        var id = Ids(created).Single();
        var sent = DateTimeOffset.Parse("2025-04-01T10:00:05Z", System.Globalization.CultureInfo.InvariantCulture);
        await SetAsync(Db.DataSource, id, """
            status = 'DELIVERED', sent_at = $2, delivered_at = $3, provider_name = 'SMTP', provider_message_id = '<m1@practice.example>',
            cost = 0.05, cost_currency = 'INR', retry_count = 0, attempt_count = 2, outage_attempts = 1, status_reason = 'delivered',
            split_from = 41
            """, sent, sent.AddSeconds(3));
        await using (var attempts = Db.DataSource.CreateCommand("""
            INSERT INTO communication_attempts (message_id, company_id, attempt_no, attempted_at, channel, provider_name, outcome, error_message, provider_latency_ms, cost, cost_currency)
            VALUES ($1, $2, 1, $3, 'EMAIL', 'SMTP', 'TRANSIENT_FAILURE', 'SMTP 421: try again later', 812, NULL, NULL),
                   ($1, $2, 2, $4, 'EMAIL', 'SMTP', 'SENT', NULL, 95, 0.05, 'INR')
            """))
        {
            attempts.Parameters.AddWithValue(id);
            attempts.Parameters.AddWithValue(company);
            attempts.Parameters.AddWithValue(sent.AddMinutes(-1));
            attempts.Parameters.AddWithValue(sent);
            await attempts.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        var (response, view) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(("DELIVERED", "EMAIL", "INVOICE", "Invoice"), (view!["status"]!.GetValue<string>(), view["channel"]!.GetValue<string>(), view["type"]!.GetValue<string>(), view["subject"]!.GetValue<string>()));
        Assert.Equal(sent, view["sentAt"]!.GetValue<DateTimeOffset>());
        Assert.Equal(sent.AddSeconds(3), view["deliveredAt"]!.GetValue<DateTimeOffset>());
        Assert.Null(view["nextAttemptAt"]);
        Assert.Equal(41, view["splitFrom"]!.GetValue<long>());
        Assert.Equal((0, 3, 2, 1), (view["retryCount"]!.GetValue<int>(), view["maxRetries"]!.GetValue<int>(), view["attemptCount"]!.GetValue<int>(), view["outageAttempts"]!.GetValue<int>()));
        Assert.Equal(("SMTP", "<m1@practice.example>", 0.05m, "INR"),
            (view["providerName"]!.GetValue<string>(), view["providerMessageId"]!.GetValue<string>(), view["cost"]!.GetValue<decimal>(), view["currency"]!.GetValue<string>()));
        var attachment = view["attachments"]!.AsArray().Single()!;
        Assert.Equal(("INV-1.pdf", "application/pdf", 17L), (attachment["fileName"]!.GetValue<string>(), attachment["contentType"]!.GetValue<string>(), attachment["sizeBytes"]!.GetValue<long>()));
        Assert.DoesNotContain(Convert.ToBase64String("%PDF secret bytes"u8.ToArray()), view.ToJsonString(), StringComparison.Ordinal);
        var attemptViews = view["attempts"]!.AsArray();
        Assert.Equal([1, 2], attemptViews.Select(a => a!["attemptNo"]!.GetValue<int>()));
        Assert.Equal(("TRANSIENT_FAILURE", "SMTP 421: try again later", 812), (attemptViews[0]!["outcome"]!.GetValue<string>(), attemptViews[0]!["error"]!.GetValue<string>(), attemptViews[0]!["latencyMs"]!.GetValue<int>()));
        Assert.Null(attemptViews[0]!["cost"]);
        Assert.Equal(("SENT", 0.05m, "INR"), (attemptViews[1]!["outcome"]!.GetValue<string>(), attemptViews[1]!["cost"]!.GetValue<decimal>(), attemptViews[1]!["currency"]!.GetValue<string>()));
    }

    [Fact]
    public async Task The_list_filters_and_pages_newest_first_with_next_after()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var alice = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var bob = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var ids = new List<long>();
        for (var i = 0; i < 7; i++)
        {
            ids.Add(await Outbox.EnqueueAsync(Db.DataSource, company, i < 5 ? alice : bob, type: i % 2 == 0 ? "INVOICE" : "PAYMENT_REMINDER", channel: i < 3 ? "EMAIL" : "WHATSAPP"));
        }
        await SetAsync(Db.DataSource, ids[1], "status = 'FAILED'");
        await SetAsync(Db.DataSource, ids[4], "status = 'FAILED'");
        await SetAsync(Db.DataSource, ids[0], "created_at = now() - interval '10 days'");
        using var client = Api.As(key);

        var pages = new List<long>();
        long? after = null;
        do
        {
            var (response, page) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages?limit=3{(after is null ? "" : $"&after={after}")}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            pages.AddRange(page!["items"]!.AsArray().Select(m => m!["id"]!.GetValue<long>()));
            after = page["nextAfter"]?.GetValue<long>();
        }
        while (after is not null);

        Assert.Equal(Enumerable.Reverse(ids), pages);
        Assert.Equal([ids[4], ids[1]], await ListIdsAsync(client, "status=FAILED"));
        Assert.Equal([ids[2], ids[1], ids[0]], await ListIdsAsync(client, "channel=EMAIL"));
        Assert.Equal([ids[6], ids[4], ids[2], ids[0]], await ListIdsAsync(client, "type=INVOICE"));
        Assert.Equal([ids[6], ids[5]], await ListIdsAsync(client, $"customerId={bob}"));
        Assert.Equal([ids[4]], await ListIdsAsync(client, $"status=FAILED&channel=WHATSAPP&customerId={alice}"));
        // A row a SQL producer wrote naming Bob by his external id only is Bob's under either filter.
        Assert.Equal(1, await TestData.ScalarAsync<int>(Db.DataSource, "UPDATE customers SET external_id = 'CL-BOB' WHERE id = $1 RETURNING 1", bob));
        await SetAsync(Db.DataSource, ids[5], "customer_id = NULL, customer_external_id = 'CL-BOB'");
        Assert.Equal([ids[6], ids[5]], await ListIdsAsync(client, $"customerId={bob}"));
        Assert.Equal([ids[6], ids[5]], await ListIdsAsync(client, "customerExternalId=CL-BOB"));
        Assert.Equal([ids[0]], await ListIdsAsync(client, $"createdTo={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddDays(-1).ToString("O"))}"));
        Assert.Equal(6, (await ListIdsAsync(client, $"createdFrom={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddDays(-1).ToString("O"))}")).Length);

        var (bad, problem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/messages?status=LOST&channel=PIGEON&type=X&customerId=nope&createdFrom=yesterday&after=-1&limit=501");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(["after", "channel", "createdFrom", "customerId", "limit", "status", "type"], ErrorFields(problem));
    }

    [Fact]
    public async Task Only_a_pending_message_not_being_sent_can_be_cancelled()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var pending = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        var sent = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, sent, "status = 'SENT', sent_at = now()");
        var claimed = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, claimed, "locked_by = 'worker-1', locked_until = now() + interval '1 minute'");
        var abandoned = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, abandoned, "locked_by = 'worker-2', locked_until = now() - interval '1 minute'");
        using var client = Api.As(key);

        var (cancel, view) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{pending}/cancel");
        var (twice, again) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{pending}/cancel");
        var (ofSent, sentProblem) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{sent}/cancel");
        var (ofClaimed, claimedProblem) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{claimed}/cancel");
        var (missing, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages/999999999/cancel");

        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        Assert.Equal(("CANCELLED", "cancelled by api-key:default"), (view!["status"]!.GetValue<string>(), view["statusReason"]!.GetValue<string>()));
        Assert.Equal("CANCELLED", (await Outbox.GetAsync(Db.DataSource, pending)).Status);
        // A retried cancel gets the same answer; a sent or claimed message cannot be cancelled.
        Assert.Equal((HttpStatusCode.OK, "cancelled by api-key:default"), (twice.StatusCode, again!["statusReason"]!.GetValue<string>()));
        Assert.Equal([HttpStatusCode.Conflict, HttpStatusCode.Conflict, HttpStatusCode.NotFound],
            new[] { ofSent.StatusCode, ofClaimed.StatusCode, missing.StatusCode });
        Assert.Contains("SENT", sentProblem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("being sent", claimedProblem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(("SENT", "PENDING"), ((await Outbox.GetAsync(Db.DataSource, sent)).Status, (await Outbox.GetAsync(Db.DataSource, claimed)).Status));

        // A lease that ran out (its worker died or is late) no longer protects the row; cancelling clears it, so the late worker cannot record over it.
        var (ofAbandoned, _) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{abandoned}/cancel");
        Assert.Equal(HttpStatusCode.OK, ofAbandoned.StatusCode);
        var row = await Outbox.GetAsync(Db.DataSource, abandoned);
        Assert.Equal(("CANCELLED", (string?)null), (row.Status, row.LockedBy));
    }

    [Fact]
    public async Task The_admin_reads_and_cancels_for_a_company_named_in_X_Company_Id_but_never_sends()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        using var admin = Api.AsAdminFor(company);
        using var adminWithoutCompany = Api.As(TestKeys.Admin);

        var (get, view) = await admin.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}");
        var (list, page) = await admin.SendJsonAsync(HttpMethod.Get, "/v1/messages");
        var (cancel, cancelled) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{id}/cancel");
        var (send, _) = await admin.PostAsync("/v1/messages", new { customerId = customer, type = "INVOICE", channel = "SMS", content = "Hi" });
        var (noCompany, noCompanyProblem) = await adminWithoutCompany.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}");
        var (noCompanyList, _) = await adminWithoutCompany.SendJsonAsync(HttpMethod.Get, "/v1/messages");
        var (noCompanyCancel, _) = await adminWithoutCompany.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{id}/cancel");

        Assert.Equal((HttpStatusCode.OK, id), (get.StatusCode, view!["id"]!.GetValue<long>()));
        Assert.Equal([id], page!["items"]!.AsArray().Select(m => m!["id"]!.GetValue<long>()));
        // The operator sees a message's course, not its content: the practice's client's text is the practice's to read.
        Assert.Equal((null, null, "{}"), (view["content"]?.GetValue<string>(), view["subject"]?.GetValue<string>(), view["templateData"]!.ToJsonString()));
        Assert.Null(page["items"]![0]!["subject"]?.GetValue<string>());
        Assert.NotNull((await Api.As(key).SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}")).Body!["content"]?.GetValue<string>());
        Assert.Equal((HttpStatusCode.OK, "cancelled by admin"), (cancel.StatusCode, cancelled!["statusReason"]!.GetValue<string>()));
        Assert.Equal(HttpStatusCode.Forbidden, send.StatusCode);
        Assert.Equal([HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.BadRequest], new[] { noCompany.StatusCode, noCompanyList.StatusCode, noCompanyCancel.StatusCode });
        Assert.Equal("Company required", noCompanyProblem!["title"]!.GetValue<string>());
    }

    [Fact]
    public async Task Another_company_never_sees_or_touches_a_companys_messages()
    {
        var (companyA, keyA) = await Api.NewCompanyAsync("A");
        var (companyB, keyB) = await Api.NewCompanyAsync("B");
        var customerA = await TestData.CreateCustomerAsync(Db.DataSource, companyA, externalId: "C-1");
        await TestData.CreateCustomerAsync(Db.DataSource, companyB, externalId: "C-2");
        var pendingA = await Outbox.EnqueueAsync(Db.DataSource, companyA, customerA);
        var failedA = await Outbox.EnqueueAsync(Db.DataSource, companyA, customerA);
        await SetAsync(Db.DataSource, failedA, "status = 'FAILED', error_message = 'boom'");
        using var asB = Api.As(keyB);
        using var adminAsB = Api.AsAdminFor(companyB);

        foreach (var client in new[] { asB, adminAsB })
        {
            foreach (var (method, path) in new[]
            {
                (HttpMethod.Get, $"/v1/messages/{pendingA}"), (HttpMethod.Post, $"/v1/messages/{pendingA}/cancel"),
                (HttpMethod.Post, $"/v1/messages/{failedA}/replay"), (HttpMethod.Get, $"/v1/messages/{failedA}"),
            })
            {
                var (response, body) = await client.SendJsonAsync(method, path);
                Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
                Assert.DoesNotContain("boom", body?.ToJsonString() ?? "", StringComparison.Ordinal);
            }
            var (_, page) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages?customerId={customerA}");
            Assert.Empty(page!["items"]!.AsArray());
            var (_, all) = await client.SendJsonAsync(HttpMethod.Get, "/v1/messages?limit=500");
            Assert.Empty(all!["items"]!.AsArray());
            var (_, replayed) = await client.PostAsync("/v1/messages/replay", new { status = "FAILED", dryRun = false });
            Assert.Equal(0, replayed!["matched"]!.GetValue<int>());
            var (_, analytics) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics");
            Assert.Equal(0, analytics!["total"]!.GetValue<int>());
        }
        var (sendForA, sendProblem) = await asB.PostAsync("/v1/messages", new { customerId = customerA, type = "INVOICE", channel = "SMS", content = "Hi" });
        var (bulkForA, bulkProblem) = await asB.PostAsync("/v1/messages/bulk", new { messages = new[] { new { customerExternalId = "C-1", type = "INVOICE", channel = "SMS", content = "Hi" } } });

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest), (sendForA.StatusCode, bulkForA.StatusCode));
        Assert.Equal(["customerId"], ErrorFields(sendProblem));
        Assert.Equal(["messages[0].customerExternalId"], ErrorFields(bulkProblem));
        Assert.Equal(("PENDING", "FAILED"), ((await Outbox.GetAsync(Db.DataSource, pendingA)).Status, (await Outbox.GetAsync(Db.DataSource, failedA)).Status));
        Assert.Equal(0, await CountAsync(Db.DataSource, companyB));
    }

    [Fact]
    public async Task The_openapi_document_describes_the_message_and_analytics_endpoints()
    {
        using var anonymous = Api.CreateClient();

        var (response, document) = await anonymous.SendJsonAsync(HttpMethod.Get, "/openapi/v1.json");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var paths = document!["paths"]!.AsObject();
        Assert.All(new[] { "/v1/messages", "/v1/messages/bulk", "/v1/messages/{id}", "/v1/messages/{id}/cancel", "/v1/messages/{id}/replay", "/v1/messages/replay", "/v1/analytics" },
            path => Assert.True(paths.ContainsKey(path), $"{path} is missing"));
        Assert.NotNull(paths["/v1/messages/bulk"]!["post"]!["requestBody"]);
        // Instants are strings in date-time format, nullable ones also null (the instant converter must not hide that).
        var schemas = document["components"]!["schemas"]!;
        Assert.Equal("""{"type":"string","format":"date-time"}""", schemas["CompanyResponse"]!["properties"]!["createdAt"]!.ToJsonString());
        Assert.Equal("""{"type":["null","string"],"format":"date-time"}""", schemas["KeyResponse"]!["properties"]!["lastUsedAt"]!.ToJsonString());

        // How to authenticate, which operations need it, the headers they read, and the problem answers.
        Assert.Equal(("http", "bearer"), (document["components"]!["securitySchemes"]!["apiKey"]!["type"]!.GetValue<string>(), document["components"]!["securitySchemes"]!["apiKey"]!["scheme"]!.GetValue<string>()));
        var send = paths["/v1/messages"]!["post"]!;
        Assert.Equal("""[{"apiKey":[]}]""", send["security"]!.ToJsonString());
        Assert.Equal(["401", "403", "429", "default"], send["responses"]!.AsObject().Select(r => r.Key).Where(k => k is "401" or "403" or "429" or "default").Order(StringComparer.Ordinal));
        Assert.Equal("object", send["responses"]!["401"]!["content"]!["application/problem+json"]!["schema"]!["type"]!.GetValue<string>());
        Assert.Contains(send["parameters"]!.AsArray(), p => p!["name"]!.GetValue<string>() == "Idempotency-Key" && p["in"]!.GetValue<string>() == "header");
        Assert.Contains(paths["/v1/messages/bulk"]!["post"]!["parameters"]!.AsArray(), p => p!["name"]!.GetValue<string>() == "Idempotency-Key");
        Assert.Contains(paths["/v1/customers/{id}/preferences"]!["put"]!["parameters"]!.AsArray(), p => p!["name"]!.GetValue<string>() == "If-Match");
        // Webhooks authenticate by the provider's signature, not a key.
        Assert.Null(paths["/webhooks/{provider}/{companyId}"]!["post"]!["security"]);

        // Text fields the endpoints parse as enums are described with their values; a GET's fields a PUT may send back are not request fields.
        string[] Values(string schema, string property) => [.. schemas[schema]!["properties"]![property]!["enum"]!.AsArray().Select(v => v!.GetValue<string>())];
        Assert.Equal(["EMAIL", "WHATSAPP", "SMS", "BOTH", "PREFERRED"], Values("SendMessageRequest", "channel"));
        Assert.Equal(["INVOICE", "COMPLIANCE_REMINDER", "PAYMENT_REMINDER", "GENERAL_UPDATE"], Values("SendMessageRequest", "type"));
        Assert.Equal(["DAILY", "WEEKLY", "MONTHLY", "CUSTOM"], Values("PreferencesRequest", "reminderFrequency"));
        Assert.Equal(["EMAIL", "WHATSAPP", "SMS"], Values("TemplateRequest", "channel"));
        Assert.Null(schemas["CustomerRequest"]!["properties"]!["createdAt"]);
        Assert.NotNull(schemas["CustomerRequest"]!["properties"]!["email"]);
    }

    private static async Task<long[]> ListIdsAsync(HttpClient client, string query)
    {
        var (response, page) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages?{query}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return [.. page!["items"]!.AsArray().Select(m => m!["id"]!.GetValue<long>())];
    }

    [Fact]
    public async Task A_row_given_another_companys_id_shows_none_of_that_companys_files()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var (sent, accepted) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages", new
        {
            customerId = customer, type = "INVOICE", channel = "EMAIL", subject = "Invoice INV-1042", content = "Attached.",
            attachments = new[] { new { fileName = "INV-1042.pdf", contentType = "application/pdf", contentBase64 = "JVBERg==" } },
        });
        Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
        var id = accepted!["messages"]![0]!["id"]!.GetValue<long>();
        var (other, otherKey) = await Api.NewCompanyAsync();
        using var otherClient = Api.As(otherKey);
        var otherCustomer = await TestData.CreateCustomerAsync(Db.DataSource, other);
        // The other company's import COPYs a row with the same id.
        await TestData.ScalarAsync<long>(Db.DataSource, """
            INSERT INTO communication_logs (id, company_id, customer_id, type, channel, subject, content)
            OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, 'GENERAL_UPDATE', 'EMAIL', 'Update', 'Imported') RETURNING id
            """, id, other, otherCustomer);

        var (_, theirs) = await otherClient.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}");
        var (_, ours) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}");

        Assert.Empty(theirs!["attachments"]!.AsArray());
        Assert.Equal("INV-1042.pdf", Assert.Single(ours!["attachments"]!.AsArray())!["fileName"]!.GetValue<string>());
    }
}
