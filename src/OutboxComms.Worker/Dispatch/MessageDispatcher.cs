using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Providers.Email;
using OutboxComms.Core.Providers.Messaging;
using OutboxComms.Core.Security;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Workflows;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// Decides, renders and sends one claimed message, and says what to record. The policies run in a
/// fixed order, each stopping the message with a reason a person can read: expiry, channel
/// resolution, consent, company configuration, contact address, quiet hours, reminder frequency.
/// Only then is the template rendered and the provider called.
/// </summary>
internal sealed partial class MessageDispatcher(
    ProviderRegistry providers,
    SecretProtector secrets,
    ProviderCircuitBreakers breakers,
    TemplateRenderer renderer,
    IOptions<DispatchOptions> options,
    TimeProvider time,
    OutboxMetrics metrics,
    UnsubscribeTokens unsubscribeTokens,
    AttachmentMemory attachmentMemory,
    ILogger<MessageDispatcher> logger)
{
    private readonly DispatchOptions settings = options.Value;

    /// <summary>How long a batch's reading of its recipients decides its sends; a send starting later reads its recipient again.</summary>
    internal static readonly TimeSpan RecipientsFreshFor = TimeSpan.FromSeconds(5);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, DateTimeOffset> keyMissingLogged = new();

    public async Task<Completion> DispatchAsync(ClaimedMessage message, BatchContext context, CancellationToken sendToken)
    {
        Completion completion;
        try
        {
            message = await WithCurrentRecipientAsync(message, context, sendToken);
            completion = await DecideAndSendAsync(message, context, sendToken);
            if (message.CustomerId is null && message.Customer is { } recipient)
            {
                // Named by the business app's code alone: from now on the row names this customer.
                completion = completion with { CustomerId = recipient.Id };
            }
        }
        catch (Exception ex) when (ex is not SendNotStartedException && (ex is not OperationCanceledException || !sendToken.IsCancellationRequested))
        {
            // A bug of ours must not lose the message or stop the batch: retry within its budget.
            DispatchLog.Unexpected(logger, ex, message.Id, message.CompanyId);
            completion = InternalError(message, $"internal error: {ex.GetType().Name}: {ex.Message}");
        }

        if (completion.Status is DeliveryStatus.Failed or DeliveryStatus.Bounced)
        {
            DispatchLog.Failed(logger, message.Id, message.CompanyId, LogRedaction.Contacts(completion.ErrorMessage));
        }
        else if (logger.IsEnabled(LogLevel.Debug))
        {
            // Masked, as failures are: a fallback's reason may quote the customer's number.
            DispatchLog.Outcome(logger, message.Id, message.CompanyId, WireName<DeliveryStatus>.Of(completion.Status), LogRedaction.Contacts(completion.StatusReason));
        }
        return completion;
    }

    /// <summary>
    /// Consent as it is now. The batch read its recipients at the claim, and with a slow provider
    /// its last sends start most of a lease later: an opt-out, an unsubscribe, a provider's STOP or
    /// a deletion committed meanwhile must decide them, not be overridden for up to a minute. A fast
    /// batch (every send within <see cref="RecipientsFreshFor"/>) costs no extra query.
    /// </summary>
    private async Task<ClaimedMessage> WithCurrentRecipientAsync(ClaimedMessage message, BatchContext context, CancellationToken sendToken)
    {
        if (message.Customer is not null && context.Now(time) - context.RecipientsReadAt > RecipientsFreshFor
            && context.CurrentRecipientAsync(message, sendToken) is { } reading)
        {
            try
            {
                return message with { Customer = await reading };
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidCastException or FormatException or OverflowException or ArgumentException)
            {
                // Not read again (a database blip, a pool that is full, a row .NET cannot read): the
                // batch's reading at the claim decides, as it always did, rather than the message
                // losing a retry to an internal error.
                DispatchLog.RecipientNotReread(logger, ex, message.Id, message.CompanyId);
            }
        }
        return message;
    }

    private async Task<Completion> DecideAndSendAsync(ClaimedMessage message, BatchContext context, CancellationToken sendToken)
    {
        var now = time.GetUtcNow();

        // 1. Expired.
        if (message.ExpiresAt is { } expiresAt && expiresAt <= now)
        {
            return new Completion(message.Id, message.CompanyId, DeliveryStatus.Cancelled, message.Channel)
            {
                NextAttemptAt = now,
                RetryCount = message.RetryCount,
                AttemptCount = message.AttemptCount,
                StatusReason = $"expired at {expiresAt.UtcDateTime:u} before it could be sent",
            };
        }

        // A digest lists no reminder resolved since it was written; one written for customers with a
        // reminder due that has nothing left to list does not go.
        var (templateData, nothingLeft) = DigestReminders.Without(message.TemplateData, context.ResolvedReminders(message.CompanyId));
        if (nothingLeft)
        {
            return new Completion(message.Id, message.CompanyId, DeliveryStatus.Cancelled, message.Channel)
            {
                NextAttemptAt = now,
                RetryCount = message.RetryCount,
                AttemptCount = message.AttemptCount,
                StatusReason = "every reminder this digest listed was resolved before it could be sent",
            };
        }
        message = message with { TemplateData = templateData };

        var customer = message.Customer;
        var company = context.Company(message.CompanyId);
        if (company is null)
        {
            // No foreign key checks a row's company (migration 0010): a producer's typo is this row's failure, not its business transaction's.
            return Fail(message, message.Channel, $"company {message.CompanyId} does not exist");
        }
        if (company.DeactivatedAt is not null)
        {
            // Offboarded: whatever reached the outbox after the deactivation's own cancellation (a
            // SQL producer, a reminder step claimed a moment before, a key still cached in its first seconds).
            return Unsent(message, new Resolution(message.Channel, null, []), DeliveryStatus.Cancelled, now, "cancelled: the company was deactivated");
        }
        if (message is { Content: not null, TemplateKey: not null, AttemptCount: 0, ReplayCount: 0 })
        {
            // As a SQL producer wrote it (the API refuses both; a sent row keeps its rendered text
            // beside its template, but has an attempt): the template's text would silently replace
            // the producer's, a revised amount, say.
            return Fail(message, message.Channel, "the row gives both content and template_key: give one (the template's text would replace the content)");
        }
        if (customer is null)
        {
            var who = message.CustomerId?.ToString() ?? $"with external id '{message.CustomerExternalId}'";
            return Fail(message, message.Channel, $"customer {who} does not exist in this company");
        }
        if (customer.DeletedAt is not null)
        {
            return Suppress(message, new Resolution(message.Channel, null, []), "customer was deleted", now);
        }
        var preference = customer.Preference ?? new CommunicationPreference();

        // 2. Channel resolution: PREFERRED takes the customer's channel for this type; BOTH is one row per channel.
        var requested = message.Channel;
        var wanted = requested == Channel.Preferred ? preference.ChannelFor(message.Type) : requested;
        string? fallbackNote = null;
        if (requested == Channel.Preferred && message.Type != MessageType.GeneralUpdate && wanted is Channel.Email or Channel.WhatsApp or Channel.Sms
            && Unreachable(message, context, company, customer, preference, wanted) is { } why)
        {
            // An invoice or reminder still reaches the client on a channel they consented to when
            // their preferred one cannot carry it (they replied STOP there, have no number, the
            // company has no provider for it); a general update does not (their choice is the limit).
            // Only a template has a text for each channel (an approved WhatsApp template, DLT-registered
            // SMS text): plain content falls back to email alone, as free WhatsApp text needs the
            // client's 24-hour window and SMS to India unregistered text is blocked by DLT scrubbing.
            var plain = message.TemplateKey is null;
            foreach (var other in plain ? [Channel.Email] : FallbackOrder)
            {
                if (other == wanted)
                {
                    continue;
                }
                if (Unreachable(message, context, company, customer, preference, other) is not { } otherWhy)
                {
                    fallbackNote = $"on {WireName<Channel>.Of(other)} instead of the preferred {WireName<Channel>.Of(wanted)}: {why}";
                    wanted = other;
                    break;
                }
                if (plain)
                {
                    fallbackNote = $"without a template it could go by EMAIL only, and not there either: {otherWhy}";
                }
            }
        }
        Channel[] channels = wanted == Channel.Both ? [Channel.Email, Channel.WhatsApp] : [wanted];
        var channel = channels[0];
        var resolved = new Resolution(
            channel,
            requested is Channel.Both or Channel.Preferred ? requested : null,
            channels.Length > 1 ? channels[1..] : []) { Note = fallbackNote };

        // 3. Consent, then the company's own setup for the channel. A channel no provider serves
        // (VOICE, which plain-SQL producers can write) fails the row rather than reading as a consent problem.
        if (channel is Channel.Voice)
        {
            providers.Resolve(company.Settings, channel, out var noProvider);
            return Fail(message, resolved, noProvider!);
        }
        if (!OptedIn(preference, channel))
        {
            return Suppress(message, resolved, $"customer has not opted in to {WireName<Channel>.Of(channel)}", now);
        }
        if (message.Type == MessageType.GeneralUpdate && preference.StopsGeneralUpdatesOn(channel))
        {
            return Suppress(message, resolved, preference.GeneralUpdatesOptOut
                ? "customer unsubscribed from general updates"
                : $"customer stopped general updates on {WireName<Channel>.Of(channel)}", now);
        }
        var provider = providers.Resolve(company.Settings, channel, out var unavailable);
        if (provider is null)
        {
            return Fail(message, resolved, unavailable!);
        }

        // 4. Contact address.
        if (!TryAddress(customer, channel, out var address, out var addressProblem))
        {
            return Fail(message, resolved, addressProblem);
        }

        // 5. Quiet hours, in the customer's time zone.
        if (!LocalTimes.TryFindZone(customer.TimeZone, out var zone))
        {
            return Fail(message, resolved, $"customer's time zone '{customer.TimeZone}' is not a known IANA time zone");
        }
        if (preference is { QuietHoursStart: { } start, QuietHoursEnd: { } end })
        {
            var quiet = new QuietHours(start, end);
            if (quiet.CoversWholeDay)
            {
                return Suppress(message, resolved, "the customer's quiet hours cover the whole day (00:00–24:00): nothing may be sent to them; change the quiet hours, then replay the message", now);
            }
            if (quiet.DeferUntil(now, zone) is { } quietUntil)
            {
                return Defer(message, resolved, quietUntil, $"quiet hours {quiet} ({zone.Id}); deferred until {quietUntil.UtcDateTime:u}");
            }
        }

        // 6. Reminder frequency (a BOTH pair is one reminder: its second channel follows the first).
        var lastReminder = message.Type.IsReminder() ? context.LastReminder(customer.Id, message) : default;
        if (message.Type.IsReminder() && !message.IsTwinOf(lastReminder.CreatedAt, lastReminder.PairId))
        {
            DateTimeOffset? allowedAt;
            try
            {
                var lastSent = message.IsItself(lastReminder.CreatedAt, lastReminder.PairId) ? null : lastReminder.SentAt;
                allowedAt = ReminderFrequencyPolicy.NextAllowed(lastSent, preference.ReminderFrequency, preference.ReminderCron, zone, now);
            }
            catch (FormatException ex)
            {
                return Fail(message, resolved, $"customer's reminder schedule is invalid: {ex.Message}");
            }
            if (allowedAt is null && !context.IsFirstReminderInBatch(customer.Id, message))
            {
                // Another reminder of this type to this customer is ahead of this one (earlier in the
                // batch, or being sent by another batch of this process), and whether it goes out is
                // not decided yet: it may be suppressed, fail, expire or wait for quiet hours. Look
                // again once its batch has recorded it (within a lease), when the check above sees
                // what was sent; deferring to the next period now would hold this one back for
                // nothing when the other never went out.
                var recheck = now + settings.LeaseDuration;
                return DeferAtMost(message, resolved, recheck,
                    $"reminder frequency {WireName<ReminderFrequency>.Of(preference.ReminderFrequency)}: another {WireName<MessageType>.Of(message.Type)} to this customer is being sent; checked again at {recheck.UtcDateTime:u}");
            }
            if (allowedAt is { } next && message.IsReminderStep && message.ExpiresAt is { } deadline && next >= deadline)
            {
                // The limit would hold a reminder sequence's step until after its deadline (a "due
                // tomorrow" behind Monday's digest): it is not dropped for it. Only steps: a
                // producer's own expires_at says "not after", not "this is the deadline".
                var held = $"sent although a {WireName<MessageType>.Of(message.Type)} already went out this period: reminder frequency {WireName<ReminderFrequency>.Of(preference.ReminderFrequency)} would have held it until {next.UtcDateTime:u}, after it expires at {deadline.UtcDateTime:u}";
                resolved = resolved with { Note = resolved.Note is null ? held : $"{resolved.Note}; {held}" };
            }
            else if (allowedAt is { } nextAllowed)
            {
                return Defer(message, resolved, nextAllowed,
                    $"reminder frequency {WireName<ReminderFrequency>.Of(preference.ReminderFrequency)}: a {WireName<MessageType>.Of(message.Type)} already went out this period; deferred until {nextAllowed.UtcDateTime:u}");
            }
        }

        // Render.
        Rendered rendered;
        try
        {
            rendered = Render(message, context, company, customer, channel, zone);
        }
        catch (TemplateException ex) when (ex.TimedOut)
        {
            // A wall-clock limit: a GC pause or a starved CPU can stop a template that renders in
            // time on the next try. It spends a retry, so one that never finishes still fails.
            return Retry(message, channel, resolved, ex.Message, null, null, 0, providerUnavailable: false);
        }
        catch (TemplateException ex)
        {
            return Fail(message, resolved, ex.Message);
        }

        ProviderAccount account;
        try
        {
            account = context.Account(message.CompanyId, channel, () => AccountFor(company.Settings!, channel, provider));
        }
        catch (SecretKeyNotConfiguredException ex)
        {
            // Once per company every 5 minutes, not once per message of its backlog.
            var seen = time.GetUtcNow();
            if (keyMissingLogged.GetValueOrDefault(message.CompanyId) is var last && seen - last >= TimeSpan.FromMinutes(5))
            {
                keyMissingLogged[message.CompanyId] = seen;
                DispatchLog.KeyMissing(logger, message.CompanyId, WireName<Channel>.Of(channel), ex.Message);
            }
            // This worker's configuration is behind (a new key put first elsewhere, a newer build
            // wrote the secret): another worker, or this one once restarted, can read it. Waited
            // out as an outage, not failed: OUTBOXCOMMS_ENCRYPTION_KEY must list the key.
            return Retry(message, channel, resolved, $"cannot read the company's {WireName<Channel>.Of(channel)} credentials on this worker: {ex.Message}",
                null, provider.Name, 0, providerUnavailable: true, waitingFor: "waiting for this worker's encryption keys");
        }
        catch (System.Security.Cryptography.CryptographicException ex)
        {
            return Fail(message, resolved, $"cannot read the company's {WireName<Channel>.Of(channel)} credentials: {ex.Message}");
        }
        catch (ProviderSettingsException ex)
        {
            return Fail(message, resolved, ex.Message);
        }

        var attachments = context.Attachments(message.Id);
        if (AttachmentRules.Problem(attachments, channel) is { } attachmentProblem)
        {
            return Fail(message, resolved, attachmentProblem);
        }

        // Send. A message with files holds their size of the process's attachment budget until its
        // provider call ends: read, copied and encoded, they are what can exhaust its memory.
        using var reserved = attachments.Count == 0 ? null : await ReserveAttachmentMemoryAsync(attachments, context, sendToken);
        IReadOnlyList<CommunicationAttachment> toSend;
        try
        {
            toSend = attachments.Count == 0 ? attachments : await context.AttachmentsForSendAsync(message.Id, sendToken);
        }
        catch (StoredAttachmentsTooLargeException ex)
        {
            return Fail(message, resolved, ex.Message);
        }
        catch (Exception ex) when (ex is NpgsqlException { IsTransient: true } or TimeoutException)
        {
            // The database's trouble, not the message's: given back unsent, no retry spent.
            throw new SendNotStartedException($"its stored attachments could not be read: {ex.Message}", ex);
        }
        if (toSend.FirstOrDefault(a => a.Content is null && a.Url is null) is { } gone)
        {
            // Its stored bytes were deleted since the claim, which only the message's own deletion
            // does: nothing is sent, and no provider is blamed for it.
            return Fail(message, resolved, $"attachment {gone.FileName} was deleted before the message could be sent");
        }
        var outbound = new OutboundMessage
        {
            MessageId = message.Id,
            CompanyId = message.CompanyId,
            ReplayCount = message.ReplayCount,
            EarlierAttempts = message.AttemptCount,
            Type = message.Type,
            Channel = channel,
            To = address,
            ToName = customer.Name,
            Subject = rendered.Subject,
            Body = rendered.Body,
            HtmlBody = rendered.HtmlBody,
            ProviderTemplate = rendered.ProviderTemplate,
            Attachments = toSend,
            UnsubscribeUrl = channel == Channel.Email && EmailComposition.IsNonTransactional(message.Type) && settings.PublicBaseUrl is { } publicBase
                ? new Uri(publicBase, $"unsubscribe/{unsubscribeTokens.Create(customer.Id)}")
                : null,
        };
        if (context.Now(time) > context.StartBy)
        {
            // The reads above (the recipient again, stored files) can be slow: a call started now
            // could outlast the lease, and another worker would send the row a second time.
            throw SendNotStartedException.PastLastStart("before the provider call");
        }
        return await SendAsync(message, resolved, rendered, provider, company.Settings!, account, outbound, sendToken);
    }

    /// <summary>
    /// The message's share of the process's attachment budget, waited for no later than its batch's
    /// last start (past it the row is given back unsent: a batch waiting on memory must not outlive
    /// its lease while its sent rows wait to be recorded) and not once the worker is stopping.
    /// </summary>
    private async Task<IDisposable> ReserveAttachmentMemoryAsync(IReadOnlyList<CommunicationAttachment> attachments, BatchContext context, CancellationToken sendToken)
    {
        var left = context.StartBy == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : context.StartBy - context.Now(time);
        if (left != Timeout.InfiniteTimeSpan && left <= TimeSpan.Zero)
        {
            throw SendNotStartedException.PastLastStart("before its attachments could be read");
        }
        using var deadline = new CancellationTokenSource(left, time);
        using var waiting = CancellationTokenSource.CreateLinkedTokenSource(sendToken, context.Stopping, deadline.Token);
        IDisposable reserved;
        try
        {
            reserved = await attachmentMemory.ReserveAsync(attachmentMemory.BytesFor(attachments), waiting.Token);
        }
        catch (OperationCanceledException) when (!sendToken.IsCancellationRequested)
        {
            throw context.Stopping.IsCancellationRequested
                ? new SendNotStartedException("the worker is stopping") { Stopping = true }
                : SendNotStartedException.PastLastStart("while it waited for attachment memory");
        }
        if (context.Now(time) > context.StartBy)
        {
            reserved.Dispose();   // granted too late: no bytes are read
            throw SendNotStartedException.PastLastStart("while it waited for attachment memory");
        }
        return reserved;
    }

    private async Task<Completion> SendAsync(
        ClaimedMessage message, Resolution resolved, Rendered rendered, IMessageProvider provider, CompanySettings companySettings, ProviderAccount account, OutboundMessage outbound, CancellationToken sendToken)
    {
        var started = Stopwatch.GetTimestamp();
        SendResult result;
        try
        {
            result = await breakers.ExecuteAsync(message.CompanyId, provider.Name, token => provider.SendAsync(outbound, account, token), sendToken);
        }
        catch (BrokenCircuitException ex)
        {
            // No call was made, so no attempt and no retry is used up. The company's provider is out,
            // and its rows wait as an outage's do: counted as outage attempts, backing off to
            // OutageMaxDelay with jitter, never before the break ends. Deferred to the break's end
            // each time, every pending row of the company came back together at each break's end,
            // to be claimed and deferred again, for as long as the outage lasted.
            var outageAttempt = message.OutageAttempts + 1;
            var failing = $"provider {provider.Name} is failing for this company (circuit open)";
            if (outageAttempt > settings.OutageRetries)
            {
                // Past the outage budget each deferral spends a retry, as a failed call would: a
                // provider broken for good (revoked credentials) fails its rows in the end instead of
                // holding them PENDING for as long as it stays broken.
                var retry = message.RetryCount + 1;
                if (retry > message.MaxRetries)
                {
                    return Fail(message, resolved, $"gave up: {failing} past {settings.OutageRetries} outage attempts and {message.MaxRetries} retries") with
                    {
                        RetryCount = retry, OutageAttempts = outageAttempt, ProviderName = provider.Name,
                    };
                }
                var later = time.GetUtcNow() + RetrySchedule.Delay(retry, settings.RetryBaseDelay, settings.RetryJitter, settings.MaxRetryDelay, ex.RetryAfter ?? settings.BreakerBreakDuration);
                return DeferAtMost(message, resolved, later, $"{failing}; retry {retry} of {message.MaxRetries} at {later.UtcDateTime:u}") with
                {
                    RetryCount = retry, OutageAttempts = outageAttempt,
                };
            }
            var until = time.GetUtcNow() + RetrySchedule.Delay(outageAttempt, settings.RetryBaseDelay, settings.RetryJitter, settings.OutageMaxDelay, ex.RetryAfter ?? settings.BreakerBreakDuration);
            return DeferAtMost(message, resolved, until, $"{failing}; deferred until {until.UtcDateTime:u}") with { OutageAttempts = outageAttempt };
        }
        catch (TimeoutRejectedException)
        {
            result = SendResult.Transient($"{provider.Name} did not answer within {settings.SendTimeout.TotalSeconds:0.#} s");
        }
        catch (OperationCanceledException) when (sendToken.IsCancellationRequested)
        {
            // Shutdown cut the call short: the provider may or may not have it. Try again soon,
            // without spending the message's retry budget.
            var latency = (int)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var now = time.GetUtcNow();
            return new Completion(message.Id, message.CompanyId, DeliveryStatus.Pending, resolved.StoredChannel(DeliveryStatus.Pending))
            {
                RequestedChannel = resolved.Requested,
                SplitInto = resolved.Split,
                NextAttemptAt = now,
                RetryCount = message.RetryCount,
                AttemptCount = message.AttemptCount + 1,
                StatusReason = "send interrupted by worker shutdown",
                Attempt = new AttemptRecord(message.CompanyId, message.AttemptCount + 1, now, resolved.Channel, provider.Name, AttemptOutcome.TransientFailure, "interrupted by worker shutdown", latency),
            };
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or System.Net.Sockets.SocketException or TimeoutException)
        {
            result = SendResult.Transient($"{provider.Name}: {ex.Message}");
        }

        var latencyMs = (int)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        metrics.ProviderCall(provider.Name, WireName<SendOutcome>.Of(result.Outcome), latencyMs);
        var at = time.GetUtcNow();
        var attemptNo = message.AttemptCount + 1;
        switch (result.Outcome)
        {
            case SendOutcome.Sent:
                // The provider's price is for the whole send; the rate card's SMS price is per SMS, and a
                // long or non-GSM text (a ₹ sign, Hindi) goes as several.
                var (cost, currency) = result.Cost is not null
                    ? (result.Cost, result.CostCurrency ?? companySettings.CostCurrency)
                    : RateCard(companySettings, resolved.Channel) is { } price
                        ? (resolved.Channel == Channel.Sms ? price * SmsSegments.Count(outbound.Body) : price, companySettings.CostCurrency)
                        : ((decimal?)null, (string?)null);
                return new Completion(message.Id, message.CompanyId, DeliveryStatus.Sent, resolved.Channel)
                {
                    RequestedChannel = resolved.Requested,
                    SplitInto = resolved.Split,
                    NextAttemptAt = at,
                    RetryCount = message.RetryCount,
                    AttemptCount = attemptNo,
                    Subject = rendered.StoreSubject,
                    Content = rendered.StoreContent,
                    TemplateUsed = rendered.TemplateUsed,
                    ProviderName = provider.Name,
                    ProviderMessageId = result.ProviderMessageId,
                    StatusReason = resolved.Reason(result.Note),
                    SentAt = at,
                    Cost = cost,
                    CostCurrency = currency,
                    Attempt = new AttemptRecord(message.CompanyId, attemptNo, at, resolved.Channel, provider.Name, AttemptOutcome.Sent, null, latencyMs)
                    {
                        Cost = cost,
                        CostCurrency = currency,
                    },
                    ReminderSent = message.Type.IsReminder() ? (rendered.CustomerId, message.Type) : null,
                    ReminderCreatedAt = message.Type.IsReminder() ? message.CreatedAt : null,
                    ReminderPairId = message.Type.IsReminder() ? message.ReminderPairId : null,
                };
            case SendOutcome.Permanent:
                return Fail(message, resolved, result.Error ?? "rejected by the provider", result.Bounced ? DeliveryStatus.Bounced : DeliveryStatus.Failed) with
                {
                    AttemptCount = attemptNo,
                    ProviderName = provider.Name,
                    TemplateUsed = rendered.TemplateUsed,
                    Attempt = new AttemptRecord(message.CompanyId, attemptNo, at, resolved.Channel, provider.Name, AttemptOutcome.PermanentFailure, result.Error, latencyMs),
                    RecipientOptedOut = result.RecipientOptedOut,
                    MarketingStopped = result.MarketingStopped,
                };
            default:
                return Retry(message, resolved.Channel, resolved, result.Error ?? "temporary provider failure", result.RetryAfter, provider.Name, latencyMs, result.ProviderUnavailable);
        }
    }

    /// <summary>The company's account for the channel, secrets decrypted; built once per batch (BatchContext caches it).</summary>
    private ProviderAccount AccountFor(CompanySettings companySettings, Channel channel, IMessageProvider provider)
    {
        var account = ProviderAccount.For(companySettings, channel, secrets);
        // Twilio reports statuses only to a URL given with each message, and MessageBird's SMS API
        // to one given with it or set in its dashboard; the other providers' webhooks are set once
        // in their dashboards.
        var route = (provider.Name, channel) switch
        {
            ("TWILIO", _) => "twilio",
            ("MESSAGEBIRD", Channel.Sms) => "messagebird-sms",
            _ => null,
        };
        return route is not null && settings.PublicBaseUrl is { } callbackBase
            ? account with { StatusCallbackUrl = new Uri(callbackBase, $"webhooks/{route}/{companySettings.CompanyId}") }
            : account;
    }

    /// <summary>
    /// The outcome of a message whose processing threw: a retry within its budget. This must not
    /// throw in turn (the batch's other outcomes would go unrecorded, and their sends be repeated
    /// once the lease ran out): if even the retry cannot be worked out, the message fails with both reasons.
    /// </summary>
    private Completion InternalError(ClaimedMessage message, string error)
    {
        // BOTH is always an email and a WhatsApp row, whatever went wrong: the split still happens,
        // so the WhatsApp half goes on its own instead of waiting out (or failing with) the email's retries.
        var resolved = message.Channel == Channel.Both ? new Resolution(Channel.Email, Channel.Both, [Channel.WhatsApp]) : null;
        try
        {
            return Retry(message, resolved?.Channel ?? message.Channel, resolved, error, null, null, 0, providerUnavailable: false);
        }
        catch (Exception ex)
        {
            return Fail(message, resolved ?? new Resolution(message.Channel, null, []), $"{error}; no retry could be scheduled: {ex.GetType().Name}: {ex.Message}");
        }
    }

    /// <summary>A transient failure: retry after a golden-ratio backoff, or give up when the budget is spent.</summary>
    /// <param name="waitingFor">
    /// Set when the wait is not the provider's fault (this worker's configuration is behind): the
    /// outage budget is used the same way, but the reason says what is awaited and no provider
    /// outage is counted in the metrics, and since no provider was called, no attempt is recorded
    /// (the attempt history is of provider calls) nor counted.
    /// </param>
    private Completion Retry(ClaimedMessage message, Channel channel, Resolution? resolved, string error, TimeSpan? retryAfter, string? providerName, int latencyMs, bool providerUnavailable,
        string? waitingFor = null)
    {
        var now = time.GetUtcNow();
        var retry = message.RetryCount + 1;
        var attemptNo = waitingFor is null ? message.AttemptCount + 1 : message.AttemptCount;
        var attempt = waitingFor is null ? new AttemptRecord(message.CompanyId, attemptNo, now, channel, providerName, AttemptOutcome.TransientFailure, error, latencyMs) : null;
        // A provider outage or throttling is not this message's fault: it waits it out without using
        // up its retries, for OutageRetries attempts (about a day by default), counted on the row.
        var outageAttempt = message.OutageAttempts + 1;
        if (providerUnavailable && waitingFor is null)
        {
            metrics.ProviderUnavailable(providerName ?? "unknown");   // every one, within the budget or past it
        }
        if (providerUnavailable && outageAttempt <= settings.OutageRetries)
        {
            var wait = now + RetrySchedule.Delay(outageAttempt, settings.RetryBaseDelay, settings.RetryJitter, settings.OutageMaxDelay, retryAfter);
            return RetryAt(wait, message.RetryCount,
                $"{waitingFor ?? "provider unavailable"} ({outageAttempt} of {settings.OutageRetries} attempts that use up no retries); next attempt at {wait.UtcDateTime:u}")
                with { OutageAttempts = outageAttempt };
        }
        if (retry > message.MaxRetries)
        {
            return Fail(message, resolved ?? new Resolution(channel, null, []),
                waitingFor is null ? $"gave up after {attemptNo} attempts; last error: {error}" : $"gave up {waitingFor} past its outage budget and retries: {error}") with
            {
                RetryCount = retry,
                AttemptCount = attemptNo,
                ProviderName = providerName,
                Attempt = attempt,
            };
        }
        var next = now + RetrySchedule.Delay(retry, settings.RetryBaseDelay, settings.RetryJitter, settings.MaxRetryDelay, retryAfter);
        return RetryAt(next, retry, $"retry {retry} of {message.MaxRetries} at {next.UtcDateTime:u}");

        Completion RetryAt(DateTimeOffset at, int retryCount, string reason) => new(message.Id, message.CompanyId, DeliveryStatus.Pending, resolved?.StoredChannel(DeliveryStatus.Pending) ?? channel)
        {
            RequestedChannel = resolved?.Requested,
            SplitInto = resolved?.Split ?? [],
            NextAttemptAt = at,
            RetryCount = retryCount,
            AttemptCount = attemptNo,
            ErrorMessage = error,
            StatusReason = resolved is null ? reason : resolved.Reason(reason),
            ProviderName = providerName,
            Attempt = attempt,
        };
    }

    private Completion Fail(ClaimedMessage message, Channel channel, string reason) =>
        Fail(message, new Resolution(channel, null, []), reason);

    private Completion Fail(ClaimedMessage message, Resolution resolved, string reason, DeliveryStatus status = DeliveryStatus.Failed)
    {
        var now = time.GetUtcNow();
        return Unsent(message, resolved, status, now, reason) with { ErrorMessage = reason, FailedAt = now };
    }

    private static Completion Suppress(ClaimedMessage message, Resolution resolved, string reason, DateTimeOffset now) =>
        Unsent(message, resolved, DeliveryStatus.Suppressed, now, reason);

    /// <summary>
    /// Not now: stays PENDING until <paramref name="until"/>; not an attempt. A message that would by
    /// then have expired is cancelled now, saying why, rather than showing PENDING until the deferral ends.
    /// </summary>
    private Completion Defer(ClaimedMessage message, Resolution resolved, DateTimeOffset until, string reason) =>
        message.ExpiresAt is { } expiresAt && until >= expiresAt
            ? Unsent(message, resolved, DeliveryStatus.Cancelled, time.GetUtcNow(), $"expires at {expiresAt.UtcDateTime:u}, before it could be sent: {reason}")
            : Unsent(message, resolved, DeliveryStatus.Pending, until, reason);

    /// <summary>
    /// Waits until <paramref name="until"/> by our own choice (an open circuit's backoff, a recheck
    /// behind another reminder), not because sending is impossible before then: a message that
    /// would expire first tries once more shortly before it does, rather than being cancelled.
    /// </summary>
    private Completion DeferAtMost(ClaimedMessage message, Resolution resolved, DateTimeOffset until, string reason)
    {
        if (message.ExpiresAt is { } expiresAt && until >= expiresAt)
        {
            var lastTry = expiresAt - LastTryBeforeExpiry;
            until = lastTry > time.GetUtcNow() ? lastTry : expiresAt;
        }
        return Unsent(message, resolved, DeliveryStatus.Pending, until, reason);
    }

    private static readonly TimeSpan LastTryBeforeExpiry = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The message's template_data as a document. PostgreSQL's jsonb nests deeper than .NET's
    /// reader goes by default (64): such data is a fault of the row, failed with the reason, not
    /// an internal error retried until the budget runs out.
    /// </summary>
    private static JsonDocument TemplateData(string json)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = TemplateDataMaxDepth });
        }
        catch (JsonException ex)
        {
            throw new TemplateException($"template_data cannot be read: {ex.Message}", ex);
        }
    }

    private const int TemplateDataMaxDepth = 256;

    /// <summary>An outcome reached without calling a provider: the retry budget and attempt count are untouched.</summary>
    private static Completion Unsent(ClaimedMessage message, Resolution resolved, DeliveryStatus status, DateTimeOffset nextAttemptAt, string reason) =>
        new(message.Id, message.CompanyId, status, resolved.StoredChannel(status))
        {
            RequestedChannel = resolved.Requested,
            SplitInto = resolved.Split,
            NextAttemptAt = nextAttemptAt,
            RetryCount = message.RetryCount,
            AttemptCount = message.AttemptCount,
            StatusReason = resolved.Reason(reason),
        };

    private static readonly Channel[] FallbackOrder = [Channel.Email, Channel.WhatsApp, Channel.Sms];

    /// <summary>
    /// Why the message cannot go to the customer on <paramref name="channel"/> (consent, the
    /// company's provider, the customer's address, its files, a template for the channel), or null.
    /// </summary>
    private string? Unreachable(ClaimedMessage message, BatchContext context, Company company, Customer customer, CommunicationPreference preference, Channel channel)
    {
        if (!OptedIn(preference, channel))
        {
            return $"customer has not opted in to {WireName<Channel>.Of(channel)}";
        }
        if (providers.Resolve(company.Settings, channel, out var noProvider) is null)
        {
            return noProvider;
        }
        if (!TryAddress(customer, channel, out _, out var addressProblem))
        {
            return addressProblem;
        }
        if (AttachmentRules.Problem(context.Attachments(message.Id), channel) is { } fileProblem)
        {
            return fileProblem;
        }
        MessageTemplate? template = null;
        if (message.TemplateKey is { } key)
        {
            template = context.Template(message.CompanyId, key, channel, MessageTemplate.LanguagesToTry(customer.PreferredLanguage, company.DefaultLanguage));
            if (template is null)
            {
                return $"no template '{key}' for {WireName<Channel>.Of(channel)}";
            }
        }
        if (channel == Channel.Email && template?.Subject is null && string.IsNullOrEmpty(OneLineText.Of(message.Subject)))
        {
            return "the message has no subject for an email";
        }
        return null;
    }

    private static bool OptedIn(CommunicationPreference preference, Channel channel) => channel switch
    {
        Channel.Email => preference.EmailOptIn,
        Channel.WhatsApp => preference.WhatsAppOptIn,
        Channel.Sms => preference.SmsOptIn,
        _ => false,
    };

    private static bool TryAddress(Customer customer, Channel channel, out string address, out string problem)
    {
        problem = "";
        var (raw, what) = channel switch
        {
            Channel.Email => (customer.Email, "email address"),
            Channel.WhatsApp => (customer.WhatsAppNumber ?? customer.Phone, "WhatsApp number"),
            _ => (customer.Phone, "phone number"),
        };
        string? notMobile = null;
        var valid = channel switch
        {
            Channel.Email => ContactAddresses.TryNormaliseEmail(raw, out address),
            Channel.Sms => ContactAddresses.TryNormaliseSmsNumber(raw, out address, out notMobile),
            _ => ContactAddresses.TryNormalisePhone(raw, out address),
        };
        if (valid && channel == Channel.Email)
        {
            address = ContactAddresses.ForSending(address);
        }
        if (!valid)
        {
            problem = string.IsNullOrWhiteSpace(raw) ? $"customer has no {what}"
                : notMobile is not null ? $"customer's {what} '{raw}' is {notMobile}, which cannot receive SMS"
                : $"customer's {what} '{raw}' is not valid";
        }
        return valid;
    }

    private static decimal? RateCard(CompanySettings settings, Channel channel) => channel switch
    {
        Channel.Email => settings.EmailCost,
        Channel.WhatsApp => settings.WhatsAppCost,
        Channel.Sms => settings.SmsCost,
        _ => null,
    };

    private Rendered Render(ClaimedMessage message, BatchContext context, Company company, Customer customer, Channel channel, TimeZoneInfo zone)
    {
        if (message.TemplateKey is null)
        {
            var plainSubject = OneLineText.Of(message.Subject);
            if (channel == Channel.Email && string.IsNullOrEmpty(plainSubject))
            {
                throw new TemplateException("the email has no subject (the row's subject is empty)");
            }
            // The schema takes '' (its CHECK is only that content or a template is given); the API refuses it.
            if (string.IsNullOrWhiteSpace(message.Content))
            {
                throw new TemplateException("the message has no text (the row's content is blank and it names no template)");
            }
            return new Rendered(customer.Id, plainSubject, message.Content, null, null, null, null, null);
        }

        var languages = MessageTemplate.LanguagesToTry(customer.PreferredLanguage, company.DefaultLanguage).ToArray();
        var template = context.Template(message.CompanyId, message.TemplateKey, channel, languages);
        if (template is null)
        {
            throw new TemplateException(
                $"no template '{message.TemplateKey}' for {WireName<Channel>.Of(channel)} in {string.Join(", ", languages)}");
        }

        using var data = TemplateData(message.TemplateData);
        if (data.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new TemplateException("template_data must be a JSON object");
        }
        var model = TemplateRenderer.Model(
            data.RootElement, TemplateRenderer.CustomerFields(customer), TemplateRenderer.MessageFields(message.Id, message.Type, channel, message.CreatedAt, zone));
        var used = template.Reference();
        try
        {
            using var session = renderer.Session(model, TemplateRenderer.LocalTime(time.GetUtcNow(), zone));
            var subject = OneLineText.Of(template.Subject is null ? message.Subject : session.Render(template.Subject, "subject"));
            if (channel == Channel.Email && string.IsNullOrEmpty(subject))
            {
                throw new TemplateException("the email's subject is empty (the template's rendered empty, or it has none and the message gave none)");
            }
            var body = session.Render(template.Body, "body");
            var html = template.HtmlBody is null ? null : session.RenderHtml(template.HtmlBody, "htmlBody");
            ProviderTemplate? providerTemplate = null;
            if (template.ProviderTemplateName is not null)
            {
                var mapping = template.ParameterMapping.RootElement;
                var parameters = new List<string>(mapping.ValueKind == JsonValueKind.Array ? mapping.GetArrayLength() : 0);
                if (mapping.ValueKind == JsonValueKind.Array)
                {
                    foreach (var parameter in mapping.EnumerateArray())
                    {
                        if (parameter.ValueKind != JsonValueKind.String)
                        {
                            throw new TemplateException($"parameter {parameters.Count + 1} of the provider template is not a text (parameter_mapping holds {parameter.ValueKind})");
                        }
                        // WhatsApp refuses a parameter with a line break, a tab or more than four spaces in a
                        // row (a multi-line address), and an empty one: after the paid-for call, as a failure.
                        var value = OneLineText.Of(session.Render(parameter.GetString()!, $"parameter {parameters.Count + 1}"));
                        if (string.IsNullOrEmpty(value))
                        {
                            throw new TemplateException($"parameter {parameters.Count + 1} of the provider template rendered empty");
                        }
                        parameters.Add(value);
                    }
                }
                providerTemplate = new ProviderTemplate(template.ProviderTemplateName, template.ProviderLanguage(), parameters);
            }
            return new Rendered(customer.Id, subject, body, html, providerTemplate, used, subject, body);
        }
        catch (TemplateException ex)
        {
            throw new TemplateException($"template {used}: {ex.Message}", ex) { TimedOut = ex.TimedOut };
        }
    }


    /// <summary>The concrete channel this row goes out on, what was asked for, and the extra channels of a BOTH.</summary>
    private sealed record Resolution(Channel Channel, Channel? Requested, Channel[] Split)
    {
        /// <summary>Why a PREFERRED message is on another channel than the customer's preferred one; kept in every outcome's reason.</summary>
        public string? Note { get; init; }

        public string? Reason(string? reason) => Note is null ? reason : reason is null ? Note : $"{reason} ({Note})";

        /// <summary>
        /// The channel the row keeps: a PREFERRED message that is still PENDING (deferred, retried)
        /// and was not split stays PREFERRED, so the next attempt resolves the customer's channel
        /// (and any fallback) as it is then, not as it was at this attempt.
        /// </summary>
        public Channel StoredChannel(DeliveryStatus status) =>
            status == DeliveryStatus.Pending && Requested == Channel.Preferred && Split.Length == 0 ? Channel.Preferred : Channel;
    }

    /// <summary>What the customer will receive; StoreSubject/StoreContent are written back when a template produced them.</summary>
    private sealed record Rendered(
        Guid CustomerId, string? Subject, string Body, string? HtmlBody, ProviderTemplate? ProviderTemplate, string? TemplateUsed, string? StoreSubject, string? StoreContent);
}
