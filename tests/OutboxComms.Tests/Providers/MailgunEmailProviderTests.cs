using MimeKit;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using WireMock;
using static OutboxComms.Tests.Providers.EmailApiTestHost;

namespace OutboxComms.Tests.Providers;

/// <summary>Mailgun's Messages API against a server answering with Mailgun's documented shapes.</summary>
public sealed class MailgunEmailProviderTests : IDisposable
{
    private const string Domain = "mg.sharma-clinic.in";
    private const string SendPath = $"/v3/{Domain}/messages";
    private readonly EmailApiTestHost host = new();
    private readonly MailgunEmailProvider provider;

    public MailgunEmailProviderTests() => provider = host.Provider<MailgunEmailProvider>();

    public void Dispose() => host.Dispose();

    private ProviderAccount Account => host.Account("MAILGUN") with { ApiUser = Domain, ApiKey = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0" };

    private Task<SendResult> SendAsync(OutboundMessage? message = null) =>
        provider.SendAsync(message ?? Message(), Account, TestContext.Current.CancellationToken);

    /// <summary>The multipart form as Mailgun reads it: each part by its form-data name.</summary>
    private static List<(string Name, MimePart Part)> Form(IRequestMessage request)
    {
        using var body = new MemoryStream(request.BodyAsBytes!);
        var multipart = Assert.IsType<Multipart>(MimeEntity.Load(ContentType.Parse(Header(request, "Content-Type")), body));
        return [.. multipart.Cast<MimePart>().Select(part => (part.ContentDisposition!.Parameters["name"]!, part))];
    }

    private static string Field(List<(string Name, MimePart Part)> form, string name) =>
        Assert.IsType<TextPart>(Assert.Single(form, f => f.Name == name).Part).Text;

    [Fact]
    public async Task A_send_posts_the_documented_form_with_basic_auth_and_reads_the_id()
    {
        host.Answer(SendPath, 200, """{"id":"<20250301093000.1.5F9C3E1A2B4D6E80@mg.sharma-clinic.in>","message":"Queued. Thank you."}""");

        var result = await SendAsync();

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("20250301093000.1.5F9C3E1A2B4D6E80@mg.sharma-clinic.in", result.ProviderMessageId);
        var request = host.Received(SendPath);
        Assert.Equal("Basic " + Convert.ToBase64String("api:key-3ax6xnjp29jd6fds4gc373sgvjxteol0"u8.ToArray()), Header(request, "Authorization"));
        Assert.StartsWith("multipart/form-data", Header(request, "Content-Type"), StringComparison.Ordinal);
        var form = Form(request);
        Assert.Equal("Sharma Dental Clinic <accounts@sharma-clinic.in>", Field(form, "from"));
        Assert.Equal("Priya Sharma <priya.sharma@example.in>", Field(form, "to"));
        Assert.Equal("Your March statement", Field(form, "subject"));
        Assert.Equal("Dear Priya, your statement for March is attached.", Field(form, "text"));
        Assert.Equal("<p>Dear Priya, your statement for March is attached.</p>", Field(form, "html"));
        Assert.Equal("front-desk@sharma-clinic.in", Field(form, "h:Reply-To"));
        Assert.Equal(ExpectedMessageIdHeader, Field(form, "h:Message-ID"));
        Assert.Equal("<https://comms.sharma-clinic.in/u/k7Qx9>", Field(form, "h:List-Unsubscribe"));
        Assert.Equal("List-Unsubscribe=One-Click", Field(form, "h:List-Unsubscribe-Post"));
        Assert.Equal("42", Field(form, "v:outbox-message-id"));
        var attachment = Assert.Single(form, f => f.Name == "attachment").Part;
        Assert.Equal("INV-1042.pdf", attachment.FileName);
        Assert.Equal("application/pdf", attachment.ContentType.MimeType);
        using var bytes = new MemoryStream();
        await attachment.Content!.DecodeToAsync(bytes, TestContext.Current.CancellationToken);
        Assert.Equal(PdfBytes, bytes.ToArray());
    }

    [Fact]
    public async Task A_linked_attachment_is_fetched_and_uploaded_as_a_file()
    {
        host.Answer(SendPath, 200, """{"id":"<a@mg.sharma-clinic.in>","message":"Queued. Thank you."}""");

        await SendAsync(Message(host.LinkedPdf));

        var attachment = Assert.Single(Form(host.Received(SendPath)), f => f.Name == "attachment").Part;
        Assert.Equal("statement-march.pdf", attachment.FileName);
    }

    [Fact]
    public async Task A_file_name_with_double_quotes_goes_with_single_ones_rather_than_failing_the_form()
    {
        host.Answer(SendPath, 200, """{"id":"<b@mg.sharma-clinic.in>","message":"Queued. Thank you."}""");

        var result = await SendAsync(Message(new CommunicationAttachment { FileName = "Invoice \"Final\".pdf", ContentType = "application/pdf", Content = PdfBytes }));

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal("Invoice 'Final'.pdf", Assert.Single(Form(host.Received(SendPath)), f => f.Name == "attachment").Part.FileName);
    }

    [Theory]
    [InlineData(null, "https://api.mailgun.net/v3/mg.sharma-clinic.in/messages")]
    [InlineData("us", "https://api.mailgun.net/v3/mg.sharma-clinic.in/messages")]
    [InlineData("EU", "https://api.eu.mailgun.net/v3/mg.sharma-clinic.in/messages")]
    public void The_region_picks_mailguns_host_unless_an_endpoint_is_configured(string? region, string expected)
    {
        var account = Account with { BaseUrl = null, Region = region };

        Assert.Equal(new Uri(expected), MailgunEmailProvider.Endpoint(account, SendPath[1..]));
        Assert.Equal(new Uri($"{host.Server.Url}{SendPath}"), MailgunEmailProvider.Endpoint(Account with { Region = region }, SendPath[1..]));
    }

    [Fact]
    public async Task A_validation_error_is_permanent_with_mailguns_message()
    {
        host.Answer(SendPath, 400, """{"message":"to parameter is not a valid address. please check documentation"}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "Mailgun 400: to parameter is not a valid address. please check documentation");
    }

    [Fact]
    public async Task A_rejected_key_is_permanent_and_says_to_check_the_credentials()
    {
        host.Answer(SendPath, 401, "Forbidden");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "Mailgun 401: Forbidden");
        Assert.Contains("check the credentials", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_domain_is_permanent_and_points_at_domain_and_region()
    {
        host.Answer(SendPath, 404, """{"message":"Domain not found: mg.sharma-clinic.in"}""");

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Permanent, "Mailgun 404: Domain not found: mg.sharma-clinic.in");
        Assert.Contains("region", result.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(429, """{"message":"Too many requests"}""", "Mailgun 429: Too many requests")]
    [InlineData(500, """{"message":"Internal Server Error"}""", "Mailgun 500: Internal Server Error")]
    [InlineData(503, "<html><body>503 Service Unavailable</body></html>", "Mailgun 503: <html>")]
    public async Task Rate_limits_and_server_errors_are_transient_and_honour_retry_after(int status, string body, string mentions)
    {
        host.Answer(SendPath, status, body, ("Retry-After", "45"));

        var result = await SendAsync();

        AssertClassified(result, SendOutcome.Transient, mentions, TimeSpan.FromSeconds(45));
    }

    [Fact]
    public async Task Without_a_sending_domain_nothing_is_sent()
    {
        var result = await provider.SendAsync(Message(), Account with { ApiUser = null }, TestContext.Current.CancellationToken);

        host.AssertRefusedUnsent(result, "Mailgun: the sending domain is missing");
    }

    [Fact]
    public async Task Test_connection_reads_the_domain_and_explains_a_rejected_key()
    {
        var sent = await host.AssertTestConnectionAsync(provider, Account, $"/v3/domains/{Domain}",
            """{"domain":{"name":"mg.sharma-clinic.in","state":"active"},"receiving_dns_records":[],"sending_dns_records":[]}""", 401, "Forbidden");

        Assert.StartsWith("Basic ", Header(sent, "Authorization"), StringComparison.Ordinal);
    }
}
