namespace OutboxComms.Core.Customers;

/// <summary>A client of the practice: who a message is for and how to reach them.</summary>
public class Customer
{
    public Guid Id { get; set; }
    public Guid CompanyId { get; set; }
    /// <summary>The business application's own id for this client, unique per company.</summary>
    public string? ExternalId { get; set; }
    public required string Name { get; set; }
    public string? Email { get; set; }
    public string? Phone { get; set; }
    public string? WhatsAppNumber { get; set; }
    public string PreferredLanguage { get; set; } = "en";
    /// <summary>IANA time zone; quiet hours and reminder schedules are evaluated in it.</summary>
    public string TimeZone { get; set; } = "Asia/Kolkata";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public DateTimeOffset? DeletedAt { get; set; }
    /// <summary>Erased at the customer's request (migration 0033): contacts and message content removed; never restored.</summary>
    public DateTimeOffset? ErasedAt { get; set; }

    public Preferences.CommunicationPreference? Preference { get; set; }
}
