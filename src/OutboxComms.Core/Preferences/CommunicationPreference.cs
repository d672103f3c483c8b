using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Preferences;

public enum ReminderFrequency
{
    Daily,
    Weekly,
    Monthly,
    Custom,
}

/// <summary>
/// A customer's consent and channel choices. A customer without a row is treated as having the
/// defaults below (email on; WhatsApp and SMS need an explicit opt-in).
/// </summary>
public class CommunicationPreference
{
    public Guid Id { get; set; }
    public Guid CustomerId { get; set; }
    public bool EmailOptIn { get; set; } = true;
    public bool WhatsAppOptIn { get; set; }
    public bool SmsOptIn { get; set; }
    public Channel InvoiceDeliveryChannel { get; set; } = Channel.Email;
    public Channel ComplianceReminderChannel { get; set; } = Channel.Email;
    public Channel PaymentReminderChannel { get; set; } = Channel.Email;
    public Channel GeneralUpdatesChannel { get; set; } = Channel.Email;
    public ReminderFrequency ReminderFrequency { get; set; } = ReminderFrequency.Weekly;
    /// <summary>Cron expression (Cronos) used when <see cref="ReminderFrequency"/> is Custom.</summary>
    public string? ReminderCron { get; set; }
    /// <summary>The client clicked "unsubscribe" on a general update: no more general updates, on any channel.</summary>
    public bool GeneralUpdatesOptOut { get; set; }
    /// <summary>
    /// Channels the client stopped general updates on, and only there (a WhatsApp user who stopped
    /// the business's marketing messages): invoices and reminders on them, and general updates on
    /// the others, keep coming.
    /// </summary>
    public List<Channel> GeneralUpdatesOptOutChannels { get; set; } = [];
    public TimeOnly? QuietHoursStart { get; set; }
    public TimeOnly? QuietHoursEnd { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    public Channel ChannelFor(MessageType type) => type switch
    {
        MessageType.Invoice => InvoiceDeliveryChannel,
        MessageType.ComplianceReminder => ComplianceReminderChannel,
        MessageType.PaymentReminder => PaymentReminderChannel,
        MessageType.GeneralUpdate => GeneralUpdatesChannel,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, null),
    };

    /// <summary>Whether the client stopped general updates on this channel (everywhere, or there).</summary>
    public bool StopsGeneralUpdatesOn(Channel channel) => GeneralUpdatesOptOut || GeneralUpdatesOptOutChannels.Contains(channel);
}

/// <summary>What a consent record is about.</summary>
public enum ConsentScope
{
    /// <summary>The opt-in to a channel: every message on it.</summary>
    Channel,
    /// <summary>General updates only: on every channel when the record names none, else on its channel.</summary>
    GeneralUpdates,
}

/// <summary>One opt-in or opt-out, kept as evidence of consent.</summary>
public class ConsentRecord
{
    public long Id { get; set; }
    public Guid CompanyId { get; set; }
    public Guid CustomerId { get; set; }
    public ConsentScope Scope { get; set; }
    /// <summary>Null only for general updates on every channel.</summary>
    public Channel? Channel { get; set; }
    public bool OptedIn { get; set; }
    public required string Source { get; set; }
    public required string RecordedBy { get; set; }
    public DateTimeOffset RecordedAt { get; set; }
}
