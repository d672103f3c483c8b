using System.Text.Json;

namespace OutboxComms.Api.Common;

/// <summary>
/// Collects field errors and answers them as one RFC 7807 validation problem, each error keyed by
/// the field's JSON name (e.g. <c>quietHours.start</c>), so a client can show it next to the field.
/// </summary>
public sealed partial class Validation
{
    private readonly Dictionary<string, List<string>> errors = new(StringComparer.Ordinal);

    public bool IsValid => errors.Count == 0;

    public Validation Add(string field, string message)
    {
        if (!errors.TryGetValue(field, out var list))
        {
            errors[field] = list = [];
        }
        list.Add(message);
        return this;
    }

    public Validation Require(string field, string? value) =>
        string.IsNullOrWhiteSpace(value) ? Add(field, $"{field} is required.") : this;

    public Validation When(bool invalid, string field, string message) => invalid ? Add(field, message) : this;

    /// <summary>
    /// Refuses template data naming a value <c>customer</c> or <c>message</c>: the template's model
    /// has its own under those names (<see cref="OutboxComms.Core.Templates.TemplateRenderer.ModelNames"/>),
    /// which would hide it, and <c>{{ message }}</c> would print ours instead of the app's text.
    /// </summary>
    public Validation TemplateDataNames(string field, JsonElement? value)
    {
        if (value is { ValueKind: JsonValueKind.Object } data)
        {
            foreach (var property in data.EnumerateObject())
            {
                if (OutboxComms.Core.Templates.TemplateRenderer.ModelNames.Contains(property.Name, StringComparer.Ordinal))
                {
                    Add($"{field}.{property.Name}", $"'{property.Name}' is the template's own ({{{{ {property.Name}.… }}}}), which would hide this value: give it another name.");
                }
            }
        }
        return this;
    }

    /// <summary>
    /// Refuses JSON that PostgreSQL's jsonb cannot store: a NUL character or an unpaired UTF-16
    /// surrogate (<c>"\ud800"</c>) in any string or property name. Both can only arrive as a
    /// <c>\u</c> escape, so JSON without one (<paramref name="raw"/>, its text) is not walked.
    /// </summary>
    public Validation StorableJson(string field, JsonElement value, string raw)
    {
        ArgumentNullException.ThrowIfNull(raw);
        // jsonb keeps a number as numeric: at most 131,072 digits before the point and 16,383
        // after. Only an exponent (or a very long body) can reach that, so others are not walked.
        if ((raw.Length > MaxNumericDigitsAfterPoint || ExponentNumber().IsMatch(raw)) && HasUnstorableNumber(value))
        {
            Add(field, $"{field} holds a number PostgreSQL cannot store (more than {MaxNumericDigitsBeforePoint:N0} digits before the point or {MaxNumericDigitsAfterPoint:N0} after).");
        }
        if (!raw.Contains("\\u", StringComparison.Ordinal))
        {
            return this;
        }
        try
        {
            return When(HasNul(value), field, NulMessage(field));
        }
        catch (InvalidOperationException)
        {
            // GetString and Name refuse to decode a lone surrogate escape.
            return Add(field, $"{field} cannot contain an unpaired UTF-16 surrogate escape (\\ud800-\\udfff): only valid Unicode text can be stored.");
        }
    }

    /// <summary>Refuses text PostgreSQL cannot store (a NUL character) in each of <paramref name="fields"/>, by name.</summary>
    public Validation Storable(params (string Field, string? Value)[] fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        foreach (var (field, value) in fields)
        {
            When(value is not null && value.Contains('\0', StringComparison.Ordinal), field, NulMessage(field));
        }
        return this;
    }

    /// <summary>PostgreSQL stores no NUL character in text or jsonb: refused with the field's name rather than failing the INSERT.</summary>
    public static string NulMessage(string field) => $"{field} cannot contain the NUL character (\\u0000).";

    private static bool HasNul(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString()!.Contains('\0', StringComparison.Ordinal),
        JsonValueKind.Object => element.EnumerateObject().Any(p => p.Name.Contains('\0', StringComparison.Ordinal) || HasNul(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Any(HasNul),
        _ => false,
    };

    private const int MaxNumericDigitsBeforePoint = 131_072;
    private const int MaxNumericDigitsAfterPoint = 16_383;

    [System.Text.RegularExpressions.GeneratedRegex(@"[0-9][eE][+-]?[0-9]", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex ExponentNumber();

    private static bool HasUnstorableNumber(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Number => !StorableNumber(element.GetRawText()),
        JsonValueKind.Object => element.EnumerateObject().Any(p => HasUnstorableNumber(p.Value)),
        JsonValueKind.Array => element.EnumerateArray().Any(HasUnstorableNumber),
        _ => false,
    };

    /// <summary>
    /// Whether PostgreSQL's numeric holds a JSON number written as <paramref name="text"/> (e.g.
    /// 1.5e1000). numeric keeps the scale as written (1.0e-16383 has 16,384 digits after the point,
    /// one too many, zeros included, as does 0e-16384) and counts the digits before the point from
    /// the first that is not zero (0.000005e131075 has 131,070).
    /// </summary>
    internal static bool StorableNumber(string text)
    {
        var e = text.IndexOfAny(['e', 'E']);
        var mantissa = (e < 0 ? text : text[..e]).TrimStart('-');
        long exponent = 0;
        if (e >= 0 && !long.TryParse(text[(e + 1)..], System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out exponent))
        {
            return false;   // an exponent beyond a long: far beyond numeric
        }
        var point = mantissa.IndexOf('.', StringComparison.Ordinal);
        var whole = point < 0 ? mantissa : mantissa[..point];
        var fraction = point < 0 ? "" : mantissa[(point + 1)..];
        if (fraction.Length - exponent > MaxNumericDigitsAfterPoint)
        {
            return false;
        }
        var firstSignificant = (whole + fraction).AsSpan().IndexOfAnyExcept('0');
        return firstSignificant < 0 || whole.Length - firstSignificant + exponent <= MaxNumericDigitsBeforePoint;
    }

    /// <summary>Prefixes every field, for items of a bulk request (<c>messages[3].channel</c>).</summary>
    public Validation Merge(string prefix, Validation other)
    {
        ArgumentNullException.ThrowIfNull(other);
        foreach (var (field, messages) in other.errors)
        {
            foreach (var message in messages)
            {
                Add($"{prefix}.{field}", message);
            }
        }
        return this;
    }

    public Dictionary<string, string[]> Errors => errors.ToDictionary(e => e.Key, e => e.Value.ToArray());

    public Microsoft.AspNetCore.Http.HttpResults.ValidationProblem Problem(string title = "The request is not valid.") =>
        TypedResults.ValidationProblem(Errors, title: title);
}
