using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Metadata;

namespace OutboxComms.Api.Common;

/// <summary>
/// Reads a JSON request body by hand instead of through minimal-API binding, so that a value of the
/// wrong type or format is answered as a validation problem naming its field
/// (<c>messages[3].notBefore</c>) rather than a bare 400 the client cannot act on.
/// </summary>
public static class JsonBody
{
    public static async Task<(T? Value, ProblemHttpResult? Problem)> ReadAsync<T>(HttpRequest request, JsonSerializerOptions options, CancellationToken cancellationToken)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!request.HasJsonContentType())
        {
            return (null, TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type",
                detail: "Send the request body as application/json."));
        }
        // Kestrel enforces the endpoint's limit while reading; a declared length over it is refused
        // before reading at all (and also under hosts without that feature, such as the test server).
        if (request.HttpContext.GetEndpoint()?.Metadata.GetMetadata<IRequestSizeLimitMetadata>()?.MaxRequestBodySize is { } limit && request.ContentLength > limit)
        {
            return (null, TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "Request body too large",
                detail: FormattableString.Invariant($"This endpoint accepts at most {limit} bytes.")));
        }
        try
        {
            var value = await request.ReadFromJsonAsync<T>(options, cancellationToken);
            return value is null ? (null, Invalid("body", "A JSON object is required.")) : (value, null);
        }
        catch (JsonException ex)
        {
            var field = FieldOf(ex.Path);
            return (null, Invalid(field, ex is JsonFieldFormatException format
                ? $"{field} {format.Hint}"
                : FormattableString.Invariant(
                    $"{field} is not valid here (wrong type or format, or malformed JSON at line {ex.LineNumber + 1}, byte {ex.BytePositionInLine + 1}).")));
        }
        catch (BadHttpRequestException ex)
        {
            // Kestrel's body size limit (413) or a client that stopped sending.
            return (null, TypedResults.Problem(statusCode: ex.StatusCode, title: "Bad request body", detail: ex.Message));
        }
    }

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
