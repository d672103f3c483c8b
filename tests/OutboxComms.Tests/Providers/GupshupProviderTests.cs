using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Messaging;
using static OutboxComms.Tests.Providers.MessagingProviderTestHost;

namespace OutboxComms.Tests.Providers;

public sealed class GupshupProviderTests : IDisposable
{
    private const string ApiKey = "gupshup-api-key-2xxc4x4xx2c94";

    private readonly MessagingProviderTestHost host = new();

    private GupshupProvider Gupshup => host.Provider<GupshupProvider>();

    private ProviderAccount Account => new()
    {
        CompanyId = Guid.NewGuid(),
        Channel = Channel.WhatsApp,
        Provider = "GUPSHUP",
        ApiKey = ApiKey,
        SenderId = "SharmaAssociates",
        From = "+91 80 4567 8900",
        BaseUrl = host.BaseUrl,
    };

    private const string Submitted = """{"status":"submitted","messageId":"ee4a68a0-1203-4c85-8dc3-49d0b3226a35"}""";

    [Fact]
    public async Task Text_goes_as_form_with_digit_numbers_app_name_and_a_json_message_and_html_labelled_answers_are_parsed()
    {
        host.Answers("POST", "/wa/api/v1/msg", 202, Submitted, ("Content-Type", "text/html; charset=utf-8"));
        var message = Message(Channel.WhatsApp);

        var result = await Gupshup.SendAsync(message, Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("ee4a68a0-1203-4c85-8dc3-49d0b3226a35", result.ProviderMessageId);
        var request = host.SingleRequest;
        Assert.Equal("POST", request.Method);
        Assert.Equal(ApiKey, Header(request, "apikey"));
        var form = Form(request);
        Assert.Equal("whatsapp", form["channel"]);
        Assert.Equal("918045678900", form["source"]);
        Assert.Equal("919876543210", form["destination"]);
        Assert.Equal("SharmaAssociates", form["src.name"]);
        var content = Json(form["message"]);
        Assert.Equal("text", content.GetProperty("type").GetString());
        Assert.Equal(message.Body, content.GetProperty("text").GetString());
        Assert.Equal(["channel", "destination", "message", "source", "src.name"], form.Keys.Order());
    }

    [Fact]
    public async Task A_document_goes_as_a_file_message_with_url_filename_and_the_body_as_caption()
    {
        host.Answers("POST", "/wa/api/v1/msg", 202, Submitted);
        var message = Message(Channel.WhatsApp) with { Attachments = [LinkedPdf] };

        await Gupshup.SendAsync(message, Account, TestContext.Current.CancellationToken);

        var content = Json(Form(host.SingleRequest)["message"]);
        Assert.Equal("file", content.GetProperty("type").GetString());
        Assert.Equal(LinkedPdf.Url, content.GetProperty("url").GetString());
        Assert.Equal("INV-7.pdf", content.GetProperty("filename").GetString());
        Assert.Equal(message.Body, content.GetProperty("caption").GetString());
    }

    [Fact]
    public async Task A_document_whose_text_is_longer_than_whatsapps_caption_is_refused_without_calling_gupshup()
    {
        var message = Message(Channel.WhatsApp) with { Attachments = [LinkedPdf], Body = new string('x', 1025) };

        var result = await Gupshup.SendAsync(message, Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.StartsWith("Gupshup: WhatsApp shows at most 1024 characters with a document", result.Error, StringComparison.Ordinal);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task A_template_goes_to_template_msg_with_its_id_and_params()
    {
        host.Answers("POST", "/wa/api/v1/template/msg", 202, Submitted);
        var message = Message(Channel.WhatsApp) with
        {
            ProviderTemplate = new ProviderTemplate("007b7c0e-fc8d-4698-a9a8-3938151dd5da", "en", ["Asha Rao", "INV-7"]),
        };

        var result = await Gupshup.SendAsync(message, Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        var form = Form(host.SingleRequest);
        var template = Json(form["template"]);
        Assert.Equal("007b7c0e-fc8d-4698-a9a8-3938151dd5da", template.GetProperty("id").GetString());
        Assert.Equal(["Asha Rao", "INV-7"], template.GetProperty("params").EnumerateArray().Select(p => p.GetString()));
        Assert.Equal(["channel", "destination", "source", "src.name", "template"], form.Keys.Order());
    }

    [Fact]
    public async Task A_template_with_a_document_carries_the_document_as_its_media_message()
    {
        host.Answers("POST", "/wa/api/v1/template/msg", 202, Submitted);
        var message = Message(Channel.WhatsApp) with
        {
            ProviderTemplate = new ProviderTemplate("9ff51097-48c9-47c7-a4e4-a9bb5801d8ea", "en", ["INV-7"]),
            Attachments = [LinkedPdf],
        };

        await Gupshup.SendAsync(message, Account, TestContext.Current.CancellationToken);

        var media = Json(Form(host.SingleRequest)["message"]);
        Assert.Equal("document", media.GetProperty("type").GetString());
        Assert.Equal(LinkedPdf.Url, media.GetProperty("document").GetProperty("link").GetString());
        Assert.Equal("INV-7.pdf", media.GetProperty("document").GetProperty("filename").GetString());
    }

    [Fact]
    public async Task Authentication_failed_is_a_permanent_credentials_error()
    {
        host.Answers("POST", "/wa/api/v1/msg", 401, """{"message":"Authentication Failed","status":"error"}""");

        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal("Gupshup (HTTP 401): Authentication Failed (authentication failed: check the Gupshup API key)", result.Error);
    }

    [Fact]
    public async Task Invalid_destination_is_a_permanent_bounce()
    {
        host.Answers("POST", "/wa/api/v1/msg", 400, """{"status":"error","message":"Invalid Destination"}""");

        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.True(result.Bounced);
        Assert.Equal("Gupshup (HTTP 400): Invalid Destination", result.Error);
    }

    [Fact]
    public async Task Too_many_requests_is_transient_with_retry_after()
    {
        host.Answers("POST", "/wa/api/v1/template/msg", 429, """{"status":"error","message":"Too Many Requests"}""", ("Retry-After", "60"));
        var message = Message(Channel.WhatsApp) with { ProviderTemplate = new ProviderTemplate("t-1", "en", []) };

        var result = await Gupshup.SendAsync(message, Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.True(result.ProviderUnavailable);
        Assert.Equal(TimeSpan.FromSeconds(60), result.RetryAfter);
    }

    [Fact]
    public async Task A_rate_limit_message_is_transient_even_when_the_status_is_not_429()
    {
        host.Answers("POST", "/wa/api/v1/msg", 400, """{"status":"error","message":"Rate limit exceeded for app"}""");

        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.True(result.ProviderUnavailable);
    }

    [Fact]
    public async Task An_error_status_in_a_2xx_answer_is_not_taken_as_sent()
    {
        host.Answers("POST", "/wa/api/v1/msg", 200, """{"status":"error","message":"Template Not Found"}""");

        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal("Gupshup (HTTP 200): Template Not Found", result.Error);
    }

    [Fact]
    public async Task A_2xx_answer_that_is_not_gupshups_json_is_not_taken_as_sent()
    {
        host.Answers("POST", "/wa/api/v1/msg", 200, "<html><body>Welcome to nginx!</body></html>", ("Content-Type", "text/html"));

        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.StartsWith("Gupshup (HTTP 200) answered without its JSON: check the base URL;", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_gateway_error_page_is_transient()
    {
        host.Answers("POST", "/wa/api/v1/msg", 502, "<html><body>502 Bad Gateway</body></html>", ("Content-Type", "text/html"));

        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.False(result.ProviderUnavailable);   // a 502 may come after the message went through: a resend uses up a retry
        Assert.StartsWith("Gupshup (HTTP 502): <html>", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_app_name_is_a_configuration_error_without_calling_gupshup()
    {
        var result = await Gupshup.SendAsync(Message(Channel.WhatsApp), Account with { SenderId = "" }, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal("Gupshup: the Gupshup app name is not configured in the company's settings", result.Error);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task Test_connection_reads_the_wallet_balance_with_the_api_key()
    {
        host.Answers("GET", "/sm/api/v2/wallet/balance", 200, """{"balance":41.938,"status":"success"}""");

        var check = await Gupshup.TestConnectionAsync(Account, TestContext.Current.CancellationToken);

        Assert.True(check.Ok, check.Detail);
        var request = host.SingleRequest;
        Assert.Equal("GET", request.Method);
        Assert.Equal(ApiKey, Header(request, "apikey"));
    }

    [Fact]
    public async Task Test_connection_reports_rejected_credentials()
    {
        host.Answers("GET", "/sm/api/v2/wallet/balance", 401, """{"message":"Authentication Failed","status":"error"}""");

        var check = await Gupshup.TestConnectionAsync(Account, TestContext.Current.CancellationToken);

        Assert.False(check.Ok);
        Assert.Contains("rejected the credentials", check.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Add_providers_registers_gupshup_for_whatsapp_only()
    {
        var registry = RegistryFromAddProviders();

        Assert.True(registry.IsAvailable(Channel.WhatsApp, "GUPSHUP"));
        Assert.False(registry.IsAvailable(Channel.Sms, "GUPSHUP"));
    }

    public void Dispose() => host.Dispose();
}
