using System.Collections.Concurrent;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A provider that exists only in the tests: it records every call and answers as told
/// (sent by default). It stands in for a real provider's wire protocol, not for our database.
/// </summary>
public sealed class CountingProvider(string name, params Channel[] channels) : IMessageProvider
{
    private int calls;

    public string Name => name;

    public IReadOnlyCollection<Channel> Channels => channels;

    public ConcurrentQueue<OutboundMessage> Sent { get; } = new();

    /// <summary>The account each call was given, in call order.</summary>
    public ConcurrentQueue<ProviderAccount> Accounts { get; } = new();

    public int Calls => Volatile.Read(ref calls);

    /// <summary>Decides each call's answer; the default says sent with a provider id.</summary>
    public Func<OutboundMessage, SendResult> Behaviour { get; set; } = m => SendResult.Sent($"{name}-{m.MessageId}");

    public Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken) =>
        Task.FromResult(new ConnectionCheck(true, "test provider"));

    public Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref calls);
        Sent.Enqueue(message);
        Accounts.Enqueue(account);
        return Task.FromResult(Behaviour(message));
    }

    public int CallsFor(long messageId) => Sent.Count(m => m.MessageId == messageId);
}
