using System.Text.Json;
using System.Text.Json.Serialization;

namespace OutboxComms.Api.Common;

/// <summary>
/// An instant in a request body (notBefore, expiresAt) must say its offset: "2026-11-19T23:59:59"
/// read by System.Text.Json is the API server's local time, 23:59 IST on a host set to Asia/Kolkata
/// but 05:29 IST the next day in the UTC container, so a "due tomorrow" reminder could go out after
/// its deadline. Write "Z" or "+05:30". Answers are written as before (ISO 8601 with the offset).
/// </summary>
internal sealed class InstantJsonConverter : JsonConverter<DateTimeOffset>
{
    public override DateTimeOffset Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String || !reader.TryGetDateTimeOffset(out var value))
        {
            throw new JsonFieldFormatException("must be an ISO 8601 instant with its offset, such as 2026-11-24T10:00:00+05:30 or 2026-11-24T04:30:00Z.");
        }
        // System.Text.Json reads only ISO 8601 with an upper-case T and Z.
        var text = reader.GetString()!;
        var time = text.IndexOf('T', StringComparison.Ordinal);
        if (time < 0)
        {
            throw new JsonFieldFormatException("is a date without a time and offset: write an instant such as 2026-11-24T10:00:00+05:30.");
        }
        return text.EndsWith('Z') || text.AsSpan(time).IndexOfAny('+', '-') > 0
            ? value
            : throw new JsonFieldFormatException("has no offset: write Z for UTC or the customer's offset (+05:30); without one it would be read in the server's time zone.");
    }

    public override void Write(Utf8JsonWriter writer, DateTimeOffset value, JsonSerializerOptions options)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStringValue(value);
    }
}

/// <summary>A value of the right JSON type but the wrong format; <see cref="JsonBody"/> names the field and says what is wrong.</summary>
internal sealed class JsonFieldFormatException(string hint) : JsonException(hint)
{
    public string Hint { get; } = hint;
}
