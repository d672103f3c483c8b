using System.Collections.Frozen;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace OutboxComms.Core.Data;

/// <summary>
/// The one mapping between our enums and their upper-case names in the database, in JSON and in
/// plain SQL written by producers (e.g. <c>WHATSAPP</c>, <c>AWS_SES</c>). A member's
/// <see cref="JsonStringEnumMemberNameAttribute"/> wins; otherwise its name in SNAKE_CASE.
/// </summary>
public static class WireName<T> where T : struct, Enum
{
    private static readonly FrozenDictionary<T, string> ToWire = Enum.GetValues<T>().ToFrozenDictionary(v => v, NameOf);
    private static readonly FrozenDictionary<string, T> FromWire =
        ToWire.ToFrozenDictionary(kv => kv.Value, kv => kv.Key, StringComparer.OrdinalIgnoreCase);

    public static IReadOnlyCollection<string> All => ToWire.Values;

    public static string Of(T value) => ToWire[value];

    public static T Parse(string wire) =>
        FromWire.TryGetValue(wire, out var value)
            ? value
            : throw new FormatException($"'{wire}' is not a valid {typeof(T).Name}; expected one of {string.Join(", ", All)}.");

    public static bool TryParse(string? wire, out T value)
    {
        value = default;
        return wire is not null && FromWire.TryGetValue(wire, out value);
    }

    private static string NameOf(T value)
    {
        var name = value.ToString();
        var attribute = typeof(T).GetField(name)?.GetCustomAttribute<JsonStringEnumMemberNameAttribute>();
        return attribute?.Name ?? JsonNamingPolicy.SnakeCaseUpper.ConvertName(name);
    }
}
