using Microsoft.AspNetCore.Diagnostics;
using Npgsql;

namespace OutboxComms.Api.Common;

/// <summary>
/// The last line for values PostgreSQL refuses to store that no endpoint's validation caught: a NUL
/// character in text (22021), a number too large for its column (22003), text the database encoding
/// cannot hold (22P05), a value a CHECK constraint refuses (23514). They are the client's data, so the answer is a 400 problem, not a 500. The
/// endpoints name the field themselves where they check (messages, settings, dates); this answer
/// cannot, since PostgreSQL does not say which value it refused.
/// </summary>
internal sealed class StorageRefusedExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        var refused = Refusal(exception);
        if (refused is null)
        {
            return false;
        }
        httpContext.Response.StatusCode = StatusCodes.Status400BadRequest;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            ProblemDetails = new HttpValidationProblemDetails(new Dictionary<string, string[]> { ["body"] = [refused] })
            {
                Status = StatusCodes.Status400BadRequest,
                Title = "A value in the request cannot be stored.",
            },
        });
    }

    private static string? Refusal(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is PostgresException postgres)
            {
                return postgres.SqlState switch
                {
                    PostgresErrorCodes.CharacterNotInRepertoire => "A text value contains the NUL character (\\u0000) or another character that cannot be stored.",
                    PostgresErrorCodes.UntranslatableCharacter => "A text value contains a character the database cannot store.",
                    PostgresErrorCodes.NumericValueOutOfRange => "A number is too large for its field.",
                    PostgresErrorCodes.CheckViolation => $"A value is outside what its field allows (constraint {postgres.ConstraintName}).",
                    _ => null,
                };
            }
        }
        return null;
    }
}
