using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Http;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Tests.Infrastructure;
using WireMock;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;

namespace OutboxComms.Tests.Providers;

/// <summary>
/// A WireMock server standing in for one WhatsApp/SMS provider, and the real provider plumbing
/// (named HTTP client, <see cref="ProviderHttp"/>) pointed at it through the account's BaseUrl.
/// One per test: the server records exactly the requests that test made.
/// </summary>
public sealed class MessagingProviderTestHost : IDisposable
{
    private readonly ServiceProvider services;

    public MessagingProviderTestHost()
    {
        var collection = new ServiceCollection();
        collection.AddHttpClient(ProviderHttp.ClientName);
        collection.AddSingleton<ProviderHttp>();
        collection.AddSingleton<AttachmentLoader>();
        collection.AddSingleton<TwilioProvider>();
        collection.AddSingleton<MessageBirdProvider>();
        collection.AddSingleton<GupshupProvider>();
        services = collection.BuildServiceProvider();
    }

    public WireMockServer Server { get; } = WireMockServer.Start();

    public Uri BaseUrl => new(Server.Url + "/");

    public T Provider<T>() where T : IMessageProvider => services.GetRequiredService<T>();

    /// <summary>The provider answers <paramref name="path"/> with this status, JSON body and headers.</summary>
    public void Answers(string method, string path, int status, string body, params (string Name, string Value)[] headers)
    {
        var response = Response.Create().WithStatusCode(status).WithBody(body);
        if (!headers.Any(h => h.Name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase)))
        {
            response = response.WithHeader("Content-Type", "application/json");
        }
        foreach (var (name, value) in headers)
        {
            response = response.WithHeader(name, value);
        }
        Server.Given(Request.Create().WithPath(path).UsingMethod(method)).RespondWith(response);
    }

    /// <summary>The one request the provider made.</summary>
    public IRequestMessage SingleRequest => Assert.Single(Server.LogEntries).RequestMessage;

    public static string Header(IRequestMessage request, string name)
    {
        Assert.NotNull(request.Headers);
        var pair = Assert.Single(request.Headers, h => h.Key.Equals(name, StringComparison.OrdinalIgnoreCase));
        return Assert.Single(pair.Value);
    }

    public static string BasicAuth(string user, string password) =>
        "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{password}"));

    /// <summary>The form fields of a form-encoded request; each field must appear once.</summary>
    public static Dictionary<string, string> Form(IRequestMessage request)
    {
        Assert.StartsWith("application/x-www-form-urlencoded", Header(request, "Content-Type"), StringComparison.Ordinal);
        return QueryHelpers.ParseQuery(request.Body).ToDictionary(f => f.Key, f => Assert.Single(f.Value.ToArray())!);
    }

    public static JsonElement Json(IRequestMessage request)
    {
        Assert.StartsWith("application/json", Header(request, "Content-Type"), StringComparison.Ordinal);
        using var document = JsonDocument.Parse(request.Body!);
        return document.RootElement.Clone();
    }

    public static JsonElement Json(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    public static OutboundMessage Message(Channel channel, string body = "Invoice INV-7 for 1,180.00 INR is due on 30 June.") => new()
    {
        MessageId = 42,
        CompanyId = Guid.Parse("7d1f3a52-94a8-4a43-9c55-1d4f0c2b6e11"),
        Type = MessageType.Invoice,
        Channel = channel,
        To = "+919876543210",
        Body = body,
    };

    public static CommunicationAttachment LinkedPdf => new()
    {
        FileName = "INV-7.pdf",
        ContentType = "application/pdf",
        Url = "https://files.example.in/invoices/INV-7.pdf",
    };

    /// <summary>The registry the application builds from <c>AddProviders()</c>.</summary>
    public static ProviderRegistry RegistryFromAddProviders()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection([new("Encryption:Keys", TestKeys.Encryption)]);
        builder.AddProviders();
        using var host = builder.Build();
        return host.Services.GetRequiredService<ProviderRegistry>();
    }

    public void Dispose()
    {
        Server.Stop();
        Server.Dispose();
        services.Dispose();
    }
}
