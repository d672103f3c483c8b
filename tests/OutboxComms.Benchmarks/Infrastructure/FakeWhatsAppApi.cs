using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>
/// Answers <c>POST /{phone-number-id}/messages</c> the way Meta's WhatsApp Cloud API does on
/// success, on loopback (Kestrel, HTTP/1.1), after reading and parsing the request like a server
/// would. It runs inside the harness process, so its CPU shows up as "harness".
/// </summary>
internal sealed class FakeWhatsAppApi : IAsyncDisposable
{
    private readonly WebApplication app;
    private long requests;

    private FakeWhatsAppApi(WebApplication app) => this.app = app;

    public Uri BaseUrl { get; private set; } = null!;

    public long Requests => Interlocked.Read(ref requests);

    public static async Task<FakeWhatsAppApi> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var api = new FakeWhatsAppApi(app);
        app.MapPost("/{phoneNumberId}/messages", api.SendAsync);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        api.BaseUrl = new Uri(address.TrimEnd('/') + "/");
        return api;
    }

    private async Task SendAsync(HttpContext context, string phoneNumberId)
    {
        using var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        var to = body.RootElement.TryGetProperty("to", out var t) ? t.GetString() : "";
        var id = Interlocked.Increment(ref requests);
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(
            $$"""{"messaging_product":"whatsapp","contacts":[{"input":"{{to}}","wa_id":"{{to}}"}],"messages":[{"id":"wamid.HBgM{{phoneNumberId}}{{id:D12}}","message_status":"accepted"}]}""",
            context.RequestAborted);
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
