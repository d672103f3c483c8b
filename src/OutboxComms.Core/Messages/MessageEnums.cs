using System.Text.Json.Serialization;
namespace OutboxComms.Core.Messages;

/// <summary>What a message is about; drives channel preference and reminder frequency.</summary>
public enum MessageType
{
    Invoice,
    ComplianceReminder,
    PaymentReminder,
    GeneralUpdate,
}

/// <summary>
/// The channel a message goes out on. <see cref="Both"/> and <see cref="Preferred"/> are requests
/// that the worker resolves into concrete channels before sending.
/// </summary>
public enum Channel
{
    Email,
    [JsonStringEnumMemberName("WHATSAPP")]
    WhatsApp,
    Sms,
    Voice,
    Both,
    Preferred,
}

public enum DeliveryStatus
{
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
    Bounced,
    /// <summary>Policy said no: not opted in, or no way to reach the customer.</summary>
    Suppressed,
    Cancelled,
}

public enum AttemptOutcome
{
    Sent,
    TransientFailure,
    PermanentFailure,
}

public static class MessageTypeExtensions
{
    public static bool IsReminder(this MessageType type) =>
        type is MessageType.ComplianceReminder or MessageType.PaymentReminder;
}
