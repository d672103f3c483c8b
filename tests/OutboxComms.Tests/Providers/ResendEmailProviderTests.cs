using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using static OutboxComms.Tests.Providers.EmailApiTestHost;

namespace OutboxComms.Tests.Providers;

/// <summary>Resend's <c>POST /emails</c> against a server answering with Resend's documented shapes.</summary>
public sealed class ResendEmailProviderTests : IDisposable
{
    private const string SendPath = "/emails";
    private readonly EmailApiTestHost host = new();
    private readonly ResendEmailProvider provider;

    public ResendEmailProviderTests() => provider = host.Provider<ResendEmailProvider>();

    public void Dispose() => host.Dispose();

    private Task<SendResult> SendAsync(OutboundMessage? message = null) =>
        provider.SendAsync(message ?? Message(), host.Account("RESEND"), TestContext.Current.CancellationToken);

    private static string Error(int status, string name, string message) =>
        $$"""{"statusCode":{{status}},"name":"{{name}}","message":"{{message}}"}""";

    [Fact]
    public async Task A_send_posts_the_documented_json_with_the_idempotency_key_and_reads_the_id()
    {
        host.Answer(SendPath, 200, """{"id":"49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}""");
        var message = Message(Pdf, host.LinkedPdf);

        var result = await SendAsync(message);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("49a3999c-0ce1-4ea6-ab68-afcd6dc2e794", result.ProviderMessageId);
        var request = host.Received(SendPath);
        Assert.Equal("Bearer test-api-key", Header(request, "Authorization"));
        Assert.Equal(message.IdempotencyKey, Header(request, "Idempotency-Key"));
        var json = Json(request);
        Assert.Equal("Sharma Dental Clinic <accounts@sharma-clinic.in>", json.GetProperty("from").GetString());
        Assert.Equal("Priya Sharma <priya.sharma@example.in>", Assert.Single(json.GetProperty("to").EnumerateArray()).GetString());
        Assert.Equal("Your March statement", json.GetProperty("subject").GetString());
        Assert.Equal("Dear Priya, your statement for March is attached.", json.GetProperty("text").GetString());
        Assert.Equal("<p>Dear Priya, your statement for March is attached.</p>", json.GetProperty("html").GetString());
        Assert.Equal("front-desk@sharma-clinic.in", json.GetProperty("reply_to").GetString());
        var headers = json.GetProperty("headers");
        Assert.Equal(ExpectedMessageIdHeader, headers.GetProperty("Message-ID").GetString());
        Assert.Equal("<https://comms.sharma-clinic.in/u/k7Qx9>", headers.GetProperty("List-Unsubscribe").GetString());
        Assert.Equal("List-Unsubscribe=One-Click", headers.GetProperty("List-Unsubscribe-Post").GetString());
        var attachments = json.GetProperty("attachments");
        Assert.Equal("INV-1042.pdf", attachments[0].GetProperty("filename").GetString());
        Assert.Equal(PdfBytes, Convert.FromBase64String(attachments[0].GetProperty("content").GetString()!));
        Assert.Equal("statement-march.pdf", attachments[1].GetProperty("filename").GetString());
        Assert.Equal(host.LinkedPdf.Url, attachments[1].GetProperty("path").GetString());
        Assert.False(attachments[1].TryGetProperty("content", out _));
        var tag = Assert.Single(json.GetProperty("tags").EnumerateArray());
        Assert.Equal("outbox-message-id", tag.GetProperty("name").GetString());
        Assert.Equal("42", tag.GetProperty("value").GetString());
        // Resend fetches linked attachments itself.
        Assert.DoesNotContain(host.Server.LogEntries, e => e.RequestMessage.Path == FilesPath);
    }

    [Theory]
    [InlineData(null, "accounts@sharma-clinic.in")]
    [InlineData("Rao & Associates", "Rao & Associates <accounts@sharma-clinic.in>")]
    [InlineData("Sharma, Dental Clinic", "\"Sharma, Dental Clinic\" <accounts@sharma-clinic.in>")]
    public async Task The_sender_is_written_as_resend_documents_it(string? name, string expected)
    {
        host.Answer(SendPath, 200, """{"id":"x"}""");

        await provider.SendAsync(Message() with { ToName = null }, host.Account("RESEND") with { FromName = name }, TestContext.Current.CancellationToken);

        var json = Json(host.Received(SendPath));
        Assert.Equal(expected, json.GetProperty("from").GetString());
        Assert.Equal("priya.sharma@example.in", json.GetProperty("to")[0].GetString());
    }

    [Fact]
    public async Task A_company_without_a_from_address_is_refused_unsent()
    {
        var result = await provider.SendAsync(Message(), host.Account("RESEND") with { From = null }, TestContext.Current.CancellationToken);

        host.AssertRefusedUnsent(result, "Resend: the from address is missing");
    }

    [Fact]
    public async Task A_success_without_resends_json_is_not_taken_as_sent()
    {
        host.Answer(SendPath, 200, "<html><body>Welcome to nginx!</body></html>");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, "Resend (HTTP 200) answered without its JSON: check the base URL");
    }

    [Theory]
    [InlineData(400, "validation_error", "Invalid `to` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.")]
    [InlineData(403, "validation_error", "The sharma-clinic.in domain is not verified. Please, add and verify your domain on https://resend.com/domains")]
    [InlineData(422, "invalid_from_address", "Invalid `from` field.")]
    [InlineData(422, "missing_required_field", "Missing `to` field.")]
    public async Task Validation_errors_are_permanent_with_resends_name_and_message(int status, string name, string message)
    {
        host.Answer(SendPath, status, Error(status, name, message));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, $"Resend {name}: {message}");
        Assert.DoesNotContain("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(401, "missing_api_key", "Missing API key in the authorization header")]
    [InlineData(403, "invalid_api_key", "API key is invalid")]
    public async Task A_rejected_key_is_permanent_and_says_to_check_the_credentials(int status, string name, string message)
    {
        host.Answer(SendPath, status, Error(status, name, message));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, $"Resend {name}: {message}");
        Assert.Contains("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(429, "rate_limit_exceeded", "Too many requests. You can only make 2 requests per second.")]
    [InlineData(429, "daily_quota_exceeded", "You have reached your daily email sending quota.")]
    [InlineData(409, "concurrent_idempotent_requests", "Same idempotency key used while original request is still in progress.")]
    [InlineData(500, "application_error", "An unexpected error occurred.")]
    public async Task Rate_limits_and_server_trouble_are_transient_and_honour_retry_after(int status, string name, string message)
    {
        host.Answer(SendPath, status, Error(status, name, message), ("Retry-After", "2"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, $"Resend {name}: {message}", TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task A_retry_whose_key_resend_already_sent_under_another_body_is_recorded_as_sent_by_the_earlier_attempt()
    {
        host.Answer(SendPath, 409, Error(409, "invalid_idempotent_request", "Same idempotency key used with a different request payload."));

        var result = await SendAsync(Message() with { EarlierAttempts = 1 });
        var first = await SendAsync();

        Assert.Equal((SendOutcome.Sent, null, null), (result.Outcome, result.ProviderMessageId, result.Error));
        Assert.Equal("sent by an earlier attempt whose answer was lost (Resend invalid_idempotent_request: Same idempotency key used with a different request payload.); "
            + "Resend's email id is unknown, so its delivery events cannot be matched", result.Note);
        // On a first attempt no earlier one of ours used the key: a failure, not a send.
        Assert.Equal(SendOutcome.Permanent, first.Outcome);
        Assert.EndsWith("(on this message's first attempt: its idempotency key was used by another request within 24 hours)", first.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Test_connection_lists_domains_accepts_a_sending_only_key_and_explains_a_rejected_one()
    {
        var account = host.Account("RESEND");
        var sent = await host.AssertTestConnectionAsync(provider, account, "/domains",
            """{"data":[{"id":"d91cd9bd-1176-453e-8fc1-35364d380206","name":"sharma-clinic.in","status":"verified"}]}""",
            403, Error(403, "invalid_api_key", "API key is invalid"));
        Assert.Equal("Bearer test-api-key", Header(sent, "Authorization"));

        host.Server.Reset();
        host.Answer("GET", "/domains", 401, Error(401, "restricted_api_key", "This API key is restricted to only send emails"));
        var sendingOnly = await provider.TestConnectionAsync(account, TestContext.Current.CancellationToken);
        Assert.True(sendingOnly.Ok, sendingOnly.Detail);
        Assert.Contains("restricted to sending", sendingOnly.Detail, StringComparison.Ordinal);
    }
}
