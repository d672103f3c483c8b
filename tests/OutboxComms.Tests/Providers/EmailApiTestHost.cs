using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using OutboxComms.Core.Providers.Http;
using WireMock;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace OutboxComms.Tests.Providers;

/// <summary>
/// The HTTP email providers with real plumbing (named HttpClient, ProviderHttp, AttachmentLoader),
/// pointed at a WireMock server that answers as each API documents and records what was sent.
/// </summary>
public sealed class EmailApiTestHost : IDisposable
{
    public static readonly Guid CompanyId = Guid.Parse("6f1c2a8e-4b7d-4e21-9a55-0d3c7b91e204");
    public static readonly DateTimeOffset Now = new(2025, 3, 1, 9, 30, 0, TimeSpan.Zero);
    public static readonly byte[] PdfBytes = "%PDF-1.7 invoice INV-1042"u8.ToArray();
    public const string FilesPath = "/files/statement-march.pdf";

    private readonly ServiceProvider services;

    public EmailApiTestHost()
    {
        var collection = new ServiceCollection();
        collection.AddHttpClient(ProviderHttp.ClientName);
        collection.AddSingleton<ProviderHttp>();
        collection.AddSingleton<AttachmentLoader>();
        collection.AddSingleton<TimeProvider>(new FakeTimeProvider(Now));
        collection.AddSingleton<SendGridEmailProvider>();
        collection.AddSingleton<ResendEmailProvider>();
        collection.AddSingleton<MailgunEmailProvider>();
        collection.AddSingleton<AwsSesEmailProvider>();
        services = collection.BuildServiceProvider();
        // A producer's file server, for attachments given as links.
        Server.Given(Request.Create().WithPath(FilesPath).UsingGet())
            .RespondWith(Response.Create().WithStatusCode(200).WithHeader("Content-Type", "application/pdf").WithBody(PdfBytes));
    }

    public WireMockServer Server { get; } = WireMockServer.Start();

    public T Provider<T>() where T : IMessageProvider => services.GetRequiredService<T>();

    public void Dispose()
    {
        Server.Stop();
        services.Dispose();
    }

    public ProviderAccount Account(string provider) => new()
    {
        CompanyId = CompanyId,
        Channel = Channel.Email,
        Provider = provider,
        ApiKey = "test-api-key",
        From = "accounts@sharma-clinic.in",
        FromName = "Sharma Dental Clinic",
        ReplyTo = "front-desk@sharma-clinic.in",
        BaseUrl = new Uri(Server.Url + "/"),
    };

    /// <summary>A monthly statement with one-click unsubscribe and the invoice PDF (as bytes) attached.</summary>
    public static OutboundMessage Message(params CommunicationAttachment[] attachments) => new()
    {
        MessageId = 42,
        CompanyId = CompanyId,
        Type = MessageType.GeneralUpdate,
        Channel = Channel.Email,
        To = "priya.sharma@example.in",
        ToName = "Priya Sharma",
        Subject = "Your March statement",
        Body = "Dear Priya, your statement for March is attached.",
        HtmlBody = "<p>Dear Priya, your statement for March is attached.</p>",
        UnsubscribeUrl = new Uri("https://comms.sharma-clinic.in/u/k7Qx9"),
        Attachments = attachments.Length > 0 ? attachments : [Pdf],
    };

    public static CommunicationAttachment Pdf => new() { FileName = "INV-1042.pdf", ContentType = "application/pdf", Content = PdfBytes };

    public CommunicationAttachment LinkedPdf => new() { FileName = "statement-march.pdf", ContentType = "application/pdf", Url = Server.Url + FilesPath };

    public static string ExpectedMessageIdHeader => $"<outboxcomms.{CompanyId:N}.42@sharma-clinic.in>";

    public void Answer(string path, int status, string? body = null, params (string Name, string Value)[] headers) =>
        Answer("POST", path, status, body, headers);

    public void Answer(string method, string path, int status, string? body, params (string Name, string Value)[] headers)
    {
        var response = Response.Create().WithStatusCode(status);
        if (body is not null)
        {
            response = response.WithHeader("Content-Type", body.StartsWith('{') ? "application/json" : "text/plain").WithBody(body);
        }
        foreach (var (name, value) in headers)
        {
            response = response.WithHeader(name, value);
        }
        Server.Given(Request.Create().WithPath(path).UsingMethod(method)).RespondWith(response);
    }

    /// <summary>The one request that reached <paramref name="path"/>.</summary>
    public IRequestMessage Received(string path) =>
        Assert.Single(Server.LogEntries, e => e.RequestMessage.Path == path).RequestMessage;

    public static string Header(IRequestMessage request, string name) =>
        Assert.Single(request.Headers!.Single(h => h.Key.Equals(name, StringComparison.OrdinalIgnoreCase)).Value);

    public static JsonElement Json(IRequestMessage request) => JsonDocument.Parse(request.Body!).RootElement;

    /// <summary>A send refused before reaching the API: permanent, saying why, and nothing on the wire.</summary>
    public void AssertRefusedUnsent(SendResult result, string mentions)
    {
        AssertClassified(result, SendOutcome.Permanent, mentions);
        Assert.Empty(Server.LogEntries);
    }

    /// <summary>
    /// Test connection makes one read at <paramref name="path"/>: answered <paramref name="okBody"/> it
    /// passes; answered <paramref name="rejectedStatus"/> it fails saying the credentials were rejected.
    /// Returns the request the passing check sent, for its authentication to be checked.
    /// </summary>
    public async Task<IRequestMessage> AssertTestConnectionAsync(
        IMessageProvider provider, ProviderAccount account, string path, string okBody, int rejectedStatus, string rejectedBody, params (string Name, string Value)[] rejectedHeaders)
    {
        Answer("GET", path, 200, okBody);
        var ok = await provider.TestConnectionAsync(account, TestContext.Current.CancellationToken);
        Assert.True(ok.Ok, ok.Detail);
        var sent = Received(path);

        Server.Reset();
        Answer("GET", path, rejectedStatus, rejectedBody, rejectedHeaders);
        var rejected = await provider.TestConnectionAsync(account, TestContext.Current.CancellationToken);
        Assert.False(rejected.Ok);
        Assert.Contains("rejected the credentials", rejected.Detail, StringComparison.Ordinal);
        return sent;
    }

    /// <summary>What the error tests check: the class, the provider's words, and the wait the provider asked for.</summary>
    public static void AssertClassified(SendResult result, SendOutcome outcome, string mentions, TimeSpan? retryAfter = null)
    {
        Assert.Equal(outcome, result.Outcome);
        Assert.Contains(mentions, result.Error, StringComparison.Ordinal);
        if (retryAfter is not null)
        {
            Assert.Equal(retryAfter, result.RetryAfter);
        }
    }
}
