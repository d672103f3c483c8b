using System.Buffers;
using System.Text;
using System.Text.Json;
using OutboxComms.Core.Observability;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// What is kept of a provider's report in <c>webhook_events</c>: its statuses, codes, ids and times,
/// for the practice's and the operator's audit — not the people in it. Providers put the
/// recipient's address or number, the sender's, the subject, the mail headers, the text or a
/// file's caption, and the opener's IP address and browser into their reports; none of it is
/// needed once the report is parsed (the event's own columns hold what is applied later), and all
/// of it would outlive the message content that retention and erasure clear.
/// </summary>
public static class WebhookPayloads
{
    /// <summary>
    /// Fields that name, quote or track a person, dropped wherever they appear (any case, any
    /// depth): addresses and numbers, subjects and bodies, a MessageBird message's <c>content</c>
    /// (text, a file's caption and link, a template's values), attachments' names, and an opened
    /// email's IP address, browser and place.
    /// </summary>
    private static readonly HashSet<string> Personal = new(StringComparer.OrdinalIgnoreCase)
    {
        "to", "from", "cc", "bcc", "reply-to", "replyTo", "sender", "source", "originator", "recipient", "recipients", "recipient_id",
        "recipient_user_id", "recipient_parent_user_id", "recipient_participant_id", "destination", "targets", "email", "emailAddress",
        "phone", "msisdn", "wa_id", "profile", "contacts", "subject", "body", "text", "html", "headers", "commonHeaders", "content",
        "caption", "attachments", "filename", "url", "ChannelToAddress", "ChannelFromAddress",
        "ip", "ipAddress", "useragent", "userAgent", "user-agent", "geolocation", "client-info",
    };

    /// <summary>Kept as stored when the payload cannot be minimised: JSON, so readers of the stored payload (WhatsApp's pricing) parse it.</summary>
    public const string NotKept = """{"payload":"not kept: it could not be read to remove the personal data in it"}""";

    /// <summary>
    /// The report without its personal fields, and with any address or phone number left in other
    /// text masked (a bounce's diagnostic code quotes the address) — ids, codes and times excepted.
    /// JSON stays JSON (a JSON document inside a string, as SNS wraps SES's, is minimised too); a
    /// form or query string stays one. Never throws: a report that cannot be read that way is kept
    /// as <see cref="NotKept"/>, so the event is still recorded.
    /// </summary>
    public static string Minimise(string payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        try
        {
            var trimmed = payload.AsSpan().TrimStart();
            if (trimmed.Length > 0 && trimmed[0] is '{' or '[')
            {
                using var document = JsonDocument.Parse(payload, new JsonDocumentOptions { MaxDepth = 128 });
                var buffer = new ArrayBufferWriter<byte>(payload.Length);
                using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, MaxDepth = 128 }))
                {
                    Write(writer, document.RootElement, null);
                }
                return Encoding.UTF8.GetString(buffer.WrittenSpan);
            }
            // A form, also one left empty by minimising ("?" of a query whose every field was personal):
            // minimising what this returned changes nothing.
            return payload.Contains('=', StringComparison.Ordinal) || payload is "" or "?" ? Form(payload) : NotKept;
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException or InvalidOperationException or FormatException or UriFormatException)
        {
            return NotKept;
        }
    }

    // Duplicate names are written as they come (JsonDocument keeps them; JsonNode would throw).
    private static void Write(Utf8JsonWriter writer, JsonElement element, string? name)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject())
                {
                    if (Personal.Contains(property.Name))
                    {
                        continue;
                    }
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value, property.Name);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                {
                    Write(writer, item, name);
                }
                writer.WriteEndArray();
                break;
            case JsonValueKind.String:
                // A lone surrogate (which a parser tolerates) is not text to keep.
                var text = Text(element);
                writer.WriteStringValue(text.TrimStart().StartsWith('{') ? Minimise(text) : Verbatim(name) ? text : LogRedaction.Contacts(text));
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }

    private static string Text(JsonElement element)
    {
        try
        {
            return element.GetString() ?? "";
        }
        catch (InvalidOperationException)
        {
            return "";
        }
    }

    /// <summary>
    /// Fields kept as they are: times written as digits (WhatsApp's "1700000000") and ids (our
    /// message id in a callback field, a provider's ids, an ARN), which are no phone numbers.
    /// </summary>
    private static bool Verbatim(string? name) =>
        name is not null && (name.Contains("time", StringComparison.OrdinalIgnoreCase) || name.Contains("date", StringComparison.OrdinalIgnoreCase)
            || name.EndsWith("id", StringComparison.OrdinalIgnoreCase) || name.EndsWith("arn", StringComparison.OrdinalIgnoreCase)
            || name is "reference" or "biz_opaque_callback_data");

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
            // A field without a value is text too (a bare number would be kept whole otherwise).
            kept.Add(at < 0 ? Uri.EscapeDataString(LogRedaction.Contacts(name) ?? "") : $"{Uri.EscapeDataString(name)}={Uri.EscapeDataString((Verbatim(name) ? value : LogRedaction.Contacts(value)) ?? "")}");
        }
        return (form.StartsWith('?') ? "?" : "") + string.Join('&', kept);
    }
}
