using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace OutboxComms.Api.Common;

/// <summary>A request header an endpoint reads, for the OpenAPI document (Idempotency-Key, If-Match).</summary>
public sealed record OpenApiHeader(string Name, string Description);

/// <summary>
/// The values a request's text field takes (an enum the endpoint parses itself, to name the field
/// in its 400), for the OpenAPI document: a generated client gets the enum, not a bare string.
/// </summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class OpenApiValuesAttribute(params string[] values) : Attribute
{
    public IReadOnlyList<string> Values { get; } = values;
}

/// <summary>
/// What the generated OpenAPI document cannot see for itself: how to authenticate (an API key as
/// a bearer token), which operations need it, the headers an operation reads, and that every
/// error is an RFC 7807 problem.
/// </summary>
internal static class OpenApiDocumentation
{
    public const string SecuritySchemeName = "apiKey";

    public static void Configure(OpenApiOptions options)
    {
        // The instant converter hides DateTimeOffset's type from the document's schema generator:
        // every instant would be described as {"format": "date-time"} alone.
        options.AddSchemaTransformer((schema, context, _) =>
        {
            if (context.JsonPropertyInfo?.AttributeProvider?.GetCustomAttributes(typeof(OpenApiValuesAttribute), inherit: false).FirstOrDefault() is OpenApiValuesAttribute values)
            {
                schema.Enum = [.. values.Values.Select(v => (System.Text.Json.Nodes.JsonNode)System.Text.Json.Nodes.JsonValue.Create(v))];
            }
            // A GET's read-only fields a PUT may send back are accepted and ignored, not part of the request.
            if (System.Reflection.CustomAttributeExtensions.GetCustomAttribute<EchoedFieldsAttribute>(context.JsonTypeInfo.Type) is { } echoed && schema.Properties is { } properties)
            {
                foreach (var name in echoed.Names.Where(n => context.JsonTypeInfo.Type.GetProperty(n, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.IgnoreCase) is null))
                {
                    properties.Remove(name);
                }
            }
            var type = context.JsonTypeInfo.Type;
            if (type == typeof(DateTimeOffset) || type == typeof(DateTimeOffset?))
            {
                schema.Type = JsonSchemaType.String | (type == typeof(DateTimeOffset?) ? JsonSchemaType.Null : 0);
                schema.Format = "date-time";
            }
            return Task.CompletedTask;
        });
        options.AddDocumentTransformer((document, _, _) =>
        {
            document.Components ??= new OpenApiComponents();
            document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
            document.Components.SecuritySchemes[SecuritySchemeName] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "An API key: `Authorization: Bearer <key>`. A company key acts for its company; the admin key also needs `X-Company-Id` where an operation is about one company.",
            };
            return Task.CompletedTask;
        });
        options.AddOperationTransformer((operation, context, _) =>
        {
            var metadata = context.Description.ActionDescriptor.EndpointMetadata;
            operation.Responses ??= new OpenApiResponses();
            if (metadata.OfType<IAuthorizeData>().Any() && !metadata.OfType<IAllowAnonymous>().Any())
            {
                operation.Security ??= [];
                operation.Security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(SecuritySchemeName, context.Document)] = [] });
                operation.Responses.TryAdd("401", Problem("No API key, or not a valid one."));
                operation.Responses.TryAdd("403", Problem("The key may not do this (a company key on an admin operation, or another company's data)."));
                operation.Responses.TryAdd("429", Problem("Too many requests for this company: retry after the Retry-After header's seconds."));
            }
            operation.Responses.TryAdd("default", Problem("Any other error, as RFC 7807 problem details; a validation problem names each field under `errors`."));
            foreach (var header in metadata.OfType<OpenApiHeader>())
            {
                operation.Parameters ??= [];
                operation.Parameters.Add(new OpenApiParameter
                {
                    Name = header.Name,
                    In = ParameterLocation.Header,
                    Description = header.Description,
                    Schema = new OpenApiSchema { Type = JsonSchemaType.String },
                });
            }
            return Task.CompletedTask;
        });
    }

    private static OpenApiResponse Problem(string description) => new()
    {
        Description = description,
        Content = new Dictionary<string, OpenApiMediaType>
        {
            ["application/problem+json"] = new()
            {
                Schema = new OpenApiSchema
                {
                    Type = JsonSchemaType.Object,
                    Properties = new Dictionary<string, IOpenApiSchema>
                    {
                        ["type"] = new OpenApiSchema { Type = JsonSchemaType.String },
                        ["title"] = new OpenApiSchema { Type = JsonSchemaType.String },
                        ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer },
                        ["detail"] = new OpenApiSchema { Type = JsonSchemaType.String },
                        ["errors"] = new OpenApiSchema
                        {
                            Type = JsonSchemaType.Object | JsonSchemaType.Null,
                            AdditionalProperties = new OpenApiSchema { Type = JsonSchemaType.Array, Items = new OpenApiSchema { Type = JsonSchemaType.String } },
                        },
                    },
                },
            },
        },
    };
}
