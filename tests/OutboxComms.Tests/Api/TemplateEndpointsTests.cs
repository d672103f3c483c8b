using System.Net;
using System.Text.Json.Nodes;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

public sealed class TemplateEndpointsTests(DatabaseFixture db) : ApiTest(db)
{
    private static readonly object InvoiceEmail = new
    {
        channel = "EMAIL",
        subject = "Invoice {{ invoice_number }} from {{ practice }}",
        body = "Dear {{ customer.name }},\nInvoice {{ invoice_number }} for {{ amount }} is attached.",
        htmlBody = "<p>Dear {{ customer.name | html.escape }},</p><p>Invoice <b>{{ invoice_number }}</b></p>",
    };

    [Fact]
    public async Task Put_creates_version_1_a_change_bumps_the_version_and_resending_the_same_text_does_not()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);

        var (created, first) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice-issued", InvoiceEmail);
        var (changed, second) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice-issued", new { channel = "EMAIL", subject = "Invoice {{ invoice_number }}", body = "New text" });
        var (resent, third) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice-issued", new { channel = "EMAIL", subject = "Invoice {{ invoice_number }}", body = "New text" });

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal("/v1/templates/invoice-issued", created.Headers.Location!.OriginalString);
        Assert.Equal(1, first!["version"]!.GetValue<int>());
        Assert.Equal("en", first["language"]!.GetValue<string>());
        Assert.Equal("EMAIL", first["channel"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, changed.StatusCode);
        Assert.Equal(2, second!["version"]!.GetValue<int>());
        Assert.Equal(first["id"]!.GetValue<string>(), second["id"]!.GetValue<string>());
        Assert.Null(second["htmlBody"]);
        Assert.Equal(HttpStatusCode.OK, resent.StatusCode);
        Assert.Equal(2, third!["version"]!.GetValue<int>());
        Assert.Equal(2, await TestData.ScalarAsync<int>(Db.DataSource, "SELECT version FROM message_templates WHERE company_id = $1 AND key = 'invoice-issued'", company));
        Assert.Equal("New text", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT body FROM message_templates WHERE company_id = $1 AND key = 'invoice-issued'", company));
    }

    [Fact]
    public async Task A_key_holds_one_template_per_channel_and_language_and_a_whatsapp_template_maps_to_the_approved_one()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        await PutAsync(client, "gst-reminder", new { channel = "EMAIL", subject = "GSTR-3B due", body = "File GSTR-3B by {{ due_date }}." });
        await PutAsync(client, "gst-reminder", new { channel = "EMAIL", language = "hi", subject = "GSTR-3B", body = "GSTR-3B {{ due_date }} तक दाखिल करें।" });
        await PutAsync(client, "gst-reminder", new { channel = "SMS", body = "GSTR-3B due {{ due_date }}" });
        var whatsApp = await PutAsync(client, "gst-reminder", new
        {
            channel = "WHATSAPP", body = "GSTR-3B is due on {{ due_date }}.",
            providerTemplate = new { name = "gst_due_v2", language = "en_US", parameters = new[] { "{{ customer.name }}", "{{ due_date }}" } },
        });
        await PutAsync(client, "other-key", new { channel = "SMS", body = "Hello" });

        Assert.Equal("gst_due_v2", whatsApp["providerTemplate"]!["name"]!.GetValue<string>());
        Assert.Equal(["{{ customer.name }}", "{{ due_date }}"], whatsApp["providerTemplate"]!["parameters"]!.AsArray().Select(p => p!.GetValue<string>()));
        Assert.Equal("gst_due_v2/en_US/[\"{{ customer.name }}\", \"{{ due_date }}\"]", await TestData.ScalarAsync<string>(Db.DataSource,
            "SELECT provider_template_name || '/' || provider_template_language || '/' || parameter_mapping::text FROM message_templates WHERE company_id = $1 AND channel = 'WHATSAPP'", company));

        var (_, variants) = await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/gst-reminder");
        Assert.Equal(["EMAIL/en", "EMAIL/hi", "SMS/en", "WHATSAPP/en"], Variants(variants!));
        var (_, all) = await client.SendJsonAsync(HttpMethod.Get, "/v1/templates");
        Assert.Equal(5, all!.AsArray().Count);
        var (_, filtered) = await client.SendJsonAsync(HttpMethod.Get, "/v1/templates?key=other-key");
        Assert.Equal(["SMS/en"], Variants(filtered!));
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/no-such-key")).Response.StatusCode);
    }

    [Fact]
    public async Task A_scriban_syntax_error_is_a_400_naming_the_field_and_its_line_and_column()
    {
        using var client = await NewCompanyClientAsync();

        var (body, bodyProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/broken", new { channel = "EMAIL", subject = "Fine", body = "Dear client,\nYour invoice {{ if }} is attached." });
        var (parameter, parameterProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/broken", new
        {
            channel = "WHATSAPP", body = "ok", providerTemplate = new { name = "invoice_v1", parameters = new[] { "{{ customer.name }}", "{{ for }}" } },
        });

        var bodyError = ValidationProblemAssert.NamesFields(body, bodyProblem, "body")["body"];
        Assert.Contains("line 2, column", bodyError, StringComparison.Ordinal);
        Assert.Contains("line 1, column", ValidationProblemAssert.NamesFields(parameter, parameterProblem, "providerTemplate.parameters[1]")["providerTemplate.parameters[1]"], StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/broken")).Response.StatusCode);
    }

    [Fact]
    public async Task Template_fields_are_validated_with_each_field_named()
    {
        using var client = await NewCompanyClientAsync();

        var (missing, missingProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/t1", new { language = "English" });
        var (voice, voiceProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/t1", new { channel = "VOICE", body = "Hi" });
        var (sms, smsProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/t1", new
        {
            channel = "SMS", body = "Hi", subject = "S", htmlBody = "<p>Hi</p>", providerTemplate = new { name = "x" },
        });
        var (whatsApp, whatsAppProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/t1", new { channel = "WHATSAPP", body = "Hi", providerTemplate = new { parameters = Array.Empty<string>() } });
        var (badKey, badKeyProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/-bad%20key", new { channel = "SMS", body = "Hi" });

        ValidationProblemAssert.NamesFields(missing, missingProblem, "channel", "language", "body");
        ValidationProblemAssert.NamesFields(voice, voiceProblem, "channel");
        ValidationProblemAssert.NamesFields(sms, smsProblem, "subject", "htmlBody", "providerTemplate");
        ValidationProblemAssert.NamesFields(whatsApp, whatsAppProblem, "providerTemplate.name");
        ValidationProblemAssert.NamesFields(badKey, badKeyProblem, "key");

        // What every message from the template would fail on at the send: a blank email subject, an empty WhatsApp parameter.
        var (blankSubject, blankSubjectProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/t1", new { channel = "EMAIL", body = "Hi", subject = "  " });
        var (emptyParameter, emptyParameterProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/t1",
            new { channel = "WHATSAPP", body = "Hi", providerTemplate = new { name = "invoice_ready", parameters = new[] { "{{ invoice.number }}", " " } } });
        ValidationProblemAssert.NamesFields(blankSubject, blankSubjectProblem, "subject");
        ValidationProblemAssert.NamesFields(emptyParameter, emptyParameterProblem, "providerTemplate.parameters[1]");
    }

    [Fact]
    public async Task A_language_tag_in_another_case_names_the_same_template()
    {
        using var client = await NewCompanyClientAsync();

        var (created, first) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/notice", new { channel = "EMAIL", language = "en-in", subject = "Notice", body = "v1" });
        var (replaced, second) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/notice", new { channel = "EMAIL", language = "en-IN", subject = "Notice", body = "v2" });

        Assert.Equal((HttpStatusCode.Created, "en-IN"), (created.StatusCode, first!["language"]!.GetValue<string>()));
        Assert.Equal((HttpStatusCode.OK, 2, "en-IN"), (replaced.StatusCode, second!["version"]!.GetValue<int>(), second["language"]!.GetValue<string>()));
        Assert.Equal(["EMAIL/en-IN"], Variants((await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/notice")).Body!));
        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice?language=EN-in&force=true")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/notice")).Response.StatusCode);
    }

    [Fact]
    public async Task Delete_removes_the_named_variants_or_all_of_a_key()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "notice", new { channel = "EMAIL", body = "en email" });
        await PutAsync(client, "notice", new { channel = "EMAIL", language = "hi", body = "hi email" });
        await PutAsync(client, "notice", new { channel = "SMS", body = "en sms" });
        await PutAsync(client, "notice", new { channel = "SMS", language = "hi", body = "hi sms" });
        await PutAsync(client, "keep", new { channel = "SMS", body = "kept" });

        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice?channel=SMS&language=hi")).Response.StatusCode);
        Assert.Equal(["EMAIL/en", "EMAIL/hi", "SMS/en"], Variants((await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/notice")).Body!));
        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice?channel=EMAIL")).Response.StatusCode);
        Assert.Equal(["SMS/en"], Variants((await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/notice")).Body!));
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice?language=fr")).Response.StatusCode);
        var (badChannel, problem) = await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice?channel=FAX");
        ValidationProblemAssert.NamesFields(badChannel, problem, "channel");
        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/notice")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/notice")).Response.StatusCode);
        Assert.Equal(["SMS/en"], Variants((await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/keep")).Body!));
    }

    [Fact]
    public async Task The_last_templates_of_a_key_that_a_schedule_or_a_pending_message_names_are_deleted_only_when_forced()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "digest", new { channel = "EMAIL", subject = "Digest", body = "en" });
        await PutAsync(client, "digest", new { channel = "EMAIL", language = "hi", subject = "Digest", body = "hi" });
        var (scheduled, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/monday-digest",
            new { cron = "0 9 * * MON", type = "GENERAL_UPDATE", templateKey = "digest", audience = new { kind = "ALL_CUSTOMERS" } });
        Assert.Equal(HttpStatusCode.Created, scheduled.StatusCode);
        var (_, customer) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { externalId = "C-1", name = "Client", email = "client@example.com" });
        var (queued, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/messages",
            new { customerId = customer!["id"]!.GetValue<string>(), type = "GENERAL_UPDATE", channel = "EMAIL", templateKey = "digest" });
        Assert.Equal(HttpStatusCode.Accepted, queued.StatusCode);

        // One language of two: English remains to fall back on.
        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/digest?language=hi")).Response.StatusCode);
        // The last one: the schedule would fail every Monday.
        var (refused, problem) = await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/digest");
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        Assert.Equal("Template 'digest' is still named by 1 schedule(s) (monday-digest), 1 pending message(s), which would fail when they fire. Point them at another template first, or delete with ?force=true.",
            problem!["detail"]!.GetValue<string>());
        Assert.Equal(["EMAIL/en"], Variants((await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/digest")).Body!));

        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/digest?force=true")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/digest")).Response.StatusCode);
    }

    [Fact]
    public async Task Preview_renders_subject_body_and_html_with_the_data_and_customer_given()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "invoice-issued", InvoiceEmail);

        var (response, preview) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice-issued/preview", new
        {
            channel = "EMAIL",
            data = new { invoice_number = "INV-1042", amount = "₹11,800", practice = "Rao & Associates" },
            customer = new { name = "Mehta <Textiles>" },
        });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("invoice-issued@v1/EMAIL/en", preview!["template"]!.GetValue<string>());
        Assert.Equal("Invoice INV-1042 from Rao & Associates", preview["subject"]!.GetValue<string>());
        Assert.Equal("Dear Mehta <Textiles>,\nInvoice INV-1042 for ₹11,800 is attached.", preview["body"]!.GetValue<string>());
        Assert.Equal("<p>Dear Mehta &lt;Textiles&gt;,</p><p>Invoice <b>INV-1042</b></p>", preview["htmlBody"]!.GetValue<string>());
        Assert.Null(preview["providerTemplate"]);

        // The HTML body escapes data its author wrote without html.escape, as the worker does.
        var (_, marked) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice-issued/preview",
            new { channel = "EMAIL", data = new { invoice_number = "<i>INV-1044</i>", amount = "₹1", practice = "P" } });
        Assert.Equal("<p>Dear Sample Client Pvt Ltd,</p><p>Invoice <b>&lt;i&gt;INV-1044&lt;/i&gt;</b></p>", marked!["htmlBody"]!.GetValue<string>());

        // A number beyond decimal's range renders (as a double) rather than failing the request or, in the worker, the message.
        var (huge, hugePreview) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice-issued/preview",
            """{"channel":"EMAIL","data":{"invoice_number":"INV-1043","amount":1e30,"practice":"Rao & Associates"}}""");
        Assert.Equal(HttpStatusCode.OK, huge.StatusCode);
        Assert.StartsWith("Dear ", hugePreview!["body"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("INV-1043 for 1E+30", hugePreview["body"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Preview_uses_the_sample_customer_picks_the_language_like_the_worker_and_renders_whatsapp_parameters()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "due", new
        {
            channel = "WHATSAPP", body = "{{ customer.name }}: {{ form }} due ({{ message.type }} on {{ message.channel }})",
            providerTemplate = new { name = "form_due", parameters = new[] { "{{ customer.name }}", "{{ form | string.upcase }}" } },
        });
        await PutAsync(client, "due", new { channel = "WHATSAPP", language = "hi", body = "{{ customer.name }}: {{ form }} देय है" });

        var (_, sample) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/due/preview", new { channel = "WHATSAPP", type = "COMPLIANCE_REMINDER", data = new { form = "mgt-7" } });
        var (_, hindi) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/due/preview", new { channel = "WHATSAPP", data = new { form = "MGT-7" }, customer = new { name = "Sharma", preferredLanguage = "hi" } });
        var (_, fallback) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/due/preview", new { channel = "WHATSAPP", data = new { form = "DIR-3" }, customer = new { preferredLanguage = "ta" } });
        var (_, chosen) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/due/preview", new { channel = "WHATSAPP", language = "hi", data = new { form = "AOC-4" } });

        Assert.Equal("due@v1/WHATSAPP/en", sample!["template"]!.GetValue<string>());
        Assert.Equal("Sample Client Pvt Ltd: mgt-7 due (COMPLIANCE_REMINDER on WHATSAPP)", sample["body"]!.GetValue<string>());
        Assert.Null(sample["subject"]);
        Assert.Equal("form_due", sample["providerTemplate"]!["name"]!.GetValue<string>());
        Assert.Equal("en", sample["providerTemplate"]!["language"]!.GetValue<string>());
        Assert.Equal(["Sample Client Pvt Ltd", "MGT-7"], sample["providerTemplate"]!["parameters"]!.AsArray().Select(p => p!.GetValue<string>()));
        Assert.Equal("due@v1/WHATSAPP/hi", hindi!["template"]!.GetValue<string>());
        Assert.Equal("Sharma: MGT-7 देय है", hindi["body"]!.GetValue<string>());
        Assert.Equal("due@v1/WHATSAPP/en", fallback!["template"]!.GetValue<string>());
        Assert.Equal("Sample Client Pvt Ltd: AOC-4 देय है", chosen!["body"]!.GetValue<string>());
    }

    [Fact]
    public async Task Preview_renders_dates_in_the_customers_time_zone_and_refuses_an_unknown_zone()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "stamp", new { channel = "SMS", body = "{{ date.now | date.to_string '%Y-%m-%d %H:%M' }}|{{ message.created_at | date.to_string '%Y-%m-%d %H:%M' }}|{{ due | date.parse | date.to_string '%d %b' }}" });

        async Task<string[]> PreviewAsync(string timeZone)
        {
            var (response, preview) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/stamp/preview", new { channel = "SMS", data = new { due = "30/11/2026" }, customer = new { timeZone } });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return preview!["body"]!.GetValue<string>().Split('|');
        }
        var kiritimati = await PreviewAsync("Pacific/Kiritimati");   // UTC+14
        var pagoPago = await PreviewAsync("Pacific/Pago_Pago");      // UTC-11

        static DateTime Read(string text) => DateTime.ParseExact(text, "yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange((Read(kiritimati[0]) - Read(pagoPago[0])).TotalMinutes, 25 * 60 - 1, 25 * 60 + 1);
        Assert.InRange((Read(kiritimati[1]) - Read(pagoPago[1])).TotalMinutes, 25 * 60 - 1, 25 * 60 + 1);
        Assert.Equal("30 Nov", kiritimati[2]);

        var (unknown, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/stamp/preview", new { channel = "SMS", customer = new { timeZone = "IST" } });
        Assert.Contains("IANA", ValidationProblemAssert.NamesFields(unknown, problem, "customer.timeZone")["customer.timeZone"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Preview_shows_subjects_and_whatsapp_parameters_as_the_worker_sends_them_and_refuses_what_it_would_fail()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "invoice", new { channel = "EMAIL", subject = "Invoice {{ number }}", body = "Attached." });
        await PutAsync(client, "invoice", new
        {
            channel = "WHATSAPP", language = "en-GB", body = "Invoice {{ number }}",
            providerTemplate = new { name = "invoice_ready", parameters = new[] { "{{ number }}", "{{ address }}" } },
        });

        var (_, email) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice/preview", new { channel = "EMAIL", data = new { number = "INV-7\r\nBcc: x@example.com" } });
        var (_, whatsApp) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice/preview",
            new { channel = "WHATSAPP", language = "en-GB", data = new { number = "INV-7", address = "12 MG Road,\n  Bengaluru" } });
        var (empty, emptyProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice/preview",
            new { channel = "WHATSAPP", language = "en-GB", data = new { number = "INV-8", address = "  " } });
        var (trimmed, trimmedBody) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/invoice/preview", new { channel = "EMAIL", data = new { number = "" } });
        await PutAsync(client, "reference", new { channel = "EMAIL", subject = "{{ number }}", body = "Attached." });
        var (noSubject, noSubjectProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/reference/preview", new { channel = "EMAIL", data = new { number = " " } });

        Assert.Equal("Invoice INV-7 Bcc: x@example.com", email!["subject"]!.GetValue<string>());
        Assert.Equal(["INV-7", "12 MG Road, Bengaluru"], whatsApp!["providerTemplate"]!["parameters"]!.AsArray().Select(p => p!.GetValue<string>()));
        Assert.Equal("en_GB", whatsApp["providerTemplate"]!["language"]!.GetValue<string>());
        Assert.Contains("renders empty", ValidationProblemAssert.NamesFields(empty, emptyProblem, "providerTemplate.parameters[1]")["providerTemplate.parameters[1]"], StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, trimmed.StatusCode); // "Invoice " is not empty: only a subject with nothing left is
        Assert.Equal("Invoice", trimmedBody!["subject"]!.GetValue<string>());
        Assert.Contains("renders empty", ValidationProblemAssert.NamesFields(noSubject, noSubjectProblem, "subject")["subject"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Preview_walks_an_objects_keys_in_the_order_the_sent_message_will_and_refuses_data_under_the_models_own_names()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "fees", new { channel = "EMAIL", subject = "Fees", body = "{{ for k in fees | object.keys }}{{ k }};{{ end }}" });
        const string Fees = """{"Professional fee": 10000, "GST": 1800, "Total": 11800, "zz": 1, "é": 2, "ab": 3, "B": 4}""";

        var (response, preview) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/fees/preview",
            JsonNode.Parse($$$"""{"channel": "EMAIL", "data": {"fees": {{{Fees}}}}}"""));
        var (reserved, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/fees/preview",
            new { channel = "EMAIL", data = new { message = "Your DSC expires on 30/11", customer = "Mehta", fees = new { } } });

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        // The worker reads template_data back from jsonb, which orders an object's keys its own way.
        var stored = await TestData.ScalarAsync<string>(Db.DataSource, "SELECT string_agg(k, ';') || ';' FROM jsonb_object_keys($1::jsonb) k", Fees);
        Assert.Equal("B;ab;zz;é;GST;Total;Professional fee;", stored);
        Assert.Equal(stored, preview!["body"]!.GetValue<string>());
        var fields = ValidationProblemAssert.NamesFields(reserved, problem, "data.message", "data.customer");
        Assert.Contains("{{ message.… }}", fields["data.message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Preview_answers_a_render_error_as_a_400_naming_the_field_and_a_missing_template_as_404()
    {
        using var client = await NewCompanyClientAsync();
        await PutAsync(client, "runaway", new { channel = "EMAIL", subject = "Fine", body = "{{ for i in 1..1000000 }}x{{ end }}" });

        var (runaway, problem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/runaway/preview", new { channel = "EMAIL" });
        var (wrongChannel, _) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/runaway/preview", new { channel = "SMS" });
        var (noChannel, noChannelProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/templates/runaway/preview", new { data = new[] { 1 } });

        Assert.Contains("body does not render", ValidationProblemAssert.NamesFields(runaway, problem, "body")["body"], StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, wrongChannel.StatusCode);
        ValidationProblemAssert.NamesFields(noChannel, noChannelProblem, "channel", "data");
    }

    [Fact]
    public async Task Another_company_cannot_see_change_delete_or_preview_a_template()
    {
        var (companyA, keyA) = await Api.NewCompanyAsync("Practice A");
        var (_, keyB) = await Api.NewCompanyAsync("Practice B");
        using var a = Api.As(keyA);
        using var b = Api.As(keyB);
        await PutAsync(a, "a-secret", new { channel = "EMAIL", subject = "A", body = "A's wording" });

        Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Get, "/v1/templates/a-secret")).Response.StatusCode);
        Assert.Empty((await b.SendJsonAsync(HttpMethod.Get, "/v1/templates")).Body!.AsArray());
        Assert.Empty((await b.SendJsonAsync(HttpMethod.Get, "/v1/templates?key=a-secret")).Body!.AsArray());
        Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Post, "/v1/templates/a-secret/preview", new { channel = "EMAIL" })).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Delete, "/v1/templates/a-secret")).Response.StatusCode);
        // The same key in another company is that company's own template.
        var (created, own) = await b.SendJsonAsync(HttpMethod.Put, "/v1/templates/a-secret", new { channel = "EMAIL", subject = "B", body = "B's wording" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        Assert.Equal(1, own!["version"]!.GetValue<int>());

        var (_, mine) = await a.SendJsonAsync(HttpMethod.Get, "/v1/templates/a-secret");
        Assert.Equal("A's wording", mine!.AsArray().Single()!["body"]!.GetValue<string>());
        Assert.Equal(1, mine.AsArray().Single()!["version"]!.GetValue<int>());
        Assert.Equal("A's wording", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT body FROM message_templates WHERE company_id = $1", companyA));
    }

    private static async Task<JsonNode> PutAsync(HttpClient client, string key, object body)
    {
        var (response, template) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/templates/{key}", body);
        Assert.True(response.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK, $"{(int)response.StatusCode}: {template?.ToJsonString()}");
        return template!;
    }

    private static List<string> Variants(JsonNode templates) =>
        templates.AsArray().Select(t => $"{t!["channel"]!.GetValue<string>()}/{t["language"]!.GetValue<string>()}").ToList();
}
