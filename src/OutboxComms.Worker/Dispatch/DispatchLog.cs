namespace OutboxComms.Worker.Dispatch;

internal static partial class DispatchLog
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId} dispatching: {Batches} concurrent batches of {BatchSize}, {Concurrency} concurrent sends each, poll {PollInterval}")]
    public static partial void Started(ILogger logger, string workerId, int batches, int batchSize, int concurrency, TimeSpan pollInterval);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Message {MessageId} of company {CompanyId}: {Status} {Reason}")]
    public static partial void Outcome(ILogger logger, long messageId, Guid companyId, string status, string? reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Company {CompanyId}'s {Channel} credentials cannot be read by this worker, so its messages wait: {Reason}. List the key in OUTBOXCOMMS_ENCRYPTION_KEY and restart")]
    public static partial void KeyMissing(ILogger logger, Guid companyId, string channel, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Message {MessageId} of company {CompanyId} failed: {Error}")]
    public static partial void Failed(ILogger logger, long messageId, Guid companyId, string? error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Message {MessageId} of company {CompanyId}: unexpected error while dispatching; will retry")]
    public static partial void Unexpected(ILogger logger, Exception exception, long messageId, Guid companyId);

    [LoggerMessage(Level = LogLevel.Error, Message = "Dispatch iteration failed; retrying in {Delay}")]
    public static partial void IterationFailed(ILogger logger, Exception exception, TimeSpan delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recording the outcome of {Count} messages failed (attempt {Attempt}); retrying")]
    public static partial void CompleteRetry(ILogger logger, Exception exception, int count, int attempt);

    [LoggerMessage(Level = LogLevel.Error, Message = "The database refused the outcomes of a batch of {Count} messages; recording them one at a time")]
    public static partial void CompleteOneByOne(ILogger logger, Exception exception, int count);

    [LoggerMessage(Level = LogLevel.Error, Message = "The database refused the outcome of message {MessageId}; recorded as {Status} without its texts and cost")]
    public static partial void CompleteWithoutText(ILogger logger, Exception exception, long messageId, string status);

    [LoggerMessage(Level = LogLevel.Error, Message = "The database refused even the stripped outcome of message {MessageId}; recording its status alone, without its attempt, other channels' rows or reminder time")]
    public static partial void CompleteStrippedRefused(ILogger logger, Exception exception, long messageId);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The database refused even the bare status of message {MessageId}; it is left to its lease and will be claimed again")]
    public static partial void CompleteRefused(ILogger logger, Exception exception, long messageId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Listening for outbox notifications failed; reconnecting (polling continues meanwhile)")]
    public static partial void ListenFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId} stopping: released {Released} unstarted messages")]
    public static partial void Released(ILogger logger, string workerId, int released);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker {WorkerId} released {Released} of a batch of {BatchSize} unsent: their sends could not have finished within the {Lease} lease (slow provider; lower Dispatch:BatchSize or raise Dispatch:LeaseDuration)")]
    public static partial void ReleasedOutOfLease(ILogger logger, string workerId, int released, int batchSize, TimeSpan lease);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Message {MessageId} of company {CompanyId} given back unsent, due again at once: {Reason}")]
    public static partial void NotStarted(ILogger logger, Exception exception, long messageId, Guid companyId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker {WorkerId} could not prepare a batch of {BatchSize} nor give it back; its rows wait for their lease to end")]
    public static partial void ReleaseFailed(ILogger logger, Exception exception, string workerId, int batchSize);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider {Provider} of company {CompanyId} is unavailable: {Error}. Its messages wait for it without using up their retries")]
    public static partial void ProviderUnavailable(ILogger logger, string provider, Guid companyId, string? error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider {Provider} of company {CompanyId} is still unavailable: since {Since:u}, {Sends} sends found it so; last error: {Error}")]
    public static partial void ProviderStillUnavailable(ILogger logger, string provider, Guid companyId, DateTimeOffset since, long sends, string? error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Provider {Provider} of company {CompanyId} is available again after {Duration}, in which {Sends} sends found it unavailable")]
    public static partial void ProviderAvailableAgain(ILogger logger, string provider, Guid companyId, TimeSpan duration, long sends);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider {Provider} of company {CompanyId} is failing: circuit open for {BreakDuration}, its messages deferred meanwhile; last error: {Error}")]
    public static partial void CircuitOpened(ILogger logger, string provider, Guid companyId, TimeSpan breakDuration, string? error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied {Applied} delivery events that arrived before their messages' provider ids were recorded")]
    public static partial void WaitingEventsApplied(ILogger logger, int applied);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Applying delivery events that arrived before their messages' provider ids were recorded failed; they stay stored as unknown")]
    public static partial void WaitingEventsFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Provider {Provider} of company {CompanyId} is answering again: circuit closed")]
    public static partial void CircuitClosed(ILogger logger, string provider, Guid companyId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId}'s clock is {SkewSeconds:+0.000;-0.000} s from PostgreSQL's, within Dispatch:MaxClockSkew ({MaxClockSkew}): claiming")]
    public static partial void ClockChecked(ILogger logger, string workerId, double skewSeconds, TimeSpan maxClockSkew);

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker {WorkerId}'s clock is {SkewSeconds:+0.000;-0.000} s from PostgreSQL's (its own minus the database's), beyond Dispatch:MaxClockSkew ({MaxClockSkew}), and the clocks of {Agreeing} of the {Live} live hosts (its own included: one vote a host) agree with it, not more than half or only its own: it claims no messages, and its heartbeat stops, until it agrees with PostgreSQL's or most workers' clocks. Its leases would end early or late for the other workers (a message sent twice, or late). Fix the host's time synchronisation (NTP)")]
    public static partial void ClockSkewed(ILogger logger, string workerId, double skewSeconds, TimeSpan maxClockSkew, int agreeing, int live);

    [LoggerMessage(Level = LogLevel.Warning, Message = "PostgreSQL's clock is {DatabaseSeconds:+0.000;-0.000} s from worker {WorkerId}'s (the database's minus the worker's), beyond Dispatch:MaxClockSkew ({MaxClockSkew}), while the clocks of {Agreeing} of the {Live} live hosts (this one's included: one vote a host) agree with this one: the database host's clock is taken to be off, and the worker claims by the workers' clocks. Fix the database host's time synchronisation (NTP); until then producers' due times (written by the database's clock) are off by as much")]
    public static partial void DatabaseClockOff(ILogger logger, double databaseSeconds, string workerId, int agreeing, int live, TimeSpan maxClockSkew);

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker {WorkerId}'s clock is {ApartSeconds:+0.000;-0.000} s from that of {OtherWorker} (this one's minus the other's), more than twice Dispatch:MaxClockSkew ({Apart}), and leases taken on that clock may still be live: it claims no messages, and its heartbeat stops, until they have ended or the clocks agree. Fix the time synchronisation of whichever host is off (NTP)")]
    public static partial void ClockApartFromClaims(ILogger logger, string workerId, double apartSeconds, string otherWorker, TimeSpan apart);

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId}'s clock agrees with PostgreSQL's again ({SkewSeconds:+0.000;-0.000} s, within {MaxClockSkew}): claiming resumes")]
    public static partial void ClockAgreesAgain(ILogger logger, string workerId, double skewSeconds, TimeSpan maxClockSkew);

    [LoggerMessage(Message = "Measuring the clock against PostgreSQL's took a {RoundTrip} round trip, too long to tell (at most {Longest}); the last good measurement, carried forward by this clock's own movement, is judged again (none yet: claims are held)")]
    public static partial void ClockSampleTooSlow(ILogger logger, LogLevel level, TimeSpan roundTrip, TimeSpan longest);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Measuring the clock against PostgreSQL's and the other workers' did not succeed; the last measurement stands for a minute at most (further failures are logged at most once a minute)")]
    public static partial void ClockSampleFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Measuring the clock against PostgreSQL's and the other workers' still does not succeed: {Failures} failures in a row; the last: {Error}")]
    public static partial void ClockSampleStillFailing(ILogger logger, int failures, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Measuring the clock against PostgreSQL's and the other workers' succeeds again, after {Failures} failures in a row")]
    public static partial void ClockSampleSucceedsAgain(ILogger logger, int failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker {WorkerId}'s last clock decision is older than {Lifetime} (no measurement has counted since): it claims no messages until one does")]
    public static partial void ClockDecisionLapsed(ILogger logger, string workerId, TimeSpan lifetime);

    [LoggerMessage(Level = LogLevel.Warning, Message = "PostgreSQL's clock stepped by {StepSeconds:+0.000;-0.000} s between two of worker {WorkerId}'s measurements (the database's moved unlike this worker's clock): its earlier rows in worker_clocks are carried across the step, and until every worker whose leases may be live has measured again, rows not yet carried hold the workers they may be far from. Keep the database host's clock on NTP with slewing, not stepping")]
    public static partial void DatabaseClockStepped(ILogger logger, double stepSeconds, string workerId);

    [LoggerMessage(Level = LogLevel.Error, Message = "PostgreSQL's clock stepped {Count} different times within {Window} ({Steps} s): a worker's rows count only once it has marked every one of those steps, and a worker that has not measured across each of them itself, without a break, holds; worker {WorkerId} {Outcome}. Fix the database host's time sync (two time sources stepping it back and forth stop dispatch)")]
    public static partial void DatabaseClockStepsRepeatedly(ILogger logger, int count, string steps, TimeSpan window, string workerId, string outcome);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker {WorkerId}'s wall clock moved unlike its monotonic clock between two measurements, and its difference from PostgreSQL's clock did not move with it ({StepSeconds:+0.000;-0.000} s unexplained): its host was suspended, or its clock stepped together with the database host's. Not taken for a step of PostgreSQL's clock; the worker holds its claims, recording nothing, until the other workers' measurements tell which (within about a minute; with no worker on another host, while leases taken before may be live on either reading)")]
    public static partial void OwnClockMovedWithDifference(ILogger logger, string workerId, double stepSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker {WorkerId} holds its claims: PostgreSQL's clock stepped lately and its measurement cannot yet be placed on one side of the step (or two steps are recent); it measures again within 5 s")]
    public static partial void DatabaseStepUnsure(ILogger logger, string workerId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatch:MaxClockSkew is 0: worker {WorkerId} does not compare its clock with PostgreSQL's. A worker whose clock is {ShutdownGrace} (ShutdownGrace) or more ahead of another's can send that one's messages a second time")]
    public static partial void ClockCheckOff(ILogger logger, string workerId, TimeSpan shutdownGrace);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dispatch:ShutdownGrace ({ShutdownGrace}) is 3 s or less, too short to leave the clock check room for a measurement's 1 s error (0.5 s read, 0.5 s of unseen step): worker {WorkerId} does not compare its clock with PostgreSQL's or the other workers'. Lengthen ShutdownGrace, or set Dispatch:MaxClockSkew below half of it minus 1 s")]
    public static partial void ClockCheckOffByShortGrace(ILogger logger, string workerId, TimeSpan shutdownGrace);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Message {MessageId} of company {CompanyId}: its customer could not be read again before the send; the batch's reading at its claim decides")]
    public static partial void RecipientNotReread(ILogger logger, Exception exception, long messageId, Guid companyId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker {WorkerId} could not give back its hold on {Count} customers' reminders; another worker may send them once this batch's lease ends")]
    public static partial void RemindersNotFreed(ILogger logger, Exception exception, string workerId, int count);
}
