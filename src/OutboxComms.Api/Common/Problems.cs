using Microsoft.AspNetCore.Http.HttpResults;

namespace OutboxComms.Api.Common;

/// <summary>The API's non-validation errors, all RFC 7807.</summary>
public static class Problems
{
    public static ProblemHttpResult NotFound(string what) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Not found", detail: $"{what} was not found.");

    public static ProblemHttpResult Conflict(string detail) =>
        TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Conflict", detail: detail);

    public static ProblemHttpResult CompanyRequired() =>
        TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Company required",
            detail: $"The admin key acts on one company at a time: name it in the {Auth.Tenant.CompanyHeader} header.");

    public static ProblemHttpResult PreconditionFailed(string detail) =>
        TypedResults.Problem(statusCode: StatusCodes.Status412PreconditionFailed, title: "Precondition failed", detail: detail);

    public static ProblemHttpResult Forbidden(string detail) =>
        TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Forbidden", detail: detail);
}
