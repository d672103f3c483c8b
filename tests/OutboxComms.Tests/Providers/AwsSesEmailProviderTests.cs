using MimeKit;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using OutboxComms.Core.Providers.Http;
using WireMock;
using static OutboxComms.Tests.Providers.EmailApiTestHost;

namespace OutboxComms.Tests.Providers;

/// <summary>SES v2 SendEmail (raw MIME, SigV4) against a server answering with SES's documented shapes.</summary>
public sealed class AwsSesEmailProviderTests : IDisposable
{
    private const string SendPath = "/v2/email/outbound-emails";
    private const string AccountPath = "/v2/email/account";
    private const string AccessKeyId = "AKIAIOSFODNN7EXAMPLE";
    private const string SecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    private readonly EmailApiTestHost host = new();
    private readonly AwsSesEmailProvider provider;

    public AwsSesEmailProviderTests() => provider = host.Provider<AwsSesEmailProvider>();

    public void Dispose() => host.Dispose();

    private ProviderAccount Account => host.Account("AWS_SES") with { ApiUser = AccessKeyId, ApiKey = SecretKey };

    private Task<SendResult> SendAsync(OutboundMessage? message = null) =>
        provider.SendAsync(message ?? Message(), Account, TestContext.Current.CancellationToken);

    /// <summary>
    /// The Authorization header is the SigV4 signature of the request as it arrived (host, date,
    /// content type, body), with the configured region (default ap-south-1) and service "ses".
    /// </summary>
    private static void AssertSignedAsReceived(IRequestMessage request, string region)
    {
        List<KeyValuePair<string, string>> headers = [new("Host", Header(request, "Host")), new("X-Amz-Date", Header(request, "X-Amz-Date"))];
        if (request.Headers!.ContainsKey("Content-Type"))
        {
            headers.Add(new("Content-Type", Header(request, "Content-Type")));
        }
        var expected = AwsSigV4.Compute(request.Method, request.Path, "", headers, request.BodyAsBytes ?? [], AccessKeyId, SecretKey, region, "ses", Now);

        Assert.Equal("20250301T093000Z", Header(request, "X-Amz-Date"));
        Assert.StartsWith($"AWS4-HMAC-SHA256 Credential={AccessKeyId}/20250301/{region}/ses/aws4_request, SignedHeaders=", Header(request, "Authorization"), StringComparison.Ordinal);
        Assert.Equal(expected.Authorization, Header(request, "Authorization"));
    }

    [Fact]
    public async Task A_send_posts_raw_mime_signed_with_sigv4_and_reads_the_message_id()
    {
        host.Answer(SendPath, 200, """{"MessageId":"0109018f4a5e7c3b-6d2c1e0f-77aa-4b1c-9d3e-2f5a8c7b6e10-000000"}""");

        var result = await SendAsync();

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("0109018f4a5e7c3b-6d2c1e0f-77aa-4b1c-9d3e-2f5a8c7b6e10-000000", result.ProviderMessageId);
        var request = host.Received(SendPath);
        Assert.Equal("application/json", Header(request, "Content-Type"));
        AssertSignedAsReceived(request, "ap-south-1");
        var json = Json(request);
        Assert.Equal("accounts@sharma-clinic.in", json.GetProperty("FromEmailAddress").GetString());
        Assert.Equal("priya.sharma@example.in", Assert.Single(json.GetProperty("Destination").GetProperty("ToAddresses").EnumerateArray()).GetString());
        Assert.Equal("front-desk@sharma-clinic.in", Assert.Single(json.GetProperty("ReplyToAddresses").EnumerateArray()).GetString());
        var tag = Assert.Single(json.GetProperty("EmailTags").EnumerateArray());
        Assert.Equal("outbox-message-id", tag.GetProperty("Name").GetString());
        Assert.Equal("42", tag.GetProperty("Value").GetString());

        using var raw = new MemoryStream(Convert.FromBase64String(json.GetProperty("Content").GetProperty("Raw").GetProperty("Data").GetString()!));
        var mime = await MimeMessage.LoadAsync(raw, TestContext.Current.CancellationToken);
        var from = Assert.IsType<MailboxAddress>(Assert.Single(mime.From));
        Assert.Equal(("Sharma Dental Clinic", "accounts@sharma-clinic.in"), (from.Name, from.Address));
        Assert.Equal("priya.sharma@example.in", Assert.IsType<MailboxAddress>(Assert.Single(mime.To)).Address);
        Assert.Equal("front-desk@sharma-clinic.in", Assert.IsType<MailboxAddress>(Assert.Single(mime.ReplyTo)).Address);
        Assert.Equal("Your March statement", mime.Subject);
        Assert.Equal(ExpectedMessageIdHeader, $"<{mime.MessageId}>");
        Assert.Equal("<https://comms.sharma-clinic.in/u/k7Qx9>", mime.Headers["List-Unsubscribe"]);
        Assert.Equal("List-Unsubscribe=One-Click", mime.Headers["List-Unsubscribe-Post"]);
        Assert.Equal("Dear Priya, your statement for March is attached.", mime.TextBody!.TrimEnd());
        Assert.Equal("<p>Dear Priya, your statement for March is attached.</p>", mime.HtmlBody!.TrimEnd());
        var attachment = Assert.IsType<MimePart>(Assert.Single(mime.Attachments));
        Assert.Equal("INV-1042.pdf", attachment.FileName);
        using var bytes = new MemoryStream();
        await attachment.Content!.DecodeToAsync(bytes, TestContext.Current.CancellationToken);
        Assert.Equal(PdfBytes, bytes.ToArray());
    }

    [Fact]
    public async Task Hindi_text_and_long_html_lines_go_encoded_in_seven_bit_lines_ses_accepts()
    {
        host.Answer(SendPath, 200, """{"MessageId":"0109018f4a5e7c3b-000000"}""");
        var hindi = "प्रिय प्रिया, मार्च का विवरण संलग्न है: ₹11,800";
        var longHtml = "<p>" + string.Concat(Enumerable.Repeat("<span>statement line</span>", 100)) + "</p>";   // 2,707 characters, one line

        await SendAsync(Message() with { Body = hindi, HtmlBody = longHtml });

        var json = Json(host.Received(SendPath));
        var bytes = Convert.FromBase64String(json.GetProperty("Content").GetProperty("Raw").GetProperty("Data").GetString()!);
        Assert.All(bytes, b => Assert.True(b < 0x80, "a byte outside 7-bit ASCII"));
        Assert.All(System.Text.Encoding.ASCII.GetString(bytes).Split("\r\n"), line => Assert.True(line.Length <= 998, $"a line of {line.Length} characters"));
        using var raw = new MemoryStream(bytes);
        var mime = await MimeMessage.LoadAsync(raw, TestContext.Current.CancellationToken);
        Assert.Equal(hindi, mime.TextBody!.TrimEnd());
        Assert.Equal(longHtml, mime.HtmlBody!.TrimEnd());
    }

    [Fact]
    public async Task The_configured_region_is_signed_into_the_credential_scope()
    {
        host.Answer(SendPath, 200, """{"MessageId":"m"}""");

        await provider.SendAsync(Message(), Account with { Region = "eu-west-1" }, TestContext.Current.CancellationToken);

        AssertSignedAsReceived(host.Received(SendPath), "eu-west-1");
    }

    [Theory]
    [InlineData(400, "MessageRejected", "Email address is not verified. The following identities failed the check in region AP-SOUTH-1: accounts@sharma-clinic.in")]
    [InlineData(400, "MailFromDomainNotVerifiedException", "The MAIL FROM domain is not verified.")]
    [InlineData(400, "BadRequestException", "Missing final '@domain'")]
    [InlineData(404, "NotFoundException", "Configuration set <transactional> does not exist.")]
    public async Task Rejected_messages_are_permanent_with_the_error_type_and_message(int status, string type, string message)
    {
        host.Answer(SendPath, status, $$"""{"message":"{{message}}"}""", ("x-amzn-ErrorType", $"{type}:http://internal.amazon.com/coral/com.amazonaws.sesv2/"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, $"Amazon SES {type}: {message}");
    }

    [Theory]
    [InlineData(429, "TooManyRequestsException", "Maximum sending rate exceeded.")]
    [InlineData(400, "ThrottlingException", "Rate exceeded")]
    [InlineData(400, "LimitExceededException", "Daily message quota exceeded.")]
    public async Task Throttling_and_quota_are_transient_and_honour_retry_after(int status, string type, string message)
    {
        host.Answer(SendPath, status, $$"""{"message":"{{message}}"}""", ("x-amzn-ErrorType", type), ("Retry-After", "5"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, $"Amazon SES {type}: {message}", TimeSpan.FromSeconds(5));
        Assert.True(result.ProviderUnavailable);
    }

    [Theory]
    [InlineData("UnrecognizedClientException", "The security token included in the request is invalid.")]
    [InlineData("InvalidSignatureException", "The request signature we calculated does not match the signature you provided.")]
    public async Task Rejected_credentials_are_permanent_and_say_to_check_them(string type, string message)
    {
        host.Answer(SendPath, 403, $$"""{"message":"{{message}}"}""", ("x-amzn-ErrorType", $"{type}:http://internal.amazon.com/coral/com.amazon.coral.service/"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, $"Amazon SES {type}: {message}");
        Assert.Contains("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Paused_sending_waits_an_hour_as_an_outage_and_points_at_the_aws_console()
    {
        host.Answer(SendPath, 400, """{"message":"Sending is paused for this account."}""", ("x-amzn-ErrorType", "SendingPausedException"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, "Amazon SES SendingPausedException: Sending is paused for this account.", TimeSpan.FromHours(1));
        Assert.True(result.ProviderUnavailable);
        Assert.Contains("AWS console", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_suspended_account_is_permanent_and_points_at_the_aws_console()
    {
        host.Answer(SendPath, 400, """{"message":"Your account has been suspended."}""", ("x-amzn-ErrorType", "AccountSuspendedException"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "Amazon SES AccountSuspendedException: Your account has been suspended.");
        Assert.Contains("AWS console", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_the_header_the_error_type_is_read_from_the_body()
    {
        host.Answer(SendPath, 400, """{"__type":"com.amazonaws.sesv2#MessageRejected","message":"Illegal address"}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "Amazon SES MessageRejected: Illegal address");
    }

    [Fact]
    public async Task A_success_without_sess_json_is_not_taken_as_sent()
    {
        host.Answer(SendPath, 200, "<html><body>Welcome to nginx!</body></html>");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, "Amazon SES (HTTP 200) answered without its JSON: check the base URL");
    }

    [Fact]
    public async Task A_server_error_is_transient()
    {
        host.Answer(SendPath, 500, """{"message":"Internal Failure"}""", ("x-amzn-ErrorType", "InternalFailure"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, "Amazon SES InternalFailure: Internal Failure");
        Assert.False(result.ProviderUnavailable);   // a 500 may come after SES took the message
    }

    [Fact]
    public async Task Without_an_access_key_id_nothing_is_sent()
    {
        var result = await provider.SendAsync(Message(), Account with { ApiUser = null }, TestContext.Current.CancellationToken);

        host.AssertRefusedUnsent(result, "Amazon SES: the access key id is missing");
    }

    [Fact]
    public async Task Test_connection_reads_the_account_signed_and_explains_rejected_keys()
    {
        var sent = await host.AssertTestConnectionAsync(provider, Account, AccountPath,
            """{"DedicatedIpAutoWarmupEnabled":false,"EnforcementStatus":"HEALTHY","ProductionAccessEnabled":true,"SendQuota":{"Max24HourSend":50000.0,"MaxSendRate":14.0,"SentLast24Hours":120.0},"SendingEnabled":true}""",
            403, """{"message":"The security token included in the request is invalid."}""", ("x-amzn-ErrorType", "UnrecognizedClientException"));

        AssertSignedAsReceived(sent, "ap-south-1");
    }
}
