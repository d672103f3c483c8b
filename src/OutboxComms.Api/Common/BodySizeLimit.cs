using System.Globalization;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Metadata;

namespace OutboxComms.Api.Common;

/// <summary>
/// The endpoint's MaxRequestBodySize, which Kestrel applies while reading (413 past it). Without one
/// Kestrel's 30 MB default held: room for a preferences list of millions of entries, each answered
/// with its own error.
/// </summary>
public sealed record BodySizeLimit(long? MaxRequestBodySize) : IRequestSizeLimitMetadata
{
    /// <summary>Customers, preferences, settings, companies and keys: a few fields each.</summary>
    public static BodySizeLimit Small { get; } = new(64 * 1024);

    /// <summary>Reminders, schedules and the compliance calendar: steps and template data.</summary>
    public static BodySizeLimit Plan { get; } = new(256 * 1024);

    /// <summary>A template version: an HTML email body with inline styles.</summary>
    public static BodySizeLimit Template { get; } = new(1024 * 1024);

    /// <summary>
    /// Middleware: applies the endpoint's limit to the server's body-size feature (Kestrel then
    /// stops reading past it), and answers 413 at once to a request that declares a longer body
    /// (which also covers hosts without the feature, such as the test server).
    /// </summary>
    public static async Task EnforceAsync(HttpContext context, RequestDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        if (context.GetEndpoint()?.Metadata.GetMetadata<IRequestSizeLimitMetadata>()?.MaxRequestBodySize is { } limit)
        {
            if (context.Request.ContentLength > limit)
            {
                await Results.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "Request body too large",
                    detail: string.Create(CultureInfo.InvariantCulture, $"This endpoint accepts at most {limit} bytes.")).ExecuteAsync(context);
                return;
            }
            if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature)
            {
                feature.MaxRequestBodySize = limit;
            }
        }
        await next(context);
    }
}
