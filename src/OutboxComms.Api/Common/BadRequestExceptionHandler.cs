using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;

namespace OutboxComms.Api.Common;

/// <summary>
/// A body or query value of the wrong shape (e.g. <c>"emailOptIn": "yes"</c>, <c>?after=zzz</c>) is
/// the client's mistake: answer 400 as a validation problem naming the field, never 500.
/// </summary>
internal sealed class BadRequestExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (exception is not BadHttpRequestException bad)
        {
            return false;
        }
        if (bad.Message.Contains("\"Tenant tenant\"", StringComparison.Ordinal))
        {
            // The admin key acting on a company-scoped endpoint without naming the company.
            await Problems.CompanyRequired().ExecuteAsync(httpContext);
            return true;
        }
        var json = exception.InnerException as JsonException;
        var field = json is not null ? JsonBody.FieldOf(json.Path) : "body";
        var message = json is not null ? JsonBody.Describe(json, field) : bad.Message;
        if (json is null && bad.Message.Contains("no body was provided", StringComparison.OrdinalIgnoreCase))
        {
            message = "A JSON object is required.";
        }
        else if (json is null && bad.Message.Contains("parameter \"", StringComparison.Ordinal))
        {
            // e.g. Failed to bind parameter "Guid after" from "zzz".
            var start = bad.Message.IndexOf("parameter \"", StringComparison.Ordinal) + "parameter \"".Length;
            var end = bad.Message.IndexOf('"', start);
            field = end > start ? bad.Message[start..end].Split(' ')[^1] : field;
        }
        httpContext.Response.StatusCode = bad.StatusCode;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            Exception = exception,
            ProblemDetails = new HttpValidationProblemDetails(new Dictionary<string, string[]> { [field] = [message] })
            {
                Status = bad.StatusCode,
                Title = "The request could not be read.",
            },
        });
    }
}
