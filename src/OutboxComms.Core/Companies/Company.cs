namespace OutboxComms.Core.Companies;

/// <summary>A Company Secretary practice: the tenant. Everything else belongs to one.</summary>
public class Company
{
    public Guid Id { get; set; }
    public required string Name { get; set; }
    public string TimeZone { get; set; } = "Asia/Kolkata";
    public string DefaultLanguage { get; set; } = "en";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    /// <summary>When it was offboarded (migration 0036): its keys revoked, channels and schedules off, pending work cancelled.</summary>
    public DateTimeOffset? DeactivatedAt { get; set; }

    public CompanySettings? Settings { get; set; }
}

/// <summary>An API key of a company. Only its SHA-256 hash is stored.</summary>
public class ApiKey
{
    public Guid Id { get; set; }
    public Guid CompanyId { get; set; }
    public required string Name { get; set; }
    public required string KeyPrefix { get; set; }
    public required byte[] KeyHash { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? LastUsedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
}
