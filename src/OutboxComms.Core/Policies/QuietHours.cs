namespace OutboxComms.Core.Policies;

/// <summary>
/// A customer's daily window, in their own time zone, when nothing may be sent. The window may
/// cross midnight (22:00–09:00). Start equal to end means no window.
/// </summary>
public readonly record struct QuietHours(TimeOnly Start, TimeOnly End)
{
    /// <summary>
    /// When <paramref name="now"/> falls inside the window, the instant the window ends (the first
    /// moment the customer's clock shows <see cref="End"/>, so a DST jump can't strand a message);
    /// otherwise null.
    /// </summary>
    public DateTimeOffset? DeferUntil(DateTimeOffset now, TimeZoneInfo zone)
    {
        ArgumentNullException.ThrowIfNull(zone);
        if (Start == End)
        {
            return null;
        }

        var local = TimeZoneInfo.ConvertTime(now, zone);
        var time = TimeOnly.FromTimeSpan(local.TimeOfDay);
        var date = DateOnly.FromDateTime(local.DateTime);
        DateOnly endDate;
        if (Start < End)
        {
            if (time < Start || time >= End)
            {
                return null;
            }
            endDate = date;
        }
        else
        {
            if (time < Start && time >= End)
            {
                return null;
            }
            endDate = time >= Start ? date.AddDays(1) : date;
        }

        return LocalTimes.ToInstant(endDate.ToDateTime(End), zone);
    }

    public override string ToString() => $"{Start:HH\\:mm}–{End:HH\\:mm}";
}

/// <summary>Turning a customer's wall-clock time into an instant, across DST gaps and overlaps.</summary>
public static class LocalTimes
{
    /// <summary>
    /// The instant a clock in <paramref name="zone"/> shows <paramref name="local"/>. A time skipped
    /// by a spring-forward gap maps to the first valid moment after it; a time repeated by a
    /// fall-back overlap maps to its first occurrence.
    /// </summary>
    public static DateTimeOffset ToInstant(DateTime local, TimeZoneInfo zone)
    {
        ArgumentNullException.ThrowIfNull(zone);
        local = DateTime.SpecifyKind(local, DateTimeKind.Unspecified);
        if (zone.IsInvalidTime(local))
        {
            // Walk forward to the end of the gap (gaps are whole minutes in every IANA zone).
            do
            {
                local = local.AddMinutes(1);
            }
            while (zone.IsInvalidTime(local));
            local = new DateTime(local.Year, local.Month, local.Day, local.Hour, local.Minute, 0, DateTimeKind.Unspecified);
        }
        var offset = zone.IsAmbiguousTime(local)
            ? zone.GetAmbiguousTimeOffsets(local).Max()   // the larger offset is the earlier instant
            : zone.GetUtcOffset(local);
        return new DateTimeOffset(local, offset).ToUniversalTime();
    }

    public static bool TryFindZone(string? id, out TimeZoneInfo zone)
    {
        zone = TimeZoneInfo.Utc;
        if (string.IsNullOrWhiteSpace(id))
        {
            return false;
        }
        try
        {
            zone = TimeZoneInfo.FindSystemTimeZoneById(id);
            return true;
        }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            return false;
        }
    }
}
