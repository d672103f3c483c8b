using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Messaging;
using static OutboxComms.Tests.Providers.MessagingProviderTestHost;

namespace OutboxComms.Tests.Providers;

public sealed class TwilioProviderTests : IDisposable
{
    private const string Sid = "AC0123456789abcdef0123456789abcdef";
    private const string Token = "twilio-auth-token";
    private const string MessagesPath = $"/2010-04-01/Accounts/{Sid}/Messages.json";

    private readonly MessagingProviderTestHost host = new();

    private TwilioProvider Twilio => host.Provider<TwilioProvider>();

    private ProviderAccount Account(Channel channel, string from = "+14155238886") => new()
    {
        CompanyId = Guid.NewGuid(),
        Channel = channel,
        Provider = "TWILIO",
        AccountSid = Sid,
        ApiKey = Token,
        From = from,
        BaseUrl = host.BaseUrl,
        DltEntityId = "1201159146335887766",
        DltTemplateId = "1207161729612345678",
    };

    private const string Created = """
        {"sid":"SM1f0e2d3c4b5a69788796a5b4c3d2e1f0","status":"queued","price":"-0.0075","price_unit":"USD","error_code":null}
        """;

    [Fact]
    public async Task Whatsapp_document_goes_as_body_and_media_url_between_whatsapp_addresses_and_reports_sid_and_price()
    {
        host.Answers("POST", MessagesPath, 201, Created);
        var message = Message(Channel.WhatsApp) with { Attachments = [LinkedPdf] };

        var result = await Twilio.SendAsync(message, Account(Channel.WhatsApp), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("SM1f0e2d3c4b5a69788796a5b4c3d2e1f0", result.ProviderMessageId);
        Assert.Equal(0.0075m, result.Cost);
        Assert.Equal("USD", result.CostCurrency);
        var request = host.SingleRequest;
        Assert.Equal("POST", request.Method);
        Assert.Equal(MessagesPath, request.Path);
        Assert.Equal(BasicAuth(Sid, Token), Header(request, "Authorization"));
        var form = Form(request);
        Assert.Equal("whatsapp:+919876543210", form["To"]);
        Assert.Equal("whatsapp:+14155238886", form["From"]);
        Assert.Equal(message.Body, form["Body"]);
        Assert.Equal(LinkedPdf.Url, form["MediaUrl"]);
        Assert.Equal(["Body", "From", "MediaUrl", "To"], form.Keys.Order());
    }

    [Fact]
    public async Task Whatsapp_template_goes_as_content_sid_with_positional_variables_and_no_body()
    {
        host.Answers("POST", MessagesPath, 201, """{"sid":"MM77","status":"accepted","price":null,"price_unit":"USD"}""");
        var message = Message(Channel.WhatsApp) with
        {
            ProviderTemplate = new ProviderTemplate("HXb5b62575e6e4ff6129ad7c8efe1f983e", "en", ["Asha Rao", "INV-7", "1,180.00"]),
        };

        var result = await Twilio.SendAsync(message, Account(Channel.WhatsApp, from: "whatsapp:+14155238886"), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("MM77", result.ProviderMessageId);
        Assert.Null(result.Cost);
        Assert.Null(result.CostCurrency);
        var form = Form(host.SingleRequest);
        Assert.Equal("whatsapp:+14155238886", form["From"]);
        Assert.Equal("HXb5b62575e6e4ff6129ad7c8efe1f983e", form["ContentSid"]);
        var variables = Json(form["ContentVariables"]);
        Assert.Equal("Asha Rao", variables.GetProperty("1").GetString());
        Assert.Equal("INV-7", variables.GetProperty("2").GetString());
        Assert.Equal("1,180.00", variables.GetProperty("3").GetString());
        Assert.Equal(["ContentSid", "ContentVariables", "From", "To"], form.Keys.Order());
    }

    [Fact]
    public async Task A_whatsapp_template_with_a_document_is_refused_rather_than_sent_without_it()
    {
        var message = Message(Channel.WhatsApp) with
        {
            ProviderTemplate = new ProviderTemplate("HXb5b62575e6e4ff6129ad7c8efe1f983e", "en", ["Asha Rao", "INV-7", "1,180.00"]),
            Attachments = [LinkedPdf],
        };

        var result = await Twilio.SendAsync(message, Account(Channel.WhatsApp, from: "whatsapp:+14155238886"), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Contains("cannot carry the attached document INV-7.pdf", result.Error, StringComparison.Ordinal);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task A_success_without_twilios_json_is_not_taken_as_sent()
    {
        host.Answers("POST", MessagesPath, 200, "<html><body>Welcome to nginx!</body></html>");

        var result = await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms, from: "OUTBOX"), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.StartsWith("Twilio (HTTP 200) answered without its JSON: check the base URL", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"price_unit\":\"inr\"", "INR")]
    [InlineData("\"price_unit\":null", "USD")]   // Twilio's own currency, never the company's rate-card one
    [InlineData("\"price_unit\":\"\"", "USD")]
    public async Task A_price_is_in_twilios_unit_upper_cased_and_in_usd_when_it_names_none(string unit, string currency)
    {
        host.Answers("POST", MessagesPath, 201, $$"""{"sid":"SM42","status":"queued","price":"-0.25",{{unit}}}""");

        var result = await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms, from: "OUTBOX"), TestContext.Current.CancellationToken);

        Assert.Equal((0.25m, currency), (result.Cost, result.CostCurrency));
    }

    [Fact]
    public async Task Sms_goes_from_the_sender_id_to_the_plain_number_with_the_registered_body_only_no_media_or_dlt_fields()
    {
        // Twilio's Messages API has no DLT parameters: India DLT ids are registered with the sender id.
        host.Answers("POST", MessagesPath, 201, """{"sid":"SM99","status":"queued","price":null,"price_unit":null}""");
        var message = Message(Channel.Sms) with { Attachments = [LinkedPdf, new CommunicationAttachment { FileName = "GST.pdf", Content = [1] }] };

        var result = await Twilio.SendAsync(message, Account(Channel.Sms, from: "OUTBOX"), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("SM99", result.ProviderMessageId);
        var form = Form(host.SingleRequest);
        Assert.Equal("+919876543210", form["To"]);
        Assert.Equal("OUTBOX", form["From"]);
        Assert.Equal(message.Body, form["Body"]);
        Assert.Equal(["Body", "From", "To"], form.Keys.Order());
    }

    [Theory]
    [InlineData("MG9752274e9e519418a7406176694466fa", "MessagingServiceSid", "From")]
    [InlineData("MGASSO", "From", "MessagingServiceSid")]   // an Indian DLT header for "M G & Associates", not a service
    public async Task A_messaging_service_sid_goes_as_messaging_service_sid_and_any_other_sender_as_from(string from, string sentAs, string notSent)
    {
        host.Answers("POST", MessagesPath, 201, """{"sid":"SM5","status":"accepted"}""");

        await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms, from: from), TestContext.Current.CancellationToken);

        var form = Form(host.SingleRequest);
        Assert.Equal(from, form[sentAs]);
        Assert.False(form.ContainsKey(notSent));
    }

    [Fact]
    public async Task A_full_sender_queue_is_throttling_and_waits_an_hour_without_using_up_retries()
    {
        host.Answers("POST", MessagesPath, 400, """{"code":21611,"message":"This 'From' number has exceeded the maximum number of queued messages","more_info":"https://www.twilio.com/docs/errors/21611","status":400}""");

        var result = await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms), TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Transient, true, TimeSpan.FromHours(1)), (result.Outcome, result.ProviderUnavailable, result.RetryAfter));
        Assert.StartsWith("Twilio 21611: ", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_status_callback_url_on_the_account_goes_with_the_message()
    {
        host.Answers("POST", MessagesPath, 201, """{"sid":"SM6","status":"queued"}""");
        var account = Account(Channel.Sms, from: "OUTBOX") with { StatusCallbackUrl = new Uri("https://comms.practice.example/webhooks/twilio/5b0c4a6e-2f1d-4c83-9f43-0d2a1c9e7b10") };

        await Twilio.SendAsync(Message(Channel.Sms), account, TestContext.Current.CancellationToken);

        Assert.Equal("https://comms.practice.example/webhooks/twilio/5b0c4a6e-2f1d-4c83-9f43-0d2a1c9e7b10", Form(host.SingleRequest)["StatusCallback"]);
    }

    [Theory]
    [InlineData(400, 21211, "The 'To' number +919876543210 is not a valid phone number.", true, "Twilio 21211: The 'To' number")]
    [InlineData(400, 21614, "'To' number is not a valid mobile number", true, "Twilio 21614:")]
    [InlineData(400, 21610, "Attempt to send to unsubscribed recipient", false, "opt-in for this channel is withdrawn")]
    [InlineData(400, 63016, "Failed to send freeform message because you are outside the allowed window.", false, "approved template via ContentSid")]
    [InlineData(401, 20003, "Authenticate", false, "check the Twilio account SID and auth token")]
    [InlineData(400, 21606, "The 'From' phone number provided is not a valid message-capable Twilio phone number.", false, "Twilio 21606:")]
    public async Task Twilio_error_codes_that_retrying_cannot_fix_are_permanent(int status, int code, string text, bool bounced, string expected)
    {
        host.Answers("POST", MessagesPath, status, $$"""{"code":{{code}},"message":"{{text}}","more_info":"https://www.twilio.com/docs/errors/{{code}}","status":{{status}}}""");

        var result = await Twilio.SendAsync(Message(Channel.WhatsApp), Account(Channel.WhatsApp), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal(bounced, result.Bounced);
        Assert.Equal(code == 21610, result.RecipientOptedOut);
        Assert.Contains(expected, result.Error, StringComparison.Ordinal);
        Assert.StartsWith($"Twilio {code}: ", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Twilio_rate_limit_code_is_transient_and_honours_retry_after()
    {
        host.Answers("POST", MessagesPath, 429, """{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}""",
            ("Retry-After", "7"));

        var result = await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.True(result.ProviderUnavailable);
        Assert.Equal(TimeSpan.FromSeconds(7), result.RetryAfter);
        Assert.Equal("Twilio 20429: Too Many Requests", result.Error);
    }

    [Theory]
    [InlineData(429)]
    [InlineData(503)]
    public async Task Throttling_and_server_errors_without_a_twilio_body_are_transient_with_retry_after(int status)
    {
        host.Answers("POST", MessagesPath, status, "<html>busy</html>", ("Content-Type", "text/html"), ("Retry-After", "12"));

        var result = await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.True(result.ProviderUnavailable);
        Assert.Equal(TimeSpan.FromSeconds(12), result.RetryAfter);
        Assert.StartsWith($"Twilio HTTP {status}:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_attachment_without_a_link_is_refused_without_calling_twilio()
    {
        var message = Message(Channel.WhatsApp) with { Attachments = [new CommunicationAttachment { FileName = "INV-7.pdf", Content = [1, 2, 3] }] };

        var result = await Twilio.SendAsync(message, Account(Channel.WhatsApp), TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Contains("INV-7.pdf has no URL", result.Error, StringComparison.Ordinal);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task Missing_credentials_are_a_permanent_configuration_error_without_calling_twilio()
    {
        var result = await Twilio.SendAsync(Message(Channel.Sms), Account(Channel.Sms) with { AccountSid = null }, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal("Twilio: the Twilio account SID is not configured in the company's settings", result.Error);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task Test_connection_reads_the_account_with_basic_auth()
    {
        host.Answers("GET", $"/2010-04-01/Accounts/{Sid}.json", 200, $$"""{"sid":"{{Sid}}","status":"active"}""");

        var check = await Twilio.TestConnectionAsync(Account(Channel.WhatsApp), TestContext.Current.CancellationToken);

        Assert.True(check.Ok, check.Detail);
        var request = host.SingleRequest;
        Assert.Equal("GET", request.Method);
        Assert.Equal(BasicAuth(Sid, Token), Header(request, "Authorization"));
    }

    [Fact]
    public async Task Test_connection_reports_rejected_credentials()
    {
        host.Answers("GET", $"/2010-04-01/Accounts/{Sid}.json", 401, """{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}""");

        var check = await Twilio.TestConnectionAsync(Account(Channel.Sms), TestContext.Current.CancellationToken);

        Assert.False(check.Ok);
        Assert.Contains("rejected the credentials", check.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Add_providers_registers_twilio_for_whatsapp_and_sms()
    {
        var registry = RegistryFromAddProviders();

        Assert.True(registry.IsAvailable(Channel.WhatsApp, "TWILIO"));
        Assert.True(registry.IsAvailable(Channel.Sms, "TWILIO"));
    }

    public void Dispose() => host.Dispose();
}
