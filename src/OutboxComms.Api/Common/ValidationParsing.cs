using System.Globalization;
using Npgsql;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Api.Common;

/// <summary>
/// Parsing of optional text values (query strings, enum fields) that records a field error instead
/// of failing the request with a bare 400, so every bad value is named at once.
/// </summary>
public static class ValidationParsing
{
    /// <summary>An upper-case wire name (e.g. <c>WHATSAPP</c>); null when absent or invalid.</summary>
    public static T? WireNameOrNull<T>(this Validation validation, string? wire, string field) where T : struct, Enum
    {
        ArgumentNullException.ThrowIfNull(validation);
        if (string.IsNullOrEmpty(wire))
        {
            return null;
        }
        if (WireName<T>.TryParse(wire, out var value))
        {
            return value;
        }
        validation.Add(field, $"{field} must be one of {string.Join(", ", WireName<T>.All)}.");
        return null;
    }

    /// <summary>
    /// The time zone plain dates in <paramref name="texts"/> are read in: the company's (a
    /// practice's "April" is April in India), looked up only when one of them is a plain date.
    /// </summary>
    public static async Task<TimeZoneInfo> DateZoneAsync(NpgsqlDataSource dataSource, Guid companyId, CancellationToken cancellationToken, params string?[] texts)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        if (!texts.Any(t => ReplayFilter.IsPlainDate(t, out _)))
        {
            return TimeZoneInfo.Utc;
        }
        await using var command = dataSource.CreateCommand("SELECT time_zone FROM companies WHERE id = $1");
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
        return await command.ExecuteScalarAsync(cancellationToken) is string id && Core.Policies.LocalTimes.TryFindZone(id, out var zone) ? zone : TimeZoneInfo.Utc;
    }

    /// <summary>
    /// The start of a created-at range: an ISO 8601 instant (UTC without an offset), or a plain date
    /// (2026-11-24), its midnight in <paramref name="zone"/>. Nothing else: 01/04/2026 is a different
    /// day to different readers.
    /// </summary>
    public static DateTimeOffset? RangeStartOrNull(this Validation validation, string? text, string field, TimeZoneInfo zone) =>
        Range(validation, text, field, zone, ReplayFilter.TryParseFrom);

    /// <summary>The exclusive end of a created-at range: as <see cref="RangeStartOrNull"/>, a plain date including that whole day.</summary>
    public static DateTimeOffset? RangeEndOrNull(this Validation validation, string? text, string field, TimeZoneInfo zone) =>
        Range(validation, text, field, zone, ReplayFilter.TryParseTo);

    private delegate bool RangeParser(string? text, TimeZoneInfo zone, out DateTimeOffset value);

    private static DateTimeOffset? Range(Validation validation, string? text, string field, TimeZoneInfo zone, RangeParser parse)
    {
        ArgumentNullException.ThrowIfNull(validation);
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        if (parse(text, zone, out var value))
        {
            return value;
        }
        validation.Add(field, $"{field} {RangeHint(zone)}");
        return null;
    }

    private static string RangeHint(TimeZoneInfo zone) =>
        $"is an ISO 8601 instant (e.g. 2026-04-01T00:00:00+05:30; UTC without an offset) or a date (2026-04-01: the whole day in the company's time zone{(zone == TimeZoneInfo.Utc ? "" : $", {zone.Id}")}).";
}
