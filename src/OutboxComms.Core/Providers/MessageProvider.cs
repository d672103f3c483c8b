using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers;

/// <summary>
/// A client of one provider's wire protocol (SMTP, SendGrid, the WhatsApp Cloud API, Twilio, …).
/// It sends one rendered message and classifies what happened; it never retries by itself (the
/// dispatcher owns retries, backoff and circuit breaking).
/// </summary>
public interface IMessageProvider
{
    /// <summary>The provider's name as stored in company settings, e.g. <c>SMTP</c>, <c>TWILIO</c>.</summary>
    string Name { get; }

    /// <summary>The channels this client serves (Twilio serves WhatsApp and SMS).</summary>
    IReadOnlyCollection<Channel> Channels { get; }

    Task<SendResult> SendAsync(OutboundMessage message, ProviderAccount account, CancellationToken cancellationToken);

    /// <summary>
    /// Connects and authenticates without sending anything (SMTP: connect, authenticate, NOOP;
    /// HTTP: an authenticated read-only call) and says what failed in words a practice understands.
    /// </summary>
    Task<ConnectionCheck> TestConnectionAsync(ProviderAccount account, CancellationToken cancellationToken);
}

/// <summary>The answer to "test connection".</summary>
public sealed record ConnectionCheck(bool Ok, string Detail);

/// <summary>A message ready for the wire: rendered, addressed, with its attachments.</summary>
public sealed record OutboundMessage
{
    public required long MessageId { get; init; }
    public required Guid CompanyId { get; init; }
    public required MessageType Type { get; init; }
    public required Channel Channel { get; init; }
    /// <summary>Normalised address: an email address, or an E.164 number.</summary>
    public required string To { get; init; }
    public string? ToName { get; init; }
    public string? Subject { get; init; }
    public required string Body { get; init; }
    public string? HtmlBody { get; init; }
    /// <summary>WhatsApp: the provider-approved template to use instead of free text.</summary>
    public ProviderTemplate? ProviderTemplate { get; init; }
    public IReadOnlyList<CommunicationAttachment> Attachments { get; init; } = [];
    /// <summary>
    /// RFC 8058 one-click unsubscribe target for non-transactional messages (general updates);
    /// null for invoices and reminders, which a client cannot opt out of by email link.
    /// </summary>
    public Uri? UnsubscribeUrl { get; init; }
    /// <summary>How many times an operator replayed the message: a replay is a new send, not a retry.</summary>
    public int ReplayCount { get; init; }
    /// <summary>Provider calls this message had before this one (its attempt history): 0 on its first.</summary>
    public int EarlierAttempts { get; init; }
    /// <summary>
    /// For providers that deduplicate (e.g. Resend's Idempotency-Key, kept 24 hours): the same on
    /// every retry of the message (one that timed out may have been taken), new after each replay
    /// (else the provider answers with the first send's result and sends nothing).
    /// </summary>
    public string IdempotencyKey => ReplayCount == 0 ? $"outboxcomms-{CompanyId:N}-{MessageId}" : $"outboxcomms-{CompanyId:N}-{MessageId}-r{ReplayCount}";
}

public sealed record ProviderTemplate(string Name, string Language, IReadOnlyList<string> Parameters);

public enum SendOutcome
{
    Sent,
    /// <summary>Worth retrying: timeouts, connection failures, HTTP 429/5xx, SMTP 4xx.</summary>
    Transient,
    /// <summary>Retrying cannot help: invalid recipient, authentication failure, rejected template.</summary>
    Permanent,
}

/// <summary>What a provider said. Errors carry the provider's own code, e.g. "Twilio 21211: invalid To".</summary>
public sealed record SendResult
{
    public required SendOutcome Outcome { get; init; }
    public string? ProviderMessageId { get; init; }
    public string? Error { get; init; }
    public decimal? Cost { get; init; }
    public string? CostCurrency { get; init; }
    /// <summary>The provider asked us to wait this long (HTTP Retry-After).</summary>
    public TimeSpan? RetryAfter { get; init; }
    /// <summary>Permanent because the recipient's address bounced.</summary>
    public bool Bounced { get; init; }
    /// <summary>
    /// Permanent because the recipient opted out of the channel at the provider (replied STOP): the
    /// worker withdraws the customer's opt-in (<see cref="Preferences.ProviderOptOuts"/>).
    /// </summary>
    public bool RecipientOptedOut { get; init; }
    /// <summary>
    /// Permanent because the recipient stopped the business's marketing messages on the channel
    /// (WhatsApp 131050): the worker stops general updates to them there.
    /// </summary>
    public bool MarketingStopped { get; init; }
    /// <summary>Transient because the provider is down or throttling the account, not because of this message.</summary>
    public bool ProviderUnavailable { get; init; }
    /// <summary>
    /// Transient because of this message, the provider working fine: its recipient's mailbox
    /// (greylisted, full), a refusal of this message to come back later, its attachment's link, a
    /// limit on messages to this recipient. It says nothing about the provider, so it does not
    /// count toward the company's circuit breaker (a practice's file server being down must not
    /// hold back its emails without attachments).
    /// </summary>
    public bool AboutThisMessage { get; init; }
    /// <summary>What the message's record should say about a send beyond its outcome (kept in <c>status_reason</c>).</summary>
    public string? Note { get; init; }

    public static SendResult Sent(string? providerMessageId, decimal? cost = null, string? costCurrency = null) =>
        new() { Outcome = SendOutcome.Sent, ProviderMessageId = providerMessageId, Cost = cost, CostCurrency = costCurrency };

    /// <summary>
    /// Sent by an earlier attempt whose answer was lost: the provider says this message's
    /// idempotency key was already taken. Its provider id is unknown, so delivery events cannot be
    /// matched to it; <paramref name="note"/> says so in the record.
    /// </summary>
    public static SendResult SentEarlier(string note) => new() { Outcome = SendOutcome.Sent, Note = note };

    public static SendResult Transient(string error, TimeSpan? retryAfter = null) =>
        new() { Outcome = SendOutcome.Transient, Error = error, RetryAfter = retryAfter };

    /// <summary><see cref="Transient"/>, and <see cref="AboutThisMessage"/>.</summary>
    public static SendResult TransientForThisMessage(string error, TimeSpan? retryAfter = null) =>
        Transient(error, retryAfter) with { AboutThisMessage = true };

    /// <summary>
    /// Transient, and not about this message, which the provider certainly did not take: it cannot
    /// take anything from this account now (no connection, HTTP 408/429/503, throttling, an empty
    /// balance). An outage delays messages without using up their retries (see
    /// <c>Dispatch:OutageRetries</c>). A failure after which the message may have gone (a timeout,
    /// another 5xx) is <see cref="Transient"/>: a resend may duplicate it.
    /// </summary>
    public static SendResult Unavailable(string error, TimeSpan? retryAfter = null) =>
        new() { Outcome = SendOutcome.Transient, Error = error, RetryAfter = retryAfter, ProviderUnavailable = true };

    public static SendResult Permanent(string error, bool bounced = false) =>
        new() { Outcome = SendOutcome.Permanent, Error = error, Bounced = bounced };

    public static SendResult OptedOut(string error) =>
        new() { Outcome = SendOutcome.Permanent, Error = error, RecipientOptedOut = true };
}
