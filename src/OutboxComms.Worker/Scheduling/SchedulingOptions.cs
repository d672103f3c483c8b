using System.ComponentModel.DataAnnotations;

namespace OutboxComms.Worker.Scheduling;

/// <summary>Scheduler settings, bound from the <c>Scheduling</c> section (e.g. <c>Scheduling__CatchUpWindow=06:00:00</c>).</summary>
public sealed class SchedulingOptions : IValidatableObject
{
    public const string Section = "Scheduling";

    /// <summary>Run the scheduler in this worker. Every worker may run it: occurrences still materialise once.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>How often due steps and schedule occurrences are looked for.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Steps or schedules claimed per transaction.</summary>
    [Range(1, 10_000)]
    public int BatchSize { get; set; } = 500;

    /// <summary>
    /// A step or occurrence found later than this after its time was missed (no scheduler was
    /// running then); only then do the catch-up rules apply. Must exceed <see cref="PollInterval"/>.
    /// </summary>
    public TimeSpan MissedAfter { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>
    /// How far back a missed schedule occurrence is still sent on recovery (only the latest missed
    /// one; the earlier ones are recorded as skipped). Also bounds how far back the scheduler looks.
    /// Reminder steps have their own bound: the reminder's due date + grace days.
    /// </summary>
    public TimeSpan CatchUpWindow { get; set; } = TimeSpan.FromHours(12);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (PollInterval <= TimeSpan.Zero || PollInterval > TimeSpan.FromMinutes(5))
        {
            yield return new ValidationResult("PollInterval must be more than 0 and at most 5 minutes.", [nameof(PollInterval)]);
        }
        if (MissedAfter <= PollInterval)
        {
            yield return new ValidationResult("MissedAfter must exceed PollInterval, or steps found on an ordinary pass would count as missed.", [nameof(MissedAfter)]);
        }
        if (CatchUpWindow < MissedAfter || CatchUpWindow > TimeSpan.FromDays(31))
        {
            yield return new ValidationResult("CatchUpWindow must be at least MissedAfter and at most 31 days.", [nameof(CatchUpWindow)]);
        }
    }
}
