using System.Text.Json;
using System.Text.Json.Nodes;

namespace OutboxComms.Core.Workflows;

/// <summary>
/// A schedule's digest lists the customer's reminders due soon in its template data
/// (<c>dueReminders</c>, each with its <c>reminderId</c>), as they were when the occurrence was
/// written. A reminder resolved since (the filing made, the invoice paid) must not be listed when
/// the digest goes: the resolve takes it out of a digest waiting in the outbox, and the worker takes
/// out any still listed when it sends (a digest written while the resolve committed, one being sent
/// at that moment and retried, one replayed, or a reminder resolved by SQL).
/// </summary>
public static class DigestReminders
{
    public const string ListKey = "dueReminders";

    /// <summary>The <c>schedule.audience</c> a digest written for customers with a reminder due carries: with nothing left to list, it is not sent.</summary>
    public const string RemindersDueAudience = "REMINDERS_DUE";

    /// <summary>The reminder ids a message's template data lists in <c>dueReminders</c>; none when it has no such list (quick for every other message).</summary>
    public static IEnumerable<long> Listed(string templateData)
    {
        if (!templateData.Contains("\"" + ListKey + "\"", StringComparison.Ordinal))
        {
            return [];
        }
        try
        {
            using var data = JsonDocument.Parse(templateData);
            if (data.RootElement.ValueKind != JsonValueKind.Object
                || !data.RootElement.TryGetProperty(ListKey, out var list) || list.ValueKind != JsonValueKind.Array)
            {
                return [];
            }
            return [.. list.EnumerateArray()
                .Select(item => item.ValueKind == JsonValueKind.Object && item.TryGetProperty("reminderId", out var id)
                                && id.ValueKind == JsonValueKind.Number && id.TryGetInt64(out var value) ? value : (long?)null)
                .OfType<long>()];
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            return [];   // the renderer reports malformed template data
        }
    }

    /// <summary>
    /// The template data without the listed reminders in <paramref name="resolved"/> (the company's
    /// reminders, by id, that are no longer active), and whether the
    /// digest, written for customers with a reminder due, now lists nothing (it should not go).
    /// Unchanged (the same string) when it lists none of them.
    /// </summary>
    public static (string TemplateData, bool NothingLeftToList) Without(string templateData, IReadOnlySet<long> resolved)
    {
        if (resolved.Count == 0 || !Listed(templateData).Any(resolved.Contains))
        {
            return (templateData, false);
        }
        var data = JsonNode.Parse(templateData)!.AsObject();
        var kept = new JsonArray([.. data[ListKey]!.AsArray().Where(item => !IsResolved(item)).Select(item => item?.DeepClone())]);
        data[ListKey] = kept;
        var remindersDue = data["schedule"] is JsonObject schedule && schedule["audience"] is JsonValue audience
                           && audience.TryGetValue<string>(out var kind) && kind == RemindersDueAudience;
        return (data.ToJsonString(), kept.Count == 0 && remindersDue);

        bool IsResolved(JsonNode? item) =>
            item is JsonObject o && o["reminderId"] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<long>(out var id) && resolved.Contains(id);
    }
}
