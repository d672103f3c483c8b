using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace OutboxComms.Api.Common;

/// <summary>
/// The API refuses a field a request type does not have (a misspelt <c>whatsapp_opt_in</c>,
/// dropped, would record no consent; a misspelt <c>send_at</c> would send at 10:00), except these:
/// the read-only fields of the resource's GET answer, which a client sending back what it read (a
/// PUT of the whole answer) may include, and which are accepted and ignored.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class EchoedFieldsAttribute(params string[] names) : Attribute
{
    public IReadOnlyList<string> Names { get; } = names;

    /// <summary>A <see cref="JsonTypeInfo"/> modifier: each echoed field becomes a property that is read and dropped.</summary>
    internal static void Accept(JsonTypeInfo info)
    {
        if (info.Kind != JsonTypeInfoKind.Object || info.Type.GetCustomAttribute<EchoedFieldsAttribute>() is not { } echoed)
        {
            return;
        }
        foreach (var name in echoed.Names.Where(name => !info.Properties.Any(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))))
        {
            var ignored = info.CreateJsonPropertyInfo(typeof(JsonElement), name);
            ignored.Set = static (_, _) => { };
            info.Properties.Add(ignored);
        }
    }
}
