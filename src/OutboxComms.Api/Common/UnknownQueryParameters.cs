using System.Collections.Concurrent;
using System.Reflection;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing.Patterns;

namespace OutboxComms.Api.Common;

/// <summary>
/// An endpoint takes only the query parameters its handler names: any other is a 400 naming it.
/// Ignored, a misspelt one widens what the request does — <c>DELETE /v1/templates/invoice?chanel=SMS</c>
/// deleted every channel of the key, <c>GET /v1/messages?customer_id=…</c> listed every customer's.
/// The names are read from the handler as minimal APIs bind them (simple types not in the route,
/// <c>[FromQuery]</c>, the members of <c>[AsParameters]</c>), once per endpoint.
/// </summary>
internal static class UnknownQueryParameters
{
    private static readonly ConcurrentDictionary<Endpoint, HashSet<string>> Known = new();

    public static async Task EnforceAsync(HttpContext context, RequestDelegate next)
    {
        if (context.Request.QueryString.HasValue && context.Request.Path.StartsWithSegments("/v1")
            && context.GetEndpoint() is RouteEndpoint endpoint && endpoint.Metadata.GetMetadata<MethodInfo>() is { } handler)
        {
            var known = Known.GetOrAdd(endpoint, _ => NamesOf(handler, endpoint.RoutePattern));
            var unknown = context.Request.Query.Keys.Where(key => !known.Contains(key)).ToList();
            if (unknown.Count > 0)
            {
                var takes = known.Count == 0 ? "it takes none" : $"it takes {string.Join(", ", known.Order(StringComparer.Ordinal))}";
                var validation = new Validation();
                foreach (var key in unknown)
                {
                    validation.Add(key, $"{key} is not a query parameter of this request ({takes}): check its spelling.");
                }
                await validation.Problem().ExecuteAsync(context);
                return;
            }
        }
        await next(context);
    }

    internal static HashSet<string> NamesOf(MethodInfo handler, RoutePattern route)
    {
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var parameter in handler.GetParameters())
        {
            Add(names, parameter.Name!, parameter.ParameterType, parameter, route);
        }
        return names;
    }

    private static void Add(HashSet<string> names, string name, Type type, ICustomAttributeProvider attributes, RoutePattern route)
    {
        if (attributes.GetCustomAttributes(typeof(AsParametersAttribute), inherit: false).Length > 0)
        {
            var constructor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).FirstOrDefault();
            foreach (var member in constructor?.GetParameters() ?? [])
            {
                Add(names, member.Name!, member.ParameterType, member, route);
            }
            // Settable properties are bound too (a class, or a record's init-only extras).
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod is { IsPublic: true }))
            {
                Add(names, property.Name, property.PropertyType, property, route);
            }
            return;
        }
        if (attributes.GetCustomAttributes(typeof(FromQueryAttribute), inherit: false).FirstOrDefault() is FromQueryAttribute query)
        {
            names.Add(query.Name ?? name);
            return;
        }
        var bound = attributes.GetCustomAttributes(inherit: false).Any(a => a is FromRouteAttribute or FromBodyAttribute or FromHeaderAttribute or FromServicesAttribute or FromFormAttribute);
        if (!bound && route.GetParameter(name) is null && IsSimple(type))
        {
            names.Add(name);
        }
    }

    /// <summary>What minimal APIs bind from the route or the query string rather than the body or services.</summary>
    private static bool IsSimple(Type type)
    {
        if (type == typeof(Microsoft.Extensions.Primitives.StringValues))
        {
            return true;
        }
        if (type.IsArray)
        {
            type = type.GetElementType()!;   // ?tag=a&tag=b
        }
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(Guid) || type == typeof(DateTime)
            || type == typeof(DateTimeOffset) || type == typeof(DateOnly) || type == typeof(TimeOnly) || type == typeof(TimeSpan) || type == typeof(Uri)
            || (type.GetMethod("BindAsync", BindingFlags.Public | BindingFlags.Static) is null
                && type.GetMethods(BindingFlags.Public | BindingFlags.Static).Any(m => m.Name == "TryParse" && m.GetParameters() is [{ ParameterType: var s }, ..] && s == typeof(string)));
    }
}
