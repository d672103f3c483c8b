using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OutboxComms.Core.Observability;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// What is kept of a provider's report in <c>webhook_events</c>: its statuses, codes, ids and times,
/// for the practice's and the operator's audit — not the people in it. Providers put the
/// recipient's address or number, the sender's, the subject, the mail headers and sometimes the
/// text into their reports (Twilio's form, SES's notification, Mailgun's envelope); none of it is
/// needed once the report is parsed (the event's own columns hold what is applied later), and all
/// of it would outlive the message content that retention and erasure clear.
/// </summary>
public static class WebhookPayloads
{
    /// <summary>Fields that name or quote a person, dropped wherever they appear (any case, any depth).</summary>
    private static readonly HashSet<string> Personal = new(StringComparer.OrdinalIgnoreCase)
    {
        "to", "from", "cc", "bcc", "reply-to", "replyTo", "sender", "source", "originator", "recipient", "recipients", "recipient_id",
        "destination", "targets", "email", "emailAddress", "phone", "msisdn", "wa_id", "profile", "contacts",
        "subject", "body", "text", "html", "headers", "commonHeaders", "ChannelToAddress", "ChannelFromAddress",
    };

    /// <summary>
    /// The report without its personal fields, and with any address or phone number left in other
    /// text masked (a bounce's diagnostic code quotes the address). JSON stays JSON (a JSON document
    /// inside a string, as SNS wraps SES's, is minimised too); a form or query string stays one.
    /// </summary>
    public static string Minimise(string payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        var trimmed = payload.AsSpan().TrimStart();
        if (trimmed.Length > 0 && trimmed[0] is '{' or '[')
        {
            try
            {
                return JsonNode.Parse(payload) is { } node ? Json(node, null).ToJsonString() : payload;
            }
            catch (JsonException)
            {
                return LogRedaction.Contacts(payload) ?? "";
            }
        }
        return payload.Contains('=', StringComparison.Ordinal) ? Form(payload) : LogRedaction.Contacts(payload) ?? "";
    }

    /// <summary>A person's address or number as it may appear in an event's key (to tell redeliveries apart): a short hash.</summary>
    public static string KeyPart(string personal) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(personal ?? "")))[..16];

    // A time written as digits (WhatsApp's "1700000000") is not a phone number: fields named for a time or date keep their digits.
    private static JsonNode Json(JsonNode node, string? name)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var property in obj.Select(p => p.Key).ToList())
                {
                    if (Personal.Contains(property))
                    {
                        obj.Remove(property);
                    }
                    else if (obj[property] is { } child)
                    {
                        obj[property] = Json(child.DeepClone(), property);
                    }
                }
                return obj;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is { } item)
                    {
                        array[i] = Json(item.DeepClone(), name);
                    }
                }
                return array;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                var text = value.GetValue<string>();
                return JsonValue.Create(text.TrimStart().StartsWith('{') ? Minimise(text) : IsTime(name) ? text : LogRedaction.Contacts(text))!;
            default:
                return node;
        }
    }

    private static bool IsTime(string? name) =>
        name is not null && (name.Contains("time", StringComparison.OrdinalIgnoreCase) || name.Contains("date", StringComparison.OrdinalIgnoreCase));

    private static string Form(string form)
    {
        var query = form.StartsWith('?') ? form[1..] : form;
        var kept = new List<string>();
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var at = pair.IndexOf('=', StringComparison.Ordinal);
            var name = Uri.UnescapeDataString((at < 0 ? pair : pair[..at]).Replace('+', ' '));
            if (Personal.Contains(name))
            {
                continue;
            }
            var value = at < 0 ? "" : Uri.UnescapeDataString(pair[(at + 1)..].Replace('+', ' '));
            kept.Add(at < 0 ? pair : $"{Uri.EscapeDataString(name)}={Uri.EscapeDataString((IsTime(name) ? value : LogRedaction.Contacts(value)) ?? "")}");
        }
        return (form.StartsWith('?') ? "?" : "") + string.Join('&', kept);
    }
}
