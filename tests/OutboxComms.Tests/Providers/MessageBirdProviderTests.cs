using System.Text.Json;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Messaging;
using static OutboxComms.Tests.Providers.MessagingProviderTestHost;

namespace OutboxComms.Tests.Providers;

public sealed class MessageBirdProviderTests : IDisposable
{
    private const string AccessKey = "live_mb_access_key";
    private const string ChannelId = "619747f69cf940a98fb443140ce9aed2";

    private readonly MessagingProviderTestHost host = new();

    private MessageBirdProvider MessageBird => host.Provider<MessageBirdProvider>();

    private ProviderAccount WhatsAppAccount => new()
    {
        CompanyId = Guid.NewGuid(),
        Channel = Channel.WhatsApp,
        Provider = "MESSAGEBIRD",
        ApiKey = AccessKey,
        SenderId = ChannelId,
        AccountSid = "fa7dc6ea_f838_47e1_884c_965e50f358b6",
        BaseUrl = host.BaseUrl,
    };

    private ProviderAccount SmsAccount => new()
    {
        CompanyId = Guid.NewGuid(),
        Channel = Channel.Sms,
        Provider = "MESSAGEBIRD",
        ApiKey = AccessKey,
        From = "OUTBOX",
        BaseUrl = host.BaseUrl,
    };

    [Fact]
    public async Task Whatsapp_text_goes_to_conversations_send_from_the_channel_with_the_access_key()
    {
        host.Answers("POST", "/v1/send", 202, """{"id":"2e15efafec384e1c82e9842075e87beb","status":"accepted"}""");
        var message = Message(Channel.WhatsApp);

        var result = await MessageBird.SendAsync(message, WhatsAppAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("2e15efafec384e1c82e9842075e87beb", result.ProviderMessageId);
        var request = host.SingleRequest;
        Assert.Equal("POST", request.Method);
        Assert.Equal($"AccessKey {AccessKey}", Header(request, "Authorization"));
        var json = Json(request);
        Assert.Equal("+919876543210", json.GetProperty("to").GetString());
        Assert.Equal(ChannelId, json.GetProperty("from").GetString());
        Assert.Equal("text", json.GetProperty("type").GetString());
        Assert.Equal(message.Body, json.GetProperty("content").GetProperty("text").GetString());
    }

    [Fact]
    public async Task Whatsapp_document_goes_as_a_file_with_the_body_as_caption()
    {
        host.Answers("POST", "/v1/send", 202, """{"id":"f1","status":"accepted"}""");
        var message = Message(Channel.WhatsApp) with { Attachments = [LinkedPdf] };

        await MessageBird.SendAsync(message, WhatsAppAccount, TestContext.Current.CancellationToken);

        var json = Json(host.SingleRequest);
        Assert.Equal("file", json.GetProperty("type").GetString());
        var file = json.GetProperty("content").GetProperty("file");
        Assert.Equal(LinkedPdf.Url, file.GetProperty("url").GetString());
        Assert.Equal(message.Body, file.GetProperty("caption").GetString());
    }

    [Fact]
    public async Task Whatsapp_template_goes_as_hsm_with_namespace_language_and_default_params()
    {
        host.Answers("POST", "/v1/send", 202, """{"id":"h1","status":"accepted"}""");
        var message = Message(Channel.WhatsApp) with { ProviderTemplate = new ProviderTemplate("invoice_due", "en_US", ["Asha Rao", "INV-7"]) };

        await MessageBird.SendAsync(message, WhatsAppAccount, TestContext.Current.CancellationToken);

        var json = Json(host.SingleRequest);
        Assert.Equal("hsm", json.GetProperty("type").GetString());
        var hsm = json.GetProperty("content").GetProperty("hsm");
        Assert.Equal("fa7dc6ea_f838_47e1_884c_965e50f358b6", hsm.GetProperty("namespace").GetString());
        Assert.Equal("invoice_due", hsm.GetProperty("templateName").GetString());
        Assert.Equal("deterministic", hsm.GetProperty("language").GetProperty("policy").GetString());
        Assert.Equal("en_US", hsm.GetProperty("language").GetProperty("code").GetString());
        Assert.Equal(["Asha Rao", "INV-7"], hsm.GetProperty("params").EnumerateArray().Select(p => p.GetProperty("default").GetString()));
    }

    [Fact]
    public async Task A_whatsapp_template_with_a_document_is_refused_rather_than_sent_without_it()
    {
        var message = Message(Channel.WhatsApp) with { ProviderTemplate = new ProviderTemplate("invoice_due", "en_US", ["Asha Rao", "INV-7"]), Attachments = [LinkedPdf] };

        var result = await MessageBird.SendAsync(message, WhatsAppAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Contains("cannot carry the attached document", result.Error, StringComparison.Ordinal);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task Sms_goes_to_the_rest_api_messages_with_originator_recipients_and_our_reference()
    {
        host.Answers("POST", "/messages", 201, """
            {"id":"e8077d803532c0b5937c639b60216938","href":"https://rest.messagebird.com/messages/e8077d803532c0b5937c639b60216938",
             "direction":"mt","type":"sms","originator":"OUTBOX","body":"…","reference":"42",
             "recipients":{"totalCount":1,"totalSentCount":1,"items":[{"recipient":919876543210,"status":"sent"}]}}
            """);
        var message = Message(Channel.Sms) with { Attachments = [new CommunicationAttachment { FileName = "INV-7.pdf", Content = [1] }] };

        var result = await MessageBird.SendAsync(message, SmsAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("e8077d803532c0b5937c639b60216938", result.ProviderMessageId);
        var request = host.SingleRequest;
        Assert.Equal($"AccessKey {AccessKey}", Header(request, "Authorization"));
        var json = Json(request);
        Assert.Equal("OUTBOX", json.GetProperty("originator").GetString());
        Assert.Equal(message.Body, json.GetProperty("body").GetString());
        Assert.Equal(["919876543210"], json.GetProperty("recipients").EnumerateArray().Select(r => r.GetString()));
        Assert.Equal("42", json.GetProperty("reference").GetString());
        Assert.Equal("auto", json.GetProperty("datacoding").GetString());   // Hindi and ₹ go as Unicode, not replaced
        Assert.False(json.TryGetProperty("reportUrl", out _)); // no public URL to report to
    }

    [Fact]
    public async Task An_sms_asks_for_delivery_reports_at_the_accounts_callback_url()
    {
        host.Answers("POST", "/messages", 201, """{"id":"e8077d803532c0b5937c639b60216938"}""");
        var callback = new Uri("https://comms.practice.example/webhooks/messagebird-sms/6f1c2d3e-0000-4000-8000-000000000001");

        await MessageBird.SendAsync(Message(Channel.Sms), SmsAccount with { StatusCallbackUrl = callback }, TestContext.Current.CancellationToken);

        Assert.Equal(callback.AbsoluteUri, Json(host.SingleRequest).GetProperty("reportUrl").GetString());
    }

    [Theory]
    [InlineData("""{"message":{"id":"nested-1","status":"accepted"}}""", "nested-1")]
    [InlineData("""{"status":"accepted"}""", null)]
    public async Task Send_ids_are_read_defensively(string answer, string? id)
    {
        host.Answers("POST", "/v1/send", 202, answer);

        var result = await MessageBird.SendAsync(Message(Channel.WhatsApp), WhatsAppAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal(id, result.ProviderMessageId);
    }

    [Theory]
    [InlineData("")]
    [InlineData("<html><body>Welcome to nginx!</body></html>")]
    public async Task A_success_without_messagebirds_json_is_not_taken_as_sent(string answer)
    {
        // A base URL that points at some other server: its 2xx is not MessageBird's answer.
        host.Answers("POST", "/v1/send", 200, answer);

        var result = await MessageBird.SendAsync(Message(Channel.WhatsApp), WhatsAppAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.StartsWith("MessageBird (HTTP 200) answered without its JSON: check the base URL", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(401, 2, "Request not allowed (incorrect access_key)", "", "check the MessageBird access key")]
    [InlineData(422, 9, "no (correct) recipients found", "recipients", "MessageBird 9: no (correct) recipients found (parameter recipients)")]
    [InlineData(422, 10, "originator is invalid", "originator", "MessageBird 10: originator is invalid (parameter originator)")]
    public async Task MessageBird_error_codes_that_retrying_cannot_fix_are_permanent(int status, int code, string description, string parameter, string expected)
    {
        host.Answers("POST", "/messages", status, JsonSerializer.Serialize(new { errors = new[] { new { code, description, parameter } } }));

        var result = await MessageBird.SendAsync(Message(Channel.Sms), SmsAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.StartsWith($"MessageBird {code}: {description}", result.Error, StringComparison.Ordinal);
        Assert.Contains(expected, result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_low_balance_is_retried_an_hour_later_since_a_top_up_fixes_it()
    {
        host.Answers("POST", "/messages", 402, """{"errors":[{"code":25,"description":"Not enough balance","parameter":null}]}""");

        var result = await MessageBird.SendAsync(Message(Channel.Sms), SmsAccount, TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Transient, TimeSpan.FromHours(1)), (result.Outcome, result.RetryAfter));
        Assert.True(result.ProviderUnavailable);
        Assert.Equal("MessageBird 25: Not enough balance (the MessageBird balance is too low to send: top up the account)", result.Error);
    }

    [Theory]
    [InlineData(429)]
    [InlineData(500)]
    public async Task Rate_limits_and_server_errors_are_transient_with_retry_after(int status)
    {
        host.Answers("POST", "/v1/send", status, """{"errors":[{"code":99,"description":"Try again later","parameter":null}]}""", ("Retry-After", "20"));

        var result = await MessageBird.SendAsync(Message(Channel.WhatsApp), WhatsAppAccount, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.Equal(status == 429, result.ProviderUnavailable);   // after a 500 the message may have gone: a resend uses up a retry
        Assert.Equal(TimeSpan.FromSeconds(20), result.RetryAfter);
        Assert.Equal("MessageBird 99: Try again later", result.Error);
    }

    [Fact]
    public async Task Whatsapp_without_a_channel_id_is_a_configuration_error()
    {
        var result = await MessageBird.SendAsync(Message(Channel.WhatsApp), WhatsAppAccount with { SenderId = null }, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Contains("MessageBird WhatsApp channel id is not configured", result.Error, StringComparison.Ordinal);
        Assert.Empty(host.Server.LogEntries);
    }

    [Fact]
    public async Task Test_connection_reads_the_balance_for_sms()
    {
        host.Answers("GET", "/balance", 200, """{"payment":"prepaid","type":"credits","amount":9.2}""");

        var check = await MessageBird.TestConnectionAsync(SmsAccount, TestContext.Current.CancellationToken);

        Assert.True(check.Ok, check.Detail);
        Assert.Equal($"AccessKey {AccessKey}", Header(host.SingleRequest, "Authorization"));
    }

    [Fact]
    public async Task Test_connection_lists_conversations_for_whatsapp()
    {
        host.Answers("GET", "/v1/conversations", 200, """{"offset":0,"limit":1,"count":0,"totalCount":0,"items":[]}""");

        var check = await MessageBird.TestConnectionAsync(WhatsAppAccount, TestContext.Current.CancellationToken);

        Assert.True(check.Ok, check.Detail);
        var request = host.SingleRequest;
        Assert.Equal("GET", request.Method);
        Assert.Equal($"AccessKey {AccessKey}", Header(request, "Authorization"));
    }

    [Fact]
    public async Task Test_connection_reports_rejected_credentials()
    {
        host.Answers("GET", "/balance", 401, """{"errors":[{"code":2,"description":"Request not allowed (incorrect access_key)","parameter":"access_key"}]}""");

        var check = await MessageBird.TestConnectionAsync(SmsAccount, TestContext.Current.CancellationToken);

        Assert.False(check.Ok);
        Assert.Contains("rejected the credentials", check.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Add_providers_registers_messagebird_for_whatsapp_and_sms()
    {
        var registry = RegistryFromAddProviders();

        Assert.True(registry.IsAvailable(Channel.WhatsApp, "MESSAGEBIRD"));
        Assert.True(registry.IsAvailable(Channel.Sms, "MESSAGEBIRD"));
    }

    public void Dispose() => host.Dispose();
}
