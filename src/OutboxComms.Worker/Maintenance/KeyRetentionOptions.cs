using System.ComponentModel.DataAnnotations;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// <c>Api:IdempotencyKeyRetentionDays</c>, read by the workers, which delete the keys (the API only
/// stores them). 0 or less would delete keys still in use (a client's retry an hour later would
/// send the message again), so it is refused at start.
/// </summary>
public sealed class KeyRetentionOptions
{
    public const string Section = "Api";

    [Range(1, 3650)]
    public int IdempotencyKeyRetentionDays { get; set; } = 30;
}
