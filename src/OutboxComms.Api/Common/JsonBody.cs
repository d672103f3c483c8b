using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;

namespace OutboxComms.Api.Common;

/// <summary>
/// Reads a JSON request body by hand instead of through minimal-API binding, so that a value of the
/// wrong type or format is answered as a validation problem naming its field
/// (<c>messages[3].notBefore</c>) rather than a bare 400 the client cannot act on.
/// </summary>
public static class JsonBody
{
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<JsonSerializerOptions, JsonSerializerOptions> StrictOptions = [];

    /// <summary>
    /// As <see cref="ReadAsync{T}"/>, refusing a field <typeparamref name="T"/> does not have, named:
    /// for requests that send something (a misspelt "not_before" dropped would send a reminder at
    /// once). The API's own options refuse them too (ApiExtensions; EchoedFieldsAttribute lets a PUT
    /// send back its GET's read-only fields); this holds for any options given. Free-form objects
    /// (data, metadata) take any keys either way.
    /// </summary>
    public static Task<(T? Value, ProblemHttpResult? Problem)> ReadStrictAsync<T>(HttpRequest request, JsonSerializerOptions options, CancellationToken cancellationToken)
        where T : class =>
        ReadAsync<T>(request, StrictOptions.GetValue(options, lenient => new JsonSerializerOptions(lenient)
        {
            UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
        }), cancellationToken);

    public static async Task<(T? Value, ProblemHttpResult? Problem)> ReadAsync<T>(HttpRequest request, JsonSerializerOptions options, CancellationToken cancellationToken)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!request.HasJsonContentType())
        {
            return (null, TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type",
                detail: "Send the request body as application/json."));
        }
        // The endpoint's body limit is applied before this (BodySizeLimit.EnforceAsync: 413).
        try
        {
            var value = await request.ReadFromJsonAsync<T>(options, cancellationToken);
            return value is null ? (null, Invalid("body", "A JSON object is required.")) : (value, null);
        }
        catch (JsonException ex)
        {
            var field = FieldOf(ex.Path);
            return (null, Invalid(field, Describe(ex, field)));
        }
        catch (BadHttpRequestException ex)
        {
            // Kestrel's body size limit (413) or a client that stopped sending.
            return (null, TypedResults.Problem(statusCode: ex.StatusCode, title: "Bad request body", detail: ex.Message));
        }
    }

    /// <summary>What is wrong with <paramref name="field"/>, as a client can act on it.</summary>
    internal static string Describe(JsonException ex, string field) => ex is JsonFieldFormatException format
        ? $"{field} {format.Hint}"
        : IsUnknownField(ex) ? UnknownField(field)
        : FormattableString.Invariant(
            $"{field} is not valid here (wrong type or format, or malformed JSON at line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1}).");

    /// <summary>A property the request type does not have (<see cref="System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow"/>).</summary>
    private static bool IsUnknownField(JsonException ex) => ex.Message.Contains("could not be mapped to any .NET member", StringComparison.Ordinal);

    private static string UnknownField(string field) => $"{field} is not a field of this request: check its spelling (fields are camelCase, e.g. notBefore).";

    /// <summary><c>$.messages[3].channel</c> → <c>messages[3].channel</c>; the root is "body".</summary>
    internal static string FieldOf(string? path) => path switch
    {
        null or "" or "$" => "body",
        _ when path.StartsWith("$.", StringComparison.Ordinal) => path[2..],
        _ => path.TrimStart('$'),
    };

    private static ProblemHttpResult Invalid(string field, string message) =>
        TypedResults.Problem(new HttpValidationProblemDetails(new Validation().Add(field, message).Errors)
        {
            Status = StatusCodes.Status400BadRequest,
            Title = "The request is not valid.",
        });
}
