using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Http;
using OutboxComms.Core.Providers.Messaging;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace OutboxComms.Tests.Providers;

/// <summary>The Cloud API client against a real HTTP server answering with Meta's documented shapes.</summary>
public sealed class WhatsAppCloudProviderTests : IDisposable
{
    private const string PhoneId = "106540352242922";
    private readonly WireMockServer server = WireMockServer.Start();
    private readonly ServiceProvider services;
    private readonly WhatsAppCloudProvider provider;

    public WhatsAppCloudProviderTests()
    {
        var collection = new ServiceCollection();
        collection.AddHttpClient(ProviderHttp.ClientName);
        collection.AddSingleton<ProviderHttp>();
        services = collection.BuildServiceProvider();
        provider = new WhatsAppCloudProvider(services.GetRequiredService<ProviderHttp>());
    }

    public void Dispose()
    {
        server.Stop();
        services.Dispose();
    }

    private ProviderAccount Account => new()
    {
        CompanyId = Guid.NewGuid(),
        Channel = Channel.WhatsApp,
        Provider = "WHATSAPP_BUSINESS_API",
        ApiKey = "EAAG-token",
        SenderId = PhoneId,
        BaseUrl = new Uri(server.Url + "/v21.0/"),
    };

    private static OutboundMessage Message(ProviderTemplate? template = null, params CommunicationAttachment[] attachments) => new()
    {
        MessageId = 42,
        CompanyId = Guid.NewGuid(),
        Type = MessageType.Invoice,
        Channel = Channel.WhatsApp,
        To = "+919876543210",
        Body = "Your invoice INV-1042 for ₹11,800 is attached.",
        ProviderTemplate = template,
        Attachments = attachments,
    };

    private void Answer(int status, string body, string path = $"/v21.0/{PhoneId}/messages", Action<IResponseBuilder>? more = null)
    {
        var response = Response.Create().WithStatusCode(status).WithHeader("Content-Type", "application/json").WithBody(body);
        more?.Invoke(response);
        server.Given(Request.Create().WithPath(path).UsingPost()).RespondWith(response);
    }

    private JsonElement SentJson(string path = $"/v21.0/{PhoneId}/messages")
    {
        var entry = Assert.Single(server.LogEntries, e => e.RequestMessage.Path == path);
        Assert.Equal("Bearer EAAG-token", entry.RequestMessage.Headers!["Authorization"].Single());
        return JsonDocument.Parse(entry.RequestMessage.Body!).RootElement;
    }

    private const string Accepted = """{"messaging_product":"whatsapp","contacts":[{"input":"919876543210","wa_id":"919876543210"}],"messages":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"}]}""";

    [Fact]
    public async Task Free_text_goes_as_a_text_message_to_the_number_without_plus()
    {
        Answer(200, Accepted);

        var result = await provider.SendAsync(Message(), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA", result.ProviderMessageId);
        var json = SentJson();
        Assert.Equal("whatsapp", json.GetProperty("messaging_product").GetString());
        Assert.Equal("919876543210", json.GetProperty("to").GetString());
        Assert.Equal("text", json.GetProperty("type").GetString());
        Assert.Equal("Your invoice INV-1042 for ₹11,800 is attached.", json.GetProperty("text").GetProperty("body").GetString());
        Assert.Equal("42", json.GetProperty("biz_opaque_callback_data").GetString());
    }

    [Fact]
    public async Task An_approved_template_goes_with_its_language_parameters_and_the_invoice_as_document_header()
    {
        Answer(200, Accepted);
        var pdf = new CommunicationAttachment { FileName = "INV-1042.pdf", ContentType = "application/pdf", Url = "https://files.practice.example/INV-1042.pdf" };

        await provider.SendAsync(Message(new ProviderTemplate("invoice_ready", "en_IN", ["Asha Rao", "INV-1042", "₹11,800"]), pdf), Account, TestContext.Current.CancellationToken);

        var template = SentJson().GetProperty("template");
        Assert.Equal("invoice_ready", template.GetProperty("name").GetString());
        Assert.Equal("en_IN", template.GetProperty("language").GetProperty("code").GetString());
        var components = template.GetProperty("components");
        var header = components[0];
        Assert.Equal("header", header.GetProperty("type").GetString());
        Assert.Equal("https://files.practice.example/INV-1042.pdf", header.GetProperty("parameters")[0].GetProperty("document").GetProperty("link").GetString());
        var body = components[1].GetProperty("parameters");
        Assert.Equal(["Asha Rao", "INV-1042", "₹11,800"], body.EnumerateArray().Select(p => p.GetProperty("text").GetString()));
    }

    [Fact]
    public async Task A_pdf_given_as_bytes_is_uploaded_then_sent_as_a_document_with_the_text_as_caption()
    {
        Answer(200, """{"id":"1037543291543636"}""", $"/v21.0/{PhoneId}/media");
        Answer(200, Accepted);
        var pdf = new CommunicationAttachment { FileName = "INV-1042.pdf", ContentType = "application/pdf", Content = "%PDF-1.7 invoice"u8.ToArray() };

        var result = await provider.SendAsync(Message(null, pdf), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        var upload = Assert.Single(server.LogEntries, e => e.RequestMessage.Path.EndsWith("/media", StringComparison.Ordinal)).RequestMessage;
        Assert.StartsWith("multipart/form-data", upload.Headers!["Content-Type"].Single(), StringComparison.Ordinal);
        Assert.Contains("%PDF-1.7 invoice", upload.Body, StringComparison.Ordinal);
        var document = SentJson().GetProperty("document");
        Assert.Equal("1037543291543636", document.GetProperty("id").GetString());
        Assert.Equal("INV-1042.pdf", document.GetProperty("filename").GetString());
        Assert.Equal("Your invoice INV-1042 for ₹11,800 is attached.", document.GetProperty("caption").GetString());
    }

    [Fact]
    public async Task Two_documents_a_document_without_link_or_bytes_or_a_caption_beyond_1024_characters_are_refused_without_a_call()
    {
        Answer(200, Accepted);
        var pdf = new CommunicationAttachment { FileName = "INV-1042.pdf", ContentType = "application/pdf", Url = "https://files.practice.example/INV-1042.pdf" };
        var statement = new CommunicationAttachment { FileName = "SOA-2026.pdf", ContentType = "application/pdf", Url = "https://files.practice.example/SOA-2026.pdf" };
        var nothing = new CommunicationAttachment { FileName = "lost.pdf", ContentType = "application/pdf" };
        var ct = TestContext.Current.CancellationToken;

        var two = await provider.SendAsync(Message(null, pdf, statement), Account, ct);
        var empty = await provider.SendAsync(Message(null, nothing), Account, ct);
        var longCaption = await provider.SendAsync(Message(null, pdf) with { Body = new string('x', 1025) }, Account, ct);
        var fits = await provider.SendAsync(Message(null, pdf) with { Body = new string('x', 1024) }, Account, ct);

        Assert.Equal((SendOutcome.Permanent, "WhatsApp: a WhatsApp message carries one document, this one has 2"), (two.Outcome, two.Error));
        Assert.Equal((SendOutcome.Permanent, "WhatsApp: attachment lost.pdf has no URL; WhatsApp providers fetch documents from a public link"), (empty.Outcome, empty.Error));
        Assert.Equal(SendOutcome.Permanent, longCaption.Outcome);
        Assert.StartsWith("WhatsApp: WhatsApp shows at most 1024 characters with a document and this text has 1025", longCaption.Error, StringComparison.Ordinal);
        Assert.Equal(SendOutcome.Sent, fits.Outcome);
        Assert.Equal(1024, SentJson().GetProperty("document").GetProperty("caption").GetString()!.Length);
    }

    [Theory]
    [InlineData(400, 131047, SendOutcome.Permanent, "send an approved template")]
    [InlineData(400, 130429, SendOutcome.Transient, "WhatsApp 130429")]
    [InlineData(400, 131048, SendOutcome.Transient, "WhatsApp 131048")]
    [InlineData(400, 131042, SendOutcome.Transient, "WhatsApp 131042")]
    [InlineData(429, 131056, SendOutcome.Transient, "WhatsApp 131056")]
    [InlineData(401, 190, SendOutcome.Permanent, "access token is invalid or expired")]
    [InlineData(400, 132001, SendOutcome.Permanent, "WhatsApp 132001")]
    [InlineData(400, 131026, SendOutcome.Permanent, "WhatsApp 131026")]
    [InlineData(500, 131000, SendOutcome.Transient, "WhatsApp 131000")]
    public async Task Errors_are_classified_by_metas_code(int status, int code, SendOutcome outcome, string mentions)
    {
        Answer(status, $$$"""{"error":{"message":"(#{{{code}}}) error","type":"OAuthException","code":{{{code}}},"error_data":{"messaging_product":"whatsapp","details":"details"},"fbtrace_id":"AbCd"}}""",
            more: r => r.WithHeader("Retry-After", "120"));

        var result = await provider.SendAsync(Message(), Account, TestContext.Current.CancellationToken);

        Assert.Equal(outcome, result.Outcome);
        Assert.Contains(mentions, result.Error, StringComparison.Ordinal);
        Assert.False(result.MarketingStopped);
        // Only the account's limits (throughput, the number's spam limit, payment) are an outage; 131056 (this recipient) and 131000 (may be the message) use up retries.
        Assert.Equal(code is 130429 or 131048 or 131042, result.ProviderUnavailable);
        Assert.Equal(code is 131056, result.AboutThisMessage);   // this recipient's limit says nothing about Meta
        if (outcome == SendOutcome.Transient)
        {
            Assert.Equal(TimeSpan.FromSeconds(120), result.RetryAfter);
        }
    }

    [Fact]
    public async Task A_recipient_who_stopped_marketing_messages_is_a_permanent_failure_that_says_so()
    {
        Answer(400, """{"error":{"message":"(#131050) Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.","type":"OAuthException","code":131050,"fbtrace_id":"AbCd"}}""");

        var result = await provider.SendAsync(Message(new ProviderTemplate("diwali_greetings", "en", [])), Account, TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Permanent, true), (result.Outcome, result.MarketingStopped));
        Assert.Contains("general updates to them on WhatsApp stop", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_error_whose_error_data_is_text_is_still_read_and_classified()
    {
        Answer(400, """{"error":{"message":"(#132001) Template name does not exist in the translation","code":132001,"error_data":"template invoice_due does not exist in en_US"}}""");

        var result = await provider.SendAsync(Message(new ProviderTemplate("invoice_due", "en_US", [])), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal("WhatsApp 132001: (#132001) Template name does not exist in the translation (template invoice_due does not exist in en_US)", result.Error);
    }

    [Fact]
    public async Task Outside_the_window_a_template_send_is_not_told_to_use_a_template()
    {
        Answer(400, """{"error":{"message":"Re-engagement message","code":131047}}""");

        var result = await provider.SendAsync(Message(new ProviderTemplate("x", "en", [])), Account, TestContext.Current.CancellationToken);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.DoesNotContain("approved template", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"messaging_product":"whatsapp","contacts":[{"input":"+919876543210","wa_id":"919876543210"}],"messages":[]}""", SendOutcome.Sent)]
    [InlineData("""{"status":"ok"}""", SendOutcome.Transient)]
    [InlineData("<html>Welcome to the proxy</html>", SendOutcome.Transient)]
    public async Task A_success_without_a_message_id_counts_as_sent_only_when_graph_answered_it(string body, SendOutcome outcome)
    {
        Answer(200, body);

        var result = await provider.SendAsync(Message(), Account, TestContext.Current.CancellationToken);

        Assert.Equal((outcome, null), (result.Outcome, result.ProviderMessageId));
        Assert.Contains("without a message id", outcome == SendOutcome.Sent ? result.Note : result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_endpoint_is_transient()
    {
        var account = Account with { BaseUrl = new Uri("http://127.0.0.1:1/v21.0/") };

        var result = await provider.SendAsync(Message(), account, TestContext.Current.CancellationToken);

        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("WhatsApp: could not connect", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_answer_cut_off_after_the_request_went_out_uses_up_a_retry_since_meta_may_have_the_message()
    {
        // A server that reads the whole request and hangs up without an answer.
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var serve = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync(TestContext.Current.CancellationToken);
            await socket.ReceiveAsync(new byte[64 * 1024], TestContext.Current.CancellationToken);
            socket.Close();
        }, TestContext.Current.CancellationToken);
        var account = Account with { BaseUrl = new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/v21.0/") };

        var result = await provider.SendAsync(Message(), account, TestContext.Current.CancellationToken);
        await serve;

        Assert.Equal((SendOutcome.Transient, false), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("WhatsApp: connection lost after sending (ResponseEnded)", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Test_connection_reads_the_phone_number_and_explains_a_rejected_token()
    {
        server.Given(Request.Create().WithPath($"/v21.0/{PhoneId}").UsingGet().WithHeader("Authorization", "Bearer EAAG-token"))
            .RespondWith(Response.Create().WithStatusCode(200).WithBody("""{"display_phone_number":"+91 22 5555 0100","verified_name":"Rao & Associates","id":"106540352242922"}"""));
        server.Given(Request.Create().WithPath($"/v21.0/{PhoneId}").UsingGet().WithHeader("Authorization", "Bearer expired"))
            .RespondWith(Response.Create().WithStatusCode((int)HttpStatusCode.Unauthorized).WithBody("""{"error":{"message":"Error validating access token","code":190}}"""));

        var ok = await provider.TestConnectionAsync(Account, TestContext.Current.CancellationToken);
        var rejected = await provider.TestConnectionAsync(Account with { ApiKey = "expired" }, TestContext.Current.CancellationToken);

        Assert.True(ok.Ok, ok.Detail);
        Assert.False(rejected.Ok);
        Assert.Contains("rejected the credentials", rejected.Detail, StringComparison.Ordinal);
    }
}
