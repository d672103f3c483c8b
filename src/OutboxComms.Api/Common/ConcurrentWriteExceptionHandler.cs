using Microsoft.AspNetCore.Diagnostics;
using Npgsql;

namespace OutboxComms.Api.Common;

/// <summary>
/// Two requests that create the same thing at the same moment (the first PUT of a schedule key
/// or a calendar correction, sent twice by a retrying client) both find it missing and both
/// insert; PostgreSQL refuses the second by its unique key (23505), or a lock wait ends in a
/// deadlock (40P01). That is the client's race, not a fault: a 409 problem asking it to retry, which
/// then reads what the first request stored, instead of a 500.
/// </summary>
internal sealed class ConcurrentWriteExceptionHandler(IProblemDetailsService problems) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (!IsConcurrentWrite(exception))
        {
            return false;
        }
        httpContext.Response.StatusCode = StatusCodes.Status409Conflict;
        return await problems.TryWriteAsync(new ProblemDetailsContext
        {
            HttpContext = httpContext,
            ProblemDetails = new()
            {
                Status = StatusCodes.Status409Conflict,
                Title = "Changed by another request at the same moment",
                Detail = "Another request wrote the same record while this one was being saved; nothing of this one was stored. Retry it.",
            },
        });
    }

    private static bool IsConcurrentWrite(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is PostgresException postgres)
            {
                return postgres.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure;
            }
        }
        return false;
    }
}
