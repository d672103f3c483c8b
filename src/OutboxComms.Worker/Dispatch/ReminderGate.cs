using System.Collections.Concurrent;
using OutboxComms.Core.Messages;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// The reminders this process is sending right now, one per customer and reminder type. A process
/// works on several batches at once (<see cref="DispatchOptions.ConcurrentBatches"/>); without this,
/// two batches could each send a reminder of the same type to the same customer before either had
/// recorded it, and the frequency policy would let both through. A batch holds its entries until
/// its outcomes (with the reminder times) are committed. Across processes the policy stays exact
/// within a batch only (see README, "Known limit").
/// </summary>
internal sealed class ReminderGate
{
    private readonly ConcurrentDictionary<(Guid CustomerId, MessageType Type), long> sending = new();

    /// <summary>True when <paramref name="messageId"/> may be this customer's reminder of this type in flight.</summary>
    public bool TryEnter(Guid customerId, MessageType type, long messageId) =>
        sending.TryAdd((customerId, type), messageId) || sending.TryGetValue((customerId, type), out var holder) && holder == messageId;

    public void Exit(Guid customerId, MessageType type, long messageId) =>
        sending.TryRemove(KeyValuePair.Create((customerId, type), messageId));
}
