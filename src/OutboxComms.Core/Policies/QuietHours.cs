namespace OutboxComms.Core.Policies;

/// <summary>
/// A customer's daily window, in their own time zone, when nothing may be sent. The window may
/// cross midnight (22:00–09:00). Start equal to end means no window.
/// </summary>
public readonly record struct QuietHours(TimeOnly Start, TimeOnly End)
{
    /// <summary>
    /// The last instant PostgreSQL's <c>time</c> holds: migration 0026 stores an end of 24:00 as this,
    /// so 00:00–24:00 stays a whole day.
    /// </summary>
    public static readonly TimeOnly EndOfDay = new(23, 59, 59, 999, 999);

    /// <summary>
    /// 00:00–24:00: the customer may never be contacted. No deferral ever ends (each would end one
    /// microsecond before midnight, inside the next day's window), so such a message is not sent
    /// at all rather than deferred from day to day.
    /// </summary>
    public bool CoversWholeDay => Start == TimeOnly.MinValue && End >= EndOfDay;

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

        var endLocal = endDate.ToDateTime(End);
        var end = LocalTimes.ToInstant(endLocal, zone);
        if (end <= now && zone.IsAmbiguousTime(endLocal))
        {
            // The clock fell back and is in its repeated hour, inside the window once more: it shows
            // the end a second time, an hour later (the first showing is already past).
            end = new DateTimeOffset(endLocal, zone.GetAmbiguousTimeOffsets(endLocal).Min()).ToUniversalTime();
        }
        return end > now ? end : null;
    }

    public override string ToString() => CoversWholeDay ? "00:00–24:00" : $"{Start:HH\\:mm}–{End:HH\\:mm}";
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
        // The Try form also answers false where the lookup would throw something other than "not
        // found": on Linux an id naming a zoneinfo directory ("Asia") is a SecurityException.
        if (!TimeZoneInfo.TryFindSystemTimeZoneById(id, out var found))
        {
            return false;
        }
        zone = found;
        return true;
    }
}
