using Microsoft.Extensions.Options;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// The attachment bytes one worker process may hold at once (<see cref="DispatchOptions.AttachmentMemoryMegabytes"/>):
/// a send with files reserves their size before it reads stored bytes or fetches links, and gives
/// it back when its provider call ends. Without it, 4 batches of 32 sends with 20 MB invoices held
/// gigabytes (each file read, then copied and encoded by the provider client), and an
/// OutOfMemoryException could land anywhere, the batch's outcomes with it. Waiters go first come,
/// first served; a send that waits past its batch's last start is given back unsent (MessageDispatcher).
/// </summary>
public sealed class AttachmentMemory(IOptions<DispatchOptions> options)
{
    private readonly long capacity = options.Value.AttachmentMemoryMegabytes * 1024L * 1024L;
    private readonly Lock gate = new();
    private readonly LinkedList<(long Bytes, TaskCompletionSource Granted)> waiting = new();
    private long available = options.Value.AttachmentMemoryMegabytes * 1024L * 1024L;

    /// <summary>Bytes not reserved now (for tests and metrics).</summary>
    public long Available
    {
        get
        {
            lock (gate)
            {
                return available;
            }
        }
    }

    /// <summary>
    /// What a message's files may take while it is sent: their stored sizes where known, the most a
    /// message may carry (<see cref="AttachmentLoader.MaxBytes"/>) for a link or a size a producer
    /// left out; never more than the whole budget.
    /// </summary>
    public long BytesFor(IReadOnlyList<CommunicationAttachment> attachments)
    {
        ArgumentNullException.ThrowIfNull(attachments);
        var unknown = attachments.Any(a => a.Url is not null || a.SizeBytes is null);
        var bytes = unknown ? AttachmentLoader.MaxBytes : Math.Min(AttachmentLoader.MaxBytes, attachments.Sum(a => a.SizeBytes ?? 0));
        return Math.Clamp(bytes, 1, capacity);
    }

    public async ValueTask<IDisposable> ReserveAsync(long bytes, CancellationToken cancellationToken)
    {
        bytes = Math.Clamp(bytes, 1, capacity);
        LinkedListNode<(long, TaskCompletionSource)> node;
        lock (gate)
        {
            if (waiting.Count == 0 && available >= bytes)
            {
                available -= bytes;
                return new Reservation(this, bytes);
            }
            node = waiting.AddLast((bytes, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)));
        }
        var granted = node.Value.Item2;
        await using (cancellationToken.Register(() =>
        {
            lock (gate)
            {
                if (node.List is not null)
                {
                    waiting.Remove(node);
                    granted.TrySetCanceled(cancellationToken);
                    GrantWaiting();   // those behind it may fit now
                }
            }
        }))
        {
            await granted.Task.ConfigureAwait(false);
        }
        return new Reservation(this, bytes);
    }

    private void Release(long bytes)
    {
        lock (gate)
        {
            available += bytes;
            GrantWaiting();
        }
    }

    /// <summary>Grants the waiters at the head of the queue that fit, in order; under the lock.</summary>
    private void GrantWaiting()
    {
        while (waiting.First is { } first && available >= first.Value.Bytes)
        {
            available -= first.Value.Bytes;
            waiting.RemoveFirst();
            first.Value.Granted.TrySetResult();
        }
    }

    private sealed class Reservation(AttachmentMemory owner, long bytes) : IDisposable
    {
        private int released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref released, 1) == 0)
            {
                owner.Release(bytes);
            }
        }
    }
}
