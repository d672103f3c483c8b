using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Worker;

namespace OutboxComms.Benchmarks;

/// <summary>
/// One dispatch worker process, built exactly as production builds it (AddWorkerServices: the
/// dispatch loop, LISTEN/NOTIFY, queue sampler, webhook retention), configured from the
/// environment the harness passes. Only the providers change: email always goes to a no-op
/// provider; WhatsApp too with <c>--provider noop</c>, or to the real Cloud API client with
/// <c>--provider whatsapp</c> (pointed at the fake API by the practices' settings). It stops when
/// its standard input closes, so it never outlives the harness.
/// </summary>
internal static class BenchWorker
{
    public const string Verb = "worker";

    public static async Task<int> RunAsync(string[] args)
    {
        var provider = args.SkipWhile(a => a != "--provider").Skip(1).FirstOrDefault() ?? "noop";
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.AddWorkerServices();
        // Registered after AddWorkerServices, so these replace the real clients for these names.
        builder.Services.AddSingleton<IMessageProvider>(new NoOpProvider("SMTP", Channel.Email));
        if (provider == "noop")
        {
            builder.Services.AddSingleton<IMessageProvider>(new NoOpProvider("WHATSAPP_BUSINESS_API", Channel.WhatsApp));
        }
        using var host = builder.Build();
        await host.StartAsync();
        await Console.In.ReadToEndAsync();
        await host.StopAsync();
        return 0;
    }
}

/// <summary>
/// A provider that accepts every message at once and costs nothing: what is left is our own
/// machinery (claim, policies, rendering, recording).
/// </summary>
internal sealed class NoOpProvider(string name, params Channel[] channels) : IMessageProvider
{
    public string Name => name;

    public IReadOnlyCollection<Channel> Channels => channels;

    public Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken) =>
        Task.FromResult(SendResult.Sent($"noop-{message.MessageId}"));

    public Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken) =>
        Task.FromResult(new ConnectionCheck(true, "no-op benchmark provider"));
}
