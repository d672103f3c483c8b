using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// One unit of dispatch work: claim a batch, load what its policies need, dispatch each message
/// with bounded concurrency, record every outcome in one transaction. No transaction is held open
/// while a provider is called.
/// </summary>
internal sealed class BatchProcessor(
    OutboxStore store,
    MessageDispatcher dispatcher,
    ReminderGate reminders,
    ClockSkewGuard clock,
    IServiceScopeFactory scopes,
    IOptions<DispatchOptions> options,
    TimeProvider time,
    OutboxMetrics metrics,
    DeliveryEventRecorder deliveryEvents,
    ILogger<BatchProcessor> logger)
{
    private readonly DispatchOptions settings = options.Value;

    private readonly SemaphoreSlim claiming = new(1, 1);

    private long batches;
    private readonly string processMark = Guid.NewGuid().ToString("N")[..8];

    public string WorkerId => settings.ResolvedWorkerId();

    /// <summary>
    /// Processes one batch; returns how many rows it claimed. Once <paramref name="stopping"/> is
    /// signalled no new send starts (unstarted rows are released at once); sends already running
    /// continue until <paramref name="sendToken"/> is cancelled. Claims nothing while this worker's
    /// clock disagrees with PostgreSQL's and most workers', or with one whose leases may be live (<see cref="ClockSkewGuard"/>).
    /// </summary>
    public async Task<int> RunOnceAsync(CancellationToken stopping, CancellationToken sendToken)
    {
        if (stopping.IsCancellationRequested || !await clock.AllowsClaimsAsync(stopping))
        {
            return 0;
        }
        // Each batch's own lease token (worker id, this process's random mark, a batch number): a
        // process runs several batches at once, and one batch must never complete or release rows
        // that another batch reclaimed after this one's lease ran out — of this process, or of
        // another given the same Dispatch:WorkerId (two replicas of one configuration).
        var lease = $"{WorkerId}#{processMark}.{Interlocked.Increment(ref batches)}";
        List<ClaimedMessage> claimed;
        DateTimeOffset claimedAt;
        long claimedTimestamp;
        // One claim in flight per process: concurrent claims walk the same head of the due index,
        // each skipping the rows the others hold locked and the entries they just left dead.
        await claiming.WaitAsync(stopping);
        try
        {
            // Asked again after the wait for this process's turn (other lanes' claims, up to their
            // command timeouts): the decision may have lapsed, or the clock been set, meanwhile.
            if (!clock.AllowsClaims)
            {
                return 0;
            }
            claimedAt = time.GetUtcNow();
            claimedTimestamp = time.GetTimestamp();
            // Not cancelled by shutdown once started: a claim cut off after its commit would leave its
            // rows leased and unsent until the lease ends; a claimed batch meeting shutdown is released at once.
            claimed = await store.ClaimAsync(lease, settings.BatchSize, claimedAt, settings.LeaseDuration, CancellationToken.None);
        }
        finally
        {
            claiming.Release();
        }
        if (claimed.Count == 0)
        {
            return 0;
        }
        metrics.Claimed(claimed.Count);

        BatchContext context;
        // From before reading the customers' last reminder times (with the recipients) until the
        // batch has entered the reminder gate: see ReminderGate.
        var reading = reminders.BeginRead();
        try
        {
            claimed = await store.WithRecipientsAsync(lease, claimed, claimedAt, CancellationToken.None);
            await using var scope = scopes.CreateAsyncScope();
            context = (await BatchContext.LoadAsync(scope.ServiceProvider.GetRequiredService<OutboxDbContext>(), claimed, reminders, store.AttachmentContentAsync, CancellationToken.None))
                .ReadingRecipientsAgain(claimedAt, store.CurrentRecipientAsync);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException || ex is InvalidOperationException { InnerException: NpgsqlException or TimeoutException })
        {
            // (EF's queries report a transient failure as an InvalidOperationException around it.)
            // Nothing was sent: the batch is given back at once rather than held until its lease
            // ends (a blip, a lock, a command timeout), then the lane backs off as from any error.
            await TryReleaseAsync(lease, claimed);
            throw;
        }
        finally
        {
            reminders.EndRead(reading);
        }
        try
        {
            // The gate keeps this process's batches apart; this keeps processes apart. Nothing is
            // sent yet when it fails: the batch is given back, as above.
            if (context.HeldReminders.Count > 0)
            {
                List<(Guid CustomerId, MessageType Type)> wanted = [.. context.HeldReminders.Select(h => (h.CustomerId, h.Type))];
                try
                {
                    context.Reserved(await store.ReserveRemindersAsync(lease, wanted, claimedAt + settings.LeaseDuration, claimedAt, CancellationToken.None));
                }
                catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
                {
                    // The entries may have been taken before the failure (a lost answer): given back.
                    await FreeRemindersAsync(lease, wanted);
                    await TryReleaseAsync(lease, claimed);
                    throw;
                }
            }
            // The last moment a send may start: one that starts later could still be running when
            // the lease ends and another worker, taking the row over, sends it a second time (a batch
            // of 500 with 32 sends at once is 16 rounds; a provider answering in 8 s needs 128 s).
            var startBy = claimedAt + settings.LeaseDuration - settings.SendTimeout - settings.ShutdownGrace;
            context.StartBy = startBy;
            context.Clock = () => claimedAt + time.GetElapsedTime(claimedTimestamp);
            context.Stopping = stopping;
            return await DispatchAndRecordAsync(lease, claimed, context, startBy, claimedAt + settings.LeaseDuration, stopping, sendToken);
        }
        finally
        {
            // (The holds on reminder_frequency_state were given back with the outcomes, or run out with the lease.)
            foreach (var (customerId, type, messageId) in context.HeldReminders)
            {
                reminders.Exit(customerId, type, messageId);
            }
        }
    }

    private async Task<int> DispatchAndRecordAsync(
        string lease, List<ClaimedMessage> claimed, BatchContext context, DateTimeOffset startBy, DateTimeOffset leaseEnds, CancellationToken stopping, CancellationToken sendToken)
    {
        var completions = new ConcurrentBag<Completion>();
        var released = new ConcurrentBag<ClaimedMessage>();
        var outOfLease = 0;
        var notStarted = 0;
        await Parallel.ForEachAsync(
            claimed,
            new ParallelOptions { MaxDegreeOfParallelism = settings.MaxConcurrentSends },
            async (message, _) =>
            {
                if (stopping.IsCancellationRequested)
                {
                    released.Add(message);
                    return;
                }
                if (context.Now(time) > startBy)
                {
                    // Given back unsent, due at once: the next claim takes it under a fresh lease.
                    Interlocked.Increment(ref outOfLease);
                    released.Add(message);
                    return;
                }
                try
                {
                    completions.Add(await dispatcher.DispatchAsync(message, context, sendToken));
                }
                catch (OperationCanceledException)
                {
                    // Cut off by the end of the shutdown grace: give the row back rather than lose
                    // the outcomes of the rest of the batch.
                    released.Add(message);
                }
                catch (SendNotStartedException ex)
                {
                    // Its reads before the call (the recipient again, stored files) took it past
                    // startBy, or the database failed them: given back unsent, as above.
                    if (ex.WindowClosed)
                    {
                        Interlocked.Increment(ref outOfLease);
                    }
                    else if (!ex.Stopping)
                    {
                        Interlocked.Increment(ref notStarted);
                        DispatchLog.NotStarted(logger, ex, message.Id, message.CompanyId, ex.Message);
                    }
                    released.Add(message);
                }
            });

        Completion[] outcomes = [.. completions];
        // The unsent rows are given back whatever happens to the outcomes: a recording that gave up
        // (the database away longer than its retries) or a failure applying an early delivery event
        // must not keep them leased, and a failed release must not leave such an event unapplied.
        try
        {
            try
            {
                await CompleteAsync(lease, outcomes, leaseEnds, context);
                // Counted once the recording returned, not when decided: an outcome whose recording
                // failed is sent again under another lease and counted then. (One the database refused
                // even alone, or whose lease was lost meanwhile, may still be counted twice.)
                foreach (var outcome in outcomes)
                {
                    metrics.Processed(WireName<DeliveryStatus>.Of(outcome.Status), WireName<Channel>.Of(outcome.Channel));
                }
            }
            finally
            {
                // Even when recording gave up: its last commit may have landed unacknowledged, and a
                // reminder remembered too long only waits, where one forgotten goes out twice.
                reminders.Recorded(outcomes);
            }
            await ApplyWaitingEventsAsync(outcomes);
        }
        finally
        {
            if (!released.IsEmpty)
            {
                await store.ReleaseAsync(lease, [.. released], time.GetUtcNow(), CancellationToken.None);
                if (outOfLease > 0)
                {
                    DispatchLog.ReleasedOutOfLease(logger, WorkerId, outOfLease, claimed.Count, settings.LeaseDuration);
                }
                if (released.Count > outOfLease + notStarted)
                {
                    DispatchLog.Released(logger, WorkerId, released.Count - outOfLease - notStarted);
                }
            }
        }
        return claimed.Count;
    }

    /// <summary>Gives back the batch's reminder entries; a failure is only logged (they run out with the lease).</summary>
    private async Task FreeRemindersAsync(string lease, List<(Guid CustomerId, MessageType Type)> reserved)
    {
        try
        {
            await store.FreeRemindersAsync(lease, reserved, CancellationToken.None);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            DispatchLog.RemindersNotFreed(logger, ex, WorkerId, reserved.Count);
        }
    }

    /// <summary>A batch that could not be prepared is given back; a release that fails too leaves it to its lease.</summary>
    private async Task TryReleaseAsync(string lease, List<ClaimedMessage> claimed)
    {
        try
        {
            await store.ReleaseAsync(lease, claimed, time.GetUtcNow(), CancellationToken.None);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            DispatchLog.ReleaseFailed(logger, ex, WorkerId, claimed.Count);
        }
    }

    /// <summary>
    /// A delivery event (WhatsApp's "failed" for an undeliverable number, a carrier's "undelivered")
    /// can arrive before this batch recorded its message's provider id, and was then stored as for
    /// an unknown message: now that the ids are recorded, such events are applied. One indexed
    /// lookup per batch, which nearly always finds none. A failure leaves them stored, and is only logged.
    /// </summary>
    private async Task ApplyWaitingEventsAsync(Completion[] outcomes)
    {
        List<string> sent = [.. outcomes.Where(c => c.Status == Core.Messages.DeliveryStatus.Sent && c.ProviderMessageId is not null).Select(c => c.ProviderMessageId!)];
        try
        {
            if (await deliveryEvents.ApplyWaitingAsync(sent, CancellationToken.None) is > 0 and var applied)
            {
                DispatchLog.WaitingEventsApplied(logger, applied);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            DispatchLog.WaitingEventsFailed(logger, ex);
        }
    }

    /// <summary>
    /// Records outcomes. The messages were already handed to providers: if this never lands, the
    /// leases expire and they are sent again (at-least-once). So a lost connection (a database
    /// failover) is retried until shortly before the lease ends, not given up after seconds; and an
    /// outcome the database refuses (a value out of range, text it cannot store) does not throw away
    /// the batch's others: they are recorded one at a time, the refused one without its texts.
    /// </summary>
    private async Task CompleteAsync(string lease, IReadOnlyList<Completion> completions, DateTimeOffset leaseEnds, BatchContext context)
    {
        try
        {
            // The batch's reminder entries go with this commit; when it is refused, with the lease
            // (an outcome recorded one by one may have lost its reminder time).
            await RecordAsync(lease, completions, leaseEnds, context, context.ReservedReminders);
        }
        catch (Exception ex) when (Refused(ex) && completions.Count > 1)
        {
            DispatchLog.CompleteOneByOne(logger, ex, completions.Count);
            foreach (var completion in completions)
            {
                await RecordOneAsync(lease, completion, leaseEnds, context);
            }
        }
        catch (Exception ex) when (Refused(ex))
        {
            await RecordOneAsync(lease, completions[0], leaseEnds, context, ex);
        }
    }

    private async Task RecordOneAsync(string lease, Completion completion, DateTimeOffset leaseEnds, BatchContext context, Exception? refusal = null)
    {
        if (refusal is null)
        {
            try
            {
                await RecordAsync(lease, [completion], leaseEnds, context);
                return;
            }
            catch (Exception ex) when (Refused(ex))
            {
                refusal = ex;
            }
        }
        DispatchLog.CompleteWithoutText(logger, refusal, completion.Id, WireName<Core.Messages.DeliveryStatus>.Of(completion.Status));
        var reason = $"its outcome could not be stored as it was ({refusal.GetType().Name}: {StorableText.Truncate(refusal.Message, 200)}); recorded without its texts and cost";
        try
        {
            await RecordAsync(lease, [Stripped(reason)], leaseEnds, context);
            return;
        }
        catch (Exception ex) when (Refused(ex))
        {
            DispatchLog.CompleteStrippedRefused(logger, ex, completion.Id);
            refusal = ex;
        }
        // Left to its lease, the row would be claimed, sent and refused again at every lease, for
        // ever: its status alone is recorded, and the reason says what was not (a channel of a
        // BOTH message that never got its row, an attempt missing from the history).
        reason = $"its outcome could not be stored ({refusal.GetType().Name}: {StorableText.Truncate(refusal.Message, 200)}); its status alone was recorded"
            + (completion.SplitInto.Count > 0 ? $", and its {string.Join(" and ", completion.SplitInto.Select(WireName<Channel>.Of))} row was not created" : "")
            + (completion.Attempt is null ? "" : ", without its attempt");
        try
        {
            await RecordAsync(lease, [Stripped(reason) with { SplitInto = [], Attempt = null, ReminderSent = null, RecipientOptedOut = false, MarketingStopped = false }], leaseEnds, context);
        }
        catch (Exception ex) when (Refused(ex))
        {
            // Refused even so: this one row waits out its lease (and is sent again then), the
            // batch's other outcomes are still recorded.
            DispatchLog.CompleteRefused(logger, ex, completion.Id);
        }

        Completion Stripped(string reason) => completion with
        {
            StatusReason = reason,
            ErrorMessage = completion.ErrorMessage is null ? null : "(not storable)",
            Subject = null,
            Content = null,
            TemplateUsed = null,
            Cost = null,
            CostCurrency = null,
            Attempt = completion.Attempt is null ? null : completion.Attempt with { Error = completion.Attempt.Error is null ? null : "(not storable)", Cost = null, CostCurrency = null },
        };
    }

    /// <summary>One write of these outcomes, retried while the database cannot be reached, until 10 s before the lease ends (at least five tries, at most 300).</summary>
    private async Task RecordAsync(string lease, IReadOnlyList<Completion> completions, DateTimeOffset leaseEnds, BatchContext context,
        IReadOnlyCollection<(Guid CustomerId, MessageType Type)>? freeReminders = null)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                // After a lost connection the earlier write may have committed unacknowledged. (One the
                // database refused was rolled back: a refusal on a later try means none landed.)
                await store.CompleteAsync(lease, completions, time.GetUtcNow(), CancellationToken.None, mayHaveLanded: attempt > 1, freeReminders);
                return;
            }
            catch (NpgsqlException ex) when (!Refused(ex) && (attempt < 5 || (ex.IsTransient && attempt < 300 && context.Now(time) < leaseEnds - TimeSpan.FromSeconds(10))))
            {
                DispatchLog.CompleteRetry(logger, ex, completions.Count, attempt);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(200 * attempt, 2_000)));
            }
        }
    }

    /// <summary>The database refused the values themselves (class 22 data exception, 23 constraint), or Npgsql could not write them: retrying the same write cannot help.</summary>
    private static bool Refused(Exception ex) =>
        ex is PostgresException { SqlState: ['2', '2' or '3', ..] } or ArgumentException or InvalidCastException or OverflowException or FormatException;
}
