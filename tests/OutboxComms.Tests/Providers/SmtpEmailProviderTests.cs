using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using MimeKit;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using OutboxComms.Core.Providers.Http;
using OutboxComms.Tests.Infrastructure;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace OutboxComms.Tests.Providers;

/// <summary>The SMTP provider against a real SMTP server (aiosmtpd), each test with its own company and recipients.</summary>
[Collection(SmtpServerCollection.Name)]
public sealed class SmtpEmailProviderTests(SmtpServerFixture smtp) : IAsyncDisposable
{
    private const string From = "billing@sunrise-clinic.example";
    private static long messageIds = 1000;
    private readonly ServiceProvider services = ProviderServices();

    private static CancellationToken Token => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Message_arrives_with_alternatives_attachments_reply_to_and_our_message_id()
    {
        using var files = WireMockServer.Start();
        var consentForm = Encoding.UTF8.GetBytes("%PDF-1.4 consent form");
        files.Given(Request.Create().WithPath("/files/consent.pdf").UsingGet())
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/pdf").WithBody(consentForm));
        var invoice = Encoding.UTF8.GetBytes("%PDF-1.4 invoice INV-1042");
        await using var provider = NewProvider();
        var message = Message(Recipient("asha")) with
        {
            Attachments =
            [
                new CommunicationAttachment { FileName = "INV-1042.pdf", ContentType = "application/pdf", Content = invoice },
                new CommunicationAttachment { FileName = "consent.pdf", ContentType = "application/pdf", Url = $"{files.Url}/files/consent.pdf" },
            ],
        };

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.Equal(EmailComposition.MessageId(message, From), result.ProviderMessageId);
        Assert.Null(result.Cost);
        var received = await smtp.ReceivedForAsync(message.To, Token);
        Assert.Equal(SmtpServerFixture.User, received.Login);
        Assert.Equal(From, received.MailFrom);
        var mime = received.Message;
        Assert.Equal($"outboxcomms.{message.CompanyId:N}.{message.MessageId}@sunrise-clinic.example", mime.MessageId);
        Assert.Equal("Invoice INV-1042 from Sunrise Clinic", mime.Subject);
        Assert.Equal("Sunrise Clinic", mime.From.Mailboxes.Single().Name);
        Assert.Equal(From, mime.From.Mailboxes.Single().Address);
        Assert.Equal(message.To, mime.To.Mailboxes.Single().Address);
        Assert.Equal("front-desk@sunrise-clinic.example", mime.ReplyTo.Mailboxes.Single().Address);
        var mixed = Assert.IsType<Multipart>(mime.Body);
        Assert.Equal("multipart/mixed", mixed.ContentType.MimeType);
        var alternative = Assert.IsType<MultipartAlternative>(mixed[0]);
        Assert.Equal(["text/plain", "text/html"], alternative.Select(part => part.ContentType.MimeType));
        Assert.Equal("Your invoice INV-1042 is attached.", mime.TextBody?.Trim());
        Assert.Equal("<p>Your invoice <b>INV-1042</b> is attached.</p>", mime.HtmlBody?.Trim());
        var attachments = mime.Attachments.OfType<MimePart>().ToDictionary(a => a.FileName ?? "", Bytes);
        Assert.Equal(invoice, attachments["INV-1042.pdf"]);
        Assert.Equal(consentForm, attachments["consent.pdf"]);
        Assert.False(mime.Headers.Contains("List-Unsubscribe"));
        Assert.False(mime.Headers.Contains("List-Unsubscribe-Post"));
    }

    [Fact]
    public async Task An_attachment_that_cannot_be_fetched_now_is_transient_and_one_that_never_can_is_permanent()
    {
        using var files = WireMockServer.Start();
        files.Given(Request.Create().WithPath("/files/INV-1042.pdf").UsingGet()).RespondWith(Response.Create().WithStatusCode(503));
        await using var provider = NewProvider();
        var outage = Message(Recipient("kiran")) with
        {
            Attachments = [new CommunicationAttachment { FileName = "INV-1042.pdf", ContentType = "application/pdf", Url = $"{files.Url}/files/INV-1042.pdf" }],
        };
        var broken = Message(Recipient("kiran")) with { Attachments = [new CommunicationAttachment { FileName = "INV-1043.pdf", ContentType = "application/pdf" }] };

        var later = await provider.SendAsync(outage, Account(outage.CompanyId), Token);
        var never = await provider.SendAsync(broken, Account(broken.CompanyId), Token);

        Assert.Equal((SendOutcome.Transient, SendOutcome.Permanent), (later.Outcome, never.Outcome));
        Assert.False(later.ProviderUnavailable);
        Assert.Equal($"SMTP: attachment INV-1042.pdf could not be fetched: HTTP 503 from {files.Url}/files/INV-1042.pdf", later.Error);
        Assert.Equal("SMTP: attachment INV-1043.pdf has neither content nor URL", never.Error);
    }

    [Fact]
    public async Task General_updates_carry_one_click_unsubscribe_headers()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("ravi")) with
        {
            Type = MessageType.GeneralUpdate,
            UnsubscribeUrl = new Uri("https://comms.example/u/tok-123"),
        };

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        var mime = (await smtp.ReceivedForAsync(message.To, Token)).Message;
        Assert.Equal("<https://comms.example/u/tok-123>", mime.Headers["List-Unsubscribe"]);
        Assert.Equal("List-Unsubscribe=One-Click", mime.Headers["List-Unsubscribe-Post"]);
    }

    [Fact]
    public async Task Wrong_password_is_a_permanent_configuration_failure()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("meera"));

        var result = await provider.SendAsync(message, Account(message.CompanyId) with { SmtpPassword = "not the password" }, Token);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.False(result.Bounced);
        Assert.Equal("SMTP authentication failed: check the username and password in settings", result.Error);
    }

    [Fact]
    public async Task Login_the_server_cannot_check_just_now_is_transient()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("nisha"));

        var result = await provider.SendAsync(message, Account(message.CompanyId) with { SmtpUsername = "busy-mailer" }, Token);

        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.Equal("SMTP 454 4.7.0 Temporary authentication failure", result.Error);
    }

    /// <summary>Each refusal is the server's real reply; the error keeps its code and words ({to} is the recipient).</summary>
    [Theory]
    // Unknown user: the address is bad, a bounce.
    [InlineData("reject-550", SendOutcome.Permanent, true, "SMTP 550 5.1.1 <{to}>: Recipient address rejected: User unknown in local recipient table")]
    // Relay refused: a policy refusal about our account, not about the recipient's address.
    [InlineData("relay-554", SendOutcome.Permanent, false, "SMTP 554 5.7.1 <{to}>: Relay access denied")]
    // Greylisting: the server asks us to come back later.
    [InlineData("defer-451", SendOutcome.Transient, false, "SMTP 451 4.7.1 <{to}>: Recipient address rejected: Greylisted, try again later")]
    // The message itself refused after DATA.
    [InlineData("spam-554", SendOutcome.Permanent, false, "SMTP 554 5.7.1 Message refused: looks like spam")]
    // Mailbox full, with a 5xx: RFC 3463 calls X.2.2 persistent transient, so this message tries again; not a bounce.
    [InlineData("full-552", SendOutcome.Transient, false, "SMTP 552 5.2.2 <{to}>: Recipient address rejected: Mailbox full (the recipient's mailbox is full: tried again later)")]
    public async Task Server_refusals_are_classified_by_their_reply(string recipient, SendOutcome outcome, bool bounced, string error)
    {
        await using var provider = NewProvider();
        var message = Message(Recipient(recipient));

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);

        Assert.Equal(outcome, result.Outcome);
        Assert.Equal(bounced, result.Bounced);
        Assert.False(result.ProviderUnavailable);   // a deferral at RCPT TO is about this recipient: it uses up the message's retries
        Assert.Equal(outcome == SendOutcome.Transient, result.AboutThisMessage);   // and does not count against the server's circuit breaker
        Assert.Equal(error.Replace("{to}", message.To, StringComparison.Ordinal), result.Error);
    }

    /// <summary>Gmail's quota refusal at RCPT TO and Microsoft 365's after DATA, as those servers word them.</summary>
    [Theory]
    [InlineData("quota-550", "SMTP 550 5.4.5 Daily user sending quota exceeded. https://support.google.com/mail/?p=DailyLimitExceeded")]
    [InlineData("m365quota-554", "SMTP 554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message.")]
    public async Task The_accounts_sending_quota_used_up_is_an_outage_that_waits_not_a_failure_or_a_bounce(string recipient, string reply)
    {
        await using var provider = NewProvider();
        var message = Message(Recipient(recipient));

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);

        // An outage: the dispatcher defers it without using up a retry, for the outage budget, an hour at a time at least.
        Assert.Equal((SendOutcome.Transient, true, false, false), (result.Outcome, result.ProviderUnavailable, result.AboutThisMessage, result.Bounced));
        Assert.Equal(SmtpEmailProvider.QuotaRetry, result.RetryAfter);
        Assert.Equal($"{reply} (this SMTP account's sending quota is used up: messages wait for it to lift)", result.Error);
        Assert.Equal(0, await smtp.CountReceivedAsync(message.To, Token));
    }

    [Fact]
    public async Task A_mailbox_name_in_another_script_to_a_server_without_smtputf8_is_refused_as_a_bounce_with_its_reply()
    {
        await using var provider = NewProvider();   // the test server does not offer SMTPUTF8
        var message = Message($"राम-{Guid.NewGuid():N}@patients.example");

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);

        Assert.Equal((SendOutcome.Permanent, true, false), (result.Outcome, result.Bounced, result.ProviderUnavailable));
        Assert.Equal("SMTP 500 Error: strict ASCII mode", result.Error);
    }

    [Fact]
    public async Task Unreachable_server_is_transient()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("lakshmi"));
        var closedPort = ClosedPort();

        var result = await provider.SendAsync(message, Account(message.CompanyId) with { SmtpPort = closedPort }, Token);

        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith($"SMTP connection to 127.0.0.1:{closedPort} failed: ", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_connection_lost_after_the_message_was_sent_uses_up_a_retry_since_it_may_have_gone()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("hangup"));

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);

        Assert.Equal((SendOutcome.Transient, false), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("SMTP connection to 127.0.0.1:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_whose_address_swallows_connection_attempts_is_an_outage_once_connecting_times_out()
    {
        using var swallowing = await SwallowingListener.StartAsync();
        await using var provider = new SmtpEmailProvider(services.GetRequiredService<AttachmentLoader>(), TimeProvider.System, LoopbackAllowed) { ConnectTimeout = TimeSpan.FromMilliseconds(500) };
        var message = Message(Recipient("nobody"));

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var result = await provider.SendAsync(message, Account(message.CompanyId) with { SmtpPort = swallowing.Port }, Token);
        var waited = System.Diagnostics.Stopwatch.GetElapsedTime(started);

        // Given up after ConnectTimeout, long before the 30 s send timeout could decide it as "no answer".
        Assert.InRange(waited, TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(10));
        Assert.Equal((SendOutcome.Transient, true), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith($"SMTP connection to 127.0.0.1:{swallowing.Port} failed: ", result.Error, StringComparison.Ordinal);
        Assert.Contains("timed out", result.Error, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Starttls_asked_of_a_server_without_it_is_a_permanent_configuration_failure()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("kiran"));

        var result = await provider.SendAsync(message, Account(message.CompanyId) with { SmtpSecurity = SmtpSecurity.StartTls }, Token);

        Assert.Equal(SendOutcome.Permanent, result.Outcome);
        Assert.Equal($"SMTP 127.0.0.1:{smtp.Port}: The SMTP server does not support the STARTTLS extension.", result.Error);
    }

    [Fact]
    public async Task Consecutive_sends_of_a_company_reuse_one_connection()
    {
        await using var provider = NewProvider();
        var company = Guid.NewGuid();
        var first = Message(Recipient("first"), company);
        var second = Message(Recipient("second"), company);

        Assert.Equal(SendOutcome.Sent, (await provider.SendAsync(first, Account(company), Token)).Outcome);
        Assert.Equal(SendOutcome.Sent, (await provider.SendAsync(second, Account(company), Token)).Outcome);

        var connection = (await smtp.ReceivedForAsync(first.To, Token)).Connection;
        Assert.Equal(connection, (await smtp.ReceivedForAsync(second.To, Token)).Connection);
    }

    [Theory]
    [InlineData("closeafter")]      // the server closed the idle session silently
    [InlineData("closeafter421")]   // …or said 421 first, as most do
    public async Task A_pooled_connection_the_server_has_closed_is_replaced_and_the_message_still_goes(string closing)
    {
        await using var provider = NewProvider();
        var company = Guid.NewGuid();
        var first = Message(Recipient(closing), company);
        var second = Message(Recipient("second"), company);
        Assert.Equal(SendOutcome.Sent, (await provider.SendAsync(first, Account(company), Token)).Outcome);
        var pooled = (await smtp.ReceivedForAsync(first.To, Token)).Connection;
        Assert.True(await smtp.SawClosedAsync(pooled, Token));

        var result = await provider.SendAsync(second, Account(company), Token);

        Assert.Equal(SendOutcome.Sent, result.Outcome);
        Assert.NotEqual(pooled, (await smtp.ReceivedForAsync(second.To, Token)).Connection);
    }

    [Fact]
    public async Task A_pooled_connection_lost_after_the_server_took_the_message_is_not_tried_again_in_the_same_attempt()
    {
        await using var provider = NewProvider();
        var company = Guid.NewGuid();
        Assert.Equal(SendOutcome.Sent, (await provider.SendAsync(Message(Recipient("before"), company), Account(company), Token)).Outcome);
        var message = Message(Recipient("hangup"), company);

        var result = await provider.SendAsync(message, Account(company), Token);

        Assert.Equal((SendOutcome.Transient, false), (result.Outcome, result.ProviderUnavailable));
        Assert.Equal(1, await smtp.CountReceivedAsync(message.To, Token));   // once, not again on a fresh connection
    }

    [Fact]
    public async Task A_host_name_that_does_not_resolve_uses_up_a_retry_as_a_settings_mistake_not_an_outage()
    {
        await using var provider = NewProvider();
        var message = Message(Recipient("nobody"));

        var result = await provider.SendAsync(message, Account(message.CompanyId) with { SmtpHost = "smtp.practice.invalid" }, Token);

        Assert.Equal((SendOutcome.Transient, false), (result.Outcome, result.ProviderUnavailable));
        Assert.StartsWith("SMTP connection to smtp.practice.invalid:", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Companies_never_share_a_connection()
    {
        await using var provider = NewProvider();
        var one = Message(Recipient("one"));
        var other = Message(Recipient("other"));

        await provider.SendAsync(one, Account(one.CompanyId), Token);
        await provider.SendAsync(other, Account(other.CompanyId), Token);

        Assert.NotEqual((await smtp.ReceivedForAsync(one.To, Token)).Connection, (await smtp.ReceivedForAsync(other.To, Token)).Connection);
    }

    [Fact]
    public async Task A_connection_that_failed_is_closed_and_not_reused()
    {
        await using var provider = NewProvider();
        var company = Guid.NewGuid();
        var before = Message(Recipient("before"), company);
        await provider.SendAsync(before, Account(company), Token);
        var firstConnection = (await smtp.ReceivedForAsync(before.To, Token)).Connection;

        var refused = await provider.SendAsync(Message(Recipient("reject-550"), company), Account(company), Token);
        var after = Message(Recipient("after"), company);
        await provider.SendAsync(after, Account(company), Token);

        Assert.Equal(SendOutcome.Permanent, refused.Outcome);
        Assert.True(await smtp.SawClosedAsync(firstConnection, Token));
        Assert.NotEqual(firstConnection, (await smtp.ReceivedForAsync(after.To, Token)).Connection);
    }

    [Fact]
    public async Task An_idle_connection_is_closed_after_thirty_seconds()
    {
        var time = new FakeTimeProvider();
        await using var provider = NewProvider(time);
        var company = Guid.NewGuid();
        var early = Message(Recipient("early"), company);
        await provider.SendAsync(early, Account(company), Token);
        var connection = (await smtp.ReceivedForAsync(early.To, Token)).Connection;

        time.Advance(TimeSpan.FromSeconds(31));

        Assert.True(await smtp.SawClosedAsync(connection, Token));
        var late = Message(Recipient("late"), company);
        Assert.Equal(SendOutcome.Sent, (await provider.SendAsync(late, Account(company), Token)).Outcome);
        Assert.NotEqual(connection, (await smtp.ReceivedForAsync(late.To, Token)).Connection);
    }

    [Fact]
    public async Task Test_connection_logs_in_and_says_so()
    {
        await using var provider = NewProvider();

        var check = await provider.TestConnectionAsync(Account(Guid.NewGuid()), Token);

        Assert.True(check.Ok);
        Assert.Equal($"Connected to 127.0.0.1:{smtp.Port} without encryption and logged in as {SmtpServerFixture.User}.", check.Detail);
    }

    [Fact]
    public async Task Test_connection_reports_a_rejected_password()
    {
        await using var provider = NewProvider();

        var check = await provider.TestConnectionAsync(Account(Guid.NewGuid()) with { SmtpPassword = "wrong" }, Token);

        Assert.False(check.Ok);
        Assert.Equal("The server rejected the username or password.", check.Detail);
    }

    [Fact]
    public async Task Test_connection_reports_an_unreachable_server()
    {
        await using var provider = NewProvider();
        var closedPort = ClosedPort();

        var check = await provider.TestConnectionAsync(Account(Guid.NewGuid()) with { SmtpPort = closedPort }, Token);

        Assert.False(check.Ok);
        Assert.StartsWith($"Could not connect to 127.0.0.1:{closedPort}: ", check.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_on_a_private_network_is_refused_as_a_settings_mistake_unless_the_operator_allows_it()
    {
        await using var provider = NewProvider(allowPrivateNetworks: false);
        var message = Message(Recipient("internal"));

        var result = await provider.SendAsync(message, Account(message.CompanyId), Token);
        var check = await provider.TestConnectionAsync(Account(message.CompanyId), Token);

        var refusal = $"{SmtpServerFixture.Host} resolves only to loopback, private or link-local addresses, which a company's SMTP server may not use (Providers:AllowPrivateNetworks)";
        Assert.Equal((SendOutcome.Permanent, $"SMTP: {refusal}"), (result.Outcome, result.Error));
        Assert.Equal((false, refusal), (check.Ok, check.Detail));
        await using var allowed = NewProvider(allowPrivateNetworks: true);
        Assert.Equal(SendOutcome.Sent, (await allowed.SendAsync(message, Account(message.CompanyId), Token)).Outcome);
        Assert.Equal(1, await smtp.CountReceivedAsync(message.To, Token));   // only the allowed one
    }

    public async ValueTask DisposeAsync() => await services.DisposeAsync();

    private SmtpEmailProvider NewProvider(TimeProvider? time = null, bool allowPrivateNetworks = true) =>
        new(services.GetRequiredService<AttachmentLoader>(), time ?? TimeProvider.System, allowPrivateNetworks ? LoopbackAllowed : Options.Create(new ProviderNetworkOptions()));

    /// <summary>The test server listens on loopback.</summary>
    private static readonly IOptions<ProviderNetworkOptions> LoopbackAllowed = Options.Create(new ProviderNetworkOptions { AllowPrivateNetworks = true });

    private static ServiceProvider ProviderServices()
    {
        var services = new ServiceCollection();
        services.AddHttpClient(ProviderHttp.ClientName);
        services.AddSingleton<AttachmentLoader>();
        return services.BuildServiceProvider();
    }

    private ProviderAccount Account(Guid companyId) => new()
    {
        CompanyId = companyId,
        Channel = Channel.Email,
        Provider = "SMTP",
        From = From,
        FromName = "Sunrise Clinic",
        ReplyTo = "front-desk@sunrise-clinic.example",
        SmtpHost = SmtpServerFixture.Host,
        SmtpPort = smtp.Port,
        SmtpSecurity = SmtpSecurity.None,
        SmtpUsername = SmtpServerFixture.User,
        SmtpPassword = SmtpServerFixture.Password,
    };

    private static OutboundMessage Message(string to, Guid? companyId = null) => new()
    {
        MessageId = Interlocked.Increment(ref messageIds),
        CompanyId = companyId ?? Guid.NewGuid(),
        Type = MessageType.Invoice,
        Channel = Channel.Email,
        To = to,
        ToName = "Asha Rao",
        Subject = "Invoice INV-1042 from Sunrise Clinic",
        Body = "Your invoice INV-1042 is attached.",
        HtmlBody = "<p>Your invoice <b>INV-1042</b> is attached.</p>",
    };

    /// <summary>Unique per test, so no test reads another's mail; the prefix steers the server's answer.</summary>
    private static string Recipient(string prefix) => $"{prefix}-{Guid.NewGuid():N}@patients.example";

    private static byte[] Bytes(MimePart part)
    {
        using var content = new MemoryStream();
        part.Content!.DecodeTo(content);
        return content.ToArray();
    }

    /// <summary>A loopback port nothing listens on: bound, then released.</summary>
    private static int ClosedPort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
