using System.Globalization;
using OutboxComms.Core.Data;

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

    /// <summary>An ISO 8601 instant; without an offset it is taken as UTC.</summary>
    public static DateTimeOffset? InstantOrNull(this Validation validation, string? text, string field)
    {
        ArgumentNullException.ThrowIfNull(validation);
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var value))
        {
            return value;
        }
        validation.Add(field, $"{field} is an ISO 8601 instant, e.g. 2025-04-01T00:00:00Z.");
        return null;
    }
}
