using System.Text.Json;

namespace OutboxComms.Core.Messages;

/// <summary>
/// One outbox row: a message to one customer on one channel, and everything that happened to it.
/// </summary>
public class CommunicationLog
{
    public long Id { get; set; }
    public Guid CompanyId { get; set; }
    public Guid? CustomerId { get; set; }
    public string? CustomerExternalId { get; set; }
    public MessageType Type { get; set; }
    public Channel Channel { get; set; }
    /// <summary>What the producer asked for when it was BOTH or PREFERRED; null when it named the channel.</summary>
    public Channel? RequestedChannel { get; set; }

    /// <summary>On both rows of a BOTH message the worker split (migration 0022): the original row's id.</summary>
    public long? SplitFrom { get; set; }
    public string? Subject { get; set; }
    public string? Content { get; set; }
    public string? TemplateKey { get; set; }
    public JsonDocument TemplateData { get; set; } = JsonDocument.Parse("{}");
    public string? TemplateUsed { get; set; }
    public DeliveryStatus Status { get; set; } = DeliveryStatus.Pending;
    public string? StatusReason { get; set; }
    public string? ErrorMessage { get; set; }
    public int RetryCount { get; set; }
    public int MaxRetries { get; set; } = 3;

    /// <summary>
    /// The most retries a message may have: a timeout may have delivered, so each retry may be a
    /// duplicate. The API refuses more; the worker reads a larger <c>max_retries</c> a SQL producer
    /// wrote as this.
    /// </summary>
    public const int MaxRetriesLimit = 10;
    /// <summary>Provider calls so far; unlike <see cref="RetryCount"/> a replay does not reset it.</summary>
    public int AttemptCount { get; set; }
    /// <summary>Attempts spent on a provider outage, which used up no retry; a replay resets it.</summary>
    public int OutageAttempts { get; set; }
    public JsonDocument Metadata { get; set; } = JsonDocument.Parse("{}");
    public string? IdempotencyKey { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset NextAttemptAt { get; set; }
    public DateTimeOffset? ExpiresAt { get; set; }
    public DateTimeOffset? LockedUntil { get; set; }
    public string? LockedBy { get; set; }
    public DateTimeOffset? SentAt { get; set; }
    public DateTimeOffset? DeliveredAt { get; set; }
    public DateTimeOffset? ReadAt { get; set; }
    public DateTimeOffset? ResponseAt { get; set; }
    public DateTimeOffset? FailedAt { get; set; }
    public string? ProviderName { get; set; }
    public string? ProviderMessageId { get; set; }
    public decimal? Cost { get; set; }
    public string? CostCurrency { get; set; }
    /// <summary>When its personal content was cleared (migration 0035): by the company's content retention, or by the customer's erasure. Such a message is never sent again.</summary>
    public DateTimeOffset? ContentRedactedAt { get; set; }

    public List<CommunicationAttachment> Attachments { get; set; } = [];
}

/// <summary>A file sent with a message (the invoice PDF): inline bytes or a URL the provider fetches.</summary>
public class CommunicationAttachment
{
    public long Id { get; set; }
    public long MessageId { get; set; }
    /// <summary>The message's company (migration 0031); null on rows a producer wrote without it, which match by message id alone.</summary>
    public Guid? CompanyId { get; set; }
    public required string FileName { get; set; }
    public string ContentType { get; set; } = "application/octet-stream";
    public byte[]? Content { get; set; }
    public string? Url { get; set; }
    public long? SizeBytes { get; set; }
    /// <summary>When retention cleared its bytes and link (migration 0034; Attachments:RetentionDays).</summary>
    public DateTimeOffset? PurgedAt { get; set; }
}

/// <summary>One replay of a message (migration 0021): who, when, and the status and error it had; written by <see cref="MessageReplay"/>.</summary>
public class MessageReplayRecord
{
    public long Id { get; set; }
    public Guid CompanyId { get; set; }
    public long MessageId { get; set; }
    public DateTimeOffset ReplayedAt { get; set; }
    public string ReplayedBy { get; set; } = "";
    public string PreviousStatus { get; set; } = "";
    public string? PreviousError { get; set; }
}

/// <summary>One provider attempt, kept for ops.</summary>
public class CommunicationAttempt
{
    public long Id { get; set; }
    public long MessageId { get; set; }
    public Guid CompanyId { get; set; }
    public int AttemptNo { get; set; }
    public DateTimeOffset AttemptedAt { get; set; }
    public Channel Channel { get; set; }
    public string? ProviderName { get; set; }
    public AttemptOutcome Outcome { get; set; }
    public string? ErrorMessage { get; set; }
    public int? ProviderLatencyMs { get; set; }
    /// <summary>What this send cost (migration 0028); null for a failed send, no price, or an attempt recorded before.</summary>
    public decimal? Cost { get; set; }
    public string? CostCurrency { get; set; }
}
