using System.Globalization;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using static OutboxComms.Tests.Providers.EmailApiTestHost;

namespace OutboxComms.Tests.Providers;

/// <summary>SendGrid v3 Mail Send against a server answering with SendGrid's documented shapes.</summary>
public sealed class SendGridEmailProviderTests : IDisposable
{
    private const string SendPath = "/v3/mail/send";
    private readonly EmailApiTestHost host = new();
    private readonly SendGridEmailProvider provider;

    public SendGridEmailProviderTests() => provider = host.Provider<SendGridEmailProvider>();

    public void Dispose() => host.Dispose();

    private Task<SendResult> SendAsync(OutboundMessage? message = null) =>
        provider.SendAsync(message ?? Message(), host.Account("SENDGRID"), TestContext.Current.CancellationToken);

    [Fact]
    public async Task A_send_posts_the_documented_json_and_takes_the_id_from_x_message_id()
    {
        host.Answer(SendPath, 202, headers: ("X-Message-Id", "W86EgYT6SQKk0lRflfLRsA"));

        var result = await SendAsync();

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("W86EgYT6SQKk0lRflfLRsA", result.ProviderMessageId);
        var request = host.Received(SendPath);
        Assert.Equal("POST", request.Method);
        Assert.Equal("Bearer test-api-key", Header(request, "Authorization"));
        var json = Json(request);
        var to = json.GetProperty("personalizations")[0].GetProperty("to")[0];
        Assert.Equal("priya.sharma@example.in", to.GetProperty("email").GetString());
        Assert.Equal("Priya Sharma", to.GetProperty("name").GetString());
        Assert.Equal("accounts@sharma-clinic.in", json.GetProperty("from").GetProperty("email").GetString());
        Assert.Equal("Sharma Dental Clinic", json.GetProperty("from").GetProperty("name").GetString());
        Assert.Equal("front-desk@sharma-clinic.in", json.GetProperty("reply_to").GetProperty("email").GetString());
        Assert.Equal("Your March statement", json.GetProperty("subject").GetString());
        var content = json.GetProperty("content");
        Assert.Equal("text/plain", content[0].GetProperty("type").GetString());
        Assert.Equal("Dear Priya, your statement for March is attached.", content[0].GetProperty("value").GetString());
        Assert.Equal("text/html", content[1].GetProperty("type").GetString());
        Assert.Equal("<p>Dear Priya, your statement for March is attached.</p>", content[1].GetProperty("value").GetString());
        var attachment = Assert.Single(json.GetProperty("attachments").EnumerateArray());
        Assert.Equal(PdfBytes, Convert.FromBase64String(attachment.GetProperty("content").GetString()!));
        Assert.Equal("INV-1042.pdf", attachment.GetProperty("filename").GetString());
        Assert.Equal("application/pdf", attachment.GetProperty("type").GetString());
        var headers = json.GetProperty("headers");
        Assert.Equal(ExpectedMessageIdHeader, headers.GetProperty("Message-ID").GetString());
        Assert.Equal("<https://comms.sharma-clinic.in/u/k7Qx9>", headers.GetProperty("List-Unsubscribe").GetString());
        Assert.Equal("List-Unsubscribe=One-Click", headers.GetProperty("List-Unsubscribe-Post").GetString());
        Assert.Equal("42", json.GetProperty("custom_args").GetProperty("outbox-message-id").GetString());
    }

    [Fact]
    public async Task A_name_with_a_comma_or_semicolon_is_quoted_which_sendgrid_otherwise_drops()
    {
        host.Answer(SendPath, 202, headers: ("X-Message-Id", "W86EgYT6SQKk0lRflfLRsA"));

        await SendAsync(Message() with { ToName = "Sharma, Priya" });
        var quoted = Json(host.Received(SendPath)).GetProperty("personalizations")[0].GetProperty("to")[0].GetProperty("name").GetString();

        Assert.Equal("\"Sharma, Priya\"", quoted);
    }

    [Fact]
    public async Task A_linked_attachment_is_fetched_and_sent_as_base64()
    {
        host.Answer(SendPath, 202, headers: ("X-Message-Id", "abc"));

        await SendAsync(Message(host.LinkedPdf));

        var attachment = Assert.Single(Json(host.Received(SendPath)).GetProperty("attachments").EnumerateArray());
        Assert.Equal(PdfBytes, Convert.FromBase64String(attachment.GetProperty("content").GetString()!));
        Assert.Equal("statement-march.pdf", attachment.GetProperty("filename").GetString());
    }

    [Fact]
    public async Task An_attachment_link_that_fails_is_transient_and_nothing_goes_to_sendgrid()
    {
        var missing = new CommunicationAttachment { FileName = "gone.pdf", ContentType = "application/pdf", Url = host.Server.Url + "/files/gone.pdf" };

        var result = await SendAsync(Message(missing));

        AssertClassified(result, SendOutcome.Transient, "SendGrid: attachment gone.pdf could not be fetched: HTTP 404");
        Assert.True(result.AboutThisMessage);   // the practice's file server, not SendGrid: no count against the circuit breaker
        Assert.False(result.ProviderUnavailable);   // this message's link, not SendGrid: its retries count
        Assert.DoesNotContain(host.Server.LogEntries, e => e.RequestMessage.Path == SendPath);
    }

    [Fact]
    public async Task A_transactional_plain_text_message_carries_no_html_and_no_unsubscribe_headers()
    {
        host.Answer(SendPath, 202, headers: ("X-Message-Id", "abc"));

        await SendAsync(Message() with { HtmlBody = null, UnsubscribeUrl = null, Attachments = [] });

        var json = Json(host.Received(SendPath));
        Assert.Equal(1, json.GetProperty("content").GetArrayLength());
        Assert.False(json.GetProperty("headers").TryGetProperty("List-Unsubscribe", out _));
        Assert.False(json.TryGetProperty("attachments", out _));
    }

    [Fact]
    public async Task A_validation_error_is_permanent_with_sendgrids_message_and_field()
    {
        host.Answer(SendPath, 400, """{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":"http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}]}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "SendGrid 400: Does not contain a valid address. (field personalizations.0.to.0.email)");
    }

    [Fact]
    public async Task A_rejected_key_is_permanent_and_says_to_check_the_credentials()
    {
        host.Answer(SendPath, 401, """{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked"}]}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "SendGrid 401: The provided authorization grant is invalid, expired, or revoked");
        Assert.Contains("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Used_up_plan_credits_wait_an_hour_as_an_outage_not_a_bad_key()
    {
        host.Answer(SendPath, 401, """{"errors":[{"field":null,"message":"Maximum credits exceeded"}]}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, "SendGrid 401: Maximum credits exceeded", TimeSpan.FromHours(1));
        Assert.True(result.ProviderUnavailable);
        Assert.DoesNotContain("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unverified_sender_is_permanent_with_a_verification_hint_not_a_credentials_one()
    {
        host.Answer(SendPath, 403, """{"errors":[{"message":"The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.","field":"from","help":"https://sendgrid.com/docs/for-developers/sending-email/sender-identity/"}]}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "verify the from address as a Sender Identity");
        Assert.DoesNotContain("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_rate_limit_is_transient_and_honours_retry_after()
    {
        host.Answer(SendPath, 429, """{"errors":[{"field":null,"message":"too many requests"}]}""", ("Retry-After", "30"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, "SendGrid 429: too many requests", TimeSpan.FromSeconds(30));
        Assert.True(result.ProviderUnavailable);
    }

    [Fact]
    public async Task Without_retry_after_a_rate_limit_waits_for_x_ratelimit_reset()
    {
        var reset = DateTimeOffset.UtcNow.AddSeconds(60).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        host.Answer(SendPath, 429, """{"errors":[{"field":null,"message":"too many requests"}]}""", ("X-RateLimit-Reset", reset));

        var result = await SendAsync();

        Assert.Equal(SendOutcome.Transient, result.Outcome);
        Assert.InRange(result.RetryAfter!.Value, TimeSpan.FromSeconds(45), TimeSpan.FromSeconds(61));
    }

    [Theory]
    [InlineData(500)]
    [InlineData(503)]
    public async Task Server_errors_are_transient(int status)
    {
        host.Answer(SendPath, status, "<html>Service Unavailable</html>");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, $"SendGrid HTTP {status}");
        Assert.Equal(status == 503, result.ProviderUnavailable);   // after a 500 the message may have gone: a resend uses up a retry
    }

    [Fact]
    public async Task Without_an_api_key_nothing_is_sent()
    {
        var result = await provider.SendAsync(Message(), host.Account("SENDGRID") with { ApiKey = null }, TestContext.Current.CancellationToken);

        host.AssertRefusedUnsent(result, "SendGrid: the API key is missing");
    }

    [Fact]
    public async Task Test_connection_lists_the_scopes_and_explains_a_rejected_key()
    {
        var sent = await host.AssertTestConnectionAsync(provider, host.Account("SENDGRID"), "/v3/scopes",
            """{"scopes":["mail.send","scopes.read"]}""", 401, """{"errors":[{"field":null,"message":"authorization required"}]}""");

        Assert.Equal("Bearer test-api-key", Header(sent, "Authorization"));
    }
}
