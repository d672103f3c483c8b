namespace OutboxComms.Api.Common;

/// <summary>
/// Collects field errors and answers them as one RFC 7807 validation problem, each error keyed by
/// the field's JSON name (e.g. <c>quietHours.start</c>), so a client can show it next to the field.
/// </summary>
public sealed class Validation
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
