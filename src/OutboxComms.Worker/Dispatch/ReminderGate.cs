using System.Collections.Concurrent;
using OutboxComms.Core.Messages;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// The reminders this process is sending right now, one per customer and reminder type, and the
/// ones it has just recorded. A process works on several batches at once
/// (<see cref="DispatchOptions.ConcurrentBatches"/>); without this, two batches could each send a
/// reminder of the same type to the same customer before either had recorded it, and the frequency
/// policy would let both through. A batch holds its entries until its outcomes (with the reminder
/// times) are committed. Across processes, a hold on the customer's <c>reminder_frequency_state</c> row does the same
/// (<see cref="OutboxStore.ReserveRemindersAsync"/>), after this gate.
/// </summary>
/// <remarks>
/// A batch reads the customers' last reminder times with its recipients, but enters the gate only once
/// its policy data is loaded: a batch that committed a reminder and left the gate in between would
/// be invisible to it (its read predates the commit, its entry postdates the exit). So a batch
/// that records a reminder leaves the send time here, and a batch that enters takes the later of
/// the two. An entry is kept while some batch that began reading before it was recorded has not
/// entered yet; after that every reader's own read includes the commit.
/// </remarks>
internal sealed class ReminderGate
{
    private readonly ConcurrentDictionary<(Guid CustomerId, MessageType Type), long> sending = new();
    // Readers and records are ordered by one counter, under one lock (a few calls per batch): a
    // record is needed by the readers with a lower ticket (they read before it was committed) and
    // by no one once they have entered; a reader that starts after a record was pruned reads after
    // its commit.
    private readonly Lock sync = new();
    private readonly Dictionary<(Guid CustomerId, MessageType Type), RecordedReminder> recorded = [];
    private readonly HashSet<long> readers = [];
    private long sequence;

    /// <summary>True when <paramref name="messageId"/> may be this customer's reminder of this type in flight.</summary>
    public bool TryEnter(Guid customerId, MessageType type, long messageId) =>
        sending.TryAdd((customerId, type), messageId) || sending.TryGetValue((customerId, type), out var holder) && holder == messageId;

    public void Exit(Guid customerId, MessageType type, long messageId) =>
        sending.TryRemove(KeyValuePair.Create((customerId, type), messageId));

    /// <summary>A batch is about to read reminder times from the database; returns its ticket for <see cref="EndRead"/>.</summary>
    public long BeginRead()
    {
        lock (sync)
        {
            readers.Add(++sequence);
            return sequence;
        }
    }

    /// <summary>The batch holding <paramref name="ticket"/> has entered the gate with what it read (or claimed nothing).</summary>
    public void EndRead(long ticket)
    {
        lock (sync)
        {
            readers.Remove(ticket);
            if (recorded.Count == 0)
            {
                return;
            }
            var oldestReader = readers.Count == 0 ? long.MaxValue : readers.Min();
            foreach (var (key, entry) in recorded)
            {
                if (entry.Sequence < oldestReader)
                {
                    recorded.Remove(key);
                }
            }
        }
    }

    /// <summary>A batch's outcomes are committed: remembers its reminder sends (call before leaving the gate).</summary>
    public void Recorded(IReadOnlyList<Completion> outcomes)
    {
        lock (sync)
        {
            if (readers.Count == 0)
            {
                return; // every later reader reads after the commit
            }
            foreach (var outcome in outcomes)
            {
                if (outcome is { ReminderSent: var (customerId, type), SentAt: { } sentAt })
                {
                    var entry = new RecordedReminder(sentAt, outcome.ReminderCreatedAt, outcome.ReminderPairId, ++sequence);
                    recorded[(customerId, type)] = recorded.TryGetValue((customerId, type), out var old) && old.SentAt > sentAt
                        ? old with { Sequence = entry.Sequence }
                        : entry;
                }
            }
        }
    }

    /// <summary>The latest reminder of this type to this customer recorded since a batch still entering began reading, if any.</summary>
    public RecordedReminder? LastRecorded(Guid customerId, MessageType type)
    {
        lock (sync)
        {
            return recorded.GetValueOrDefault((customerId, type));
        }
    }
}

/// <summary>A reminder's send time, its message's created_at and pair id (its BOTH twins share both), as the frequency policy counts it.</summary>
internal sealed record RecordedReminder(DateTimeOffset SentAt, DateTimeOffset? CreatedAt, long? PairId, long Sequence);
