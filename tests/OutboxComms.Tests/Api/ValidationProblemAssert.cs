using System.Net;
using System.Text.Json.Nodes;

namespace OutboxComms.Tests.Api;

public static class ValidationProblemAssert
{
    /// <summary>Asserts a 400 RFC 7807 validation problem naming exactly these fields; returns its messages by field.</summary>
    public static Dictionary<string, string> NamesFields(HttpResponseMessage response, JsonNode? body, params string[] fields)
    {
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        var errors = body!["errors"]!.AsObject();
        Assert.Equal(fields.Order(StringComparer.Ordinal), errors.Select(e => e.Key).Order(StringComparer.Ordinal));
        return errors.ToDictionary(e => e.Key, e => string.Join(" ", e.Value!.AsArray().Select(m => m!.GetValue<string>())));
    }
}
