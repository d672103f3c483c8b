using System.Globalization;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Api.Common;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Api.Reminders;

/// <summary>
/// Field parsing shared by the reminder, calendar and schedule endpoints. Dates, times and enum
/// names arrive as strings so that a bad value is answered with a problem naming its field
/// (<c>steps[2].sendAt</c>) rather than a generic JSON binding error.
/// </summary>
internal static class WorkflowRequests
{
    private static readonly Channel[] OutboundChannels = [Channel.Email, Channel.WhatsApp, Channel.Sms, Channel.Both, Channel.Preferred];

    /// <summary>EMAIL, WHATSAPP, SMS, BOTH or PREFERRED; absent means <paramref name="fallback"/>.</summary>
    public static Channel ParseChannel(this Validation validation, string field, string? value, Channel fallback)
    {
        if (value is null)
        {
            return fallback;
        }
        if (WireName<Channel>.TryParse(value, out var channel) && OutboundChannels.Contains(channel))
        {
            return channel;
        }
        validation.Add(field, $"{field} is one of {string.Join(", ", OutboundChannels.Select(WireName<Channel>.Of))}.");
        return fallback;
    }

    public static MessageType? ParseMessageType(this Validation validation, string field, string? value, params MessageType[] allowed)
    {
        if (WireName<MessageType>.TryParse(value, out var type) && allowed.Contains(type))
        {
            return type;
        }
        validation.Add(field, $"{field} is required: one of {string.Join(", ", allowed.Select(WireName<MessageType>.Of))}.");
        return null;
    }

    /// <summary>A local wall-clock time, "HH:mm"; absent means <paramref name="fallback"/>.</summary>
    public static TimeOnly ParseLocalTime(this Validation validation, string field, string? value, TimeOnly fallback)
    {
        if (value is null)
        {
            return fallback;
        }
        if (TimeOnly.TryParseExact(value, ["HH:mm", "HH:mm:ss"], CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
        {
            return time;
        }
        validation.Add(field, $"{field} is a local time \"HH:mm\", e.g. \"10:00\".");
        return fallback;
    }

    private const int MinYear = 1900, MaxYear = 2199;

    /// <summary>A calendar date, "yyyy-MM-dd", in the years 1900 to 2199.</summary>
    public static DateOnly? ParseDate(this Validation validation, string field, string? value, bool required)
    {
        if (value is null)
        {
            if (required)
            {
                validation.Add(field, $"{field} is required: a date \"yyyy-MM-dd\".");
            }
            return null;
        }
        if (DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date))
        {
            // Reminder offsets, grace periods and filing rules add up to a few years to a date: a
            // bound keeps that arithmetic inside the calendar (9999-12-31 plus a day is an error).
            if (date.Year is >= MinYear and <= MaxYear)
            {
                return date;
            }
            validation.Add(field, $"{field} must fall in the years {MinYear} to {MaxYear}.");
            return null;
        }
        validation.Add(field, $"{field} is a date \"yyyy-MM-dd\", e.g. \"2026-11-19\".");
        return null;
    }

    /// <summary>Template data: a JSON object (absent means none).</summary>
    public static JsonDocument? ParseTemplateData(this Validation validation, string field, JsonElement? value)
    {
        if (value is null || value.Value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return null;
        }
        if (value.Value.ValueKind != JsonValueKind.Object)
        {
            validation.Add(field, $"{field} is a JSON object.");
            return null;
        }
        var raw = value.Value.GetRawText();
        validation.StorableJson(field, value.Value, raw).TemplateDataNames(field, value);
        return JsonDocument.Parse(raw);
    }

    public static Validation RequireCustomer(this Validation validation, Guid? id, string? externalId) =>
        validation.When(id is null == string.IsNullOrWhiteSpace(externalId), "customerId", "name the customer by customerId or by customerExternalId (one of them).");

    /// <summary>
    /// The company's live customer by our id or the business application's id (null when there is
    /// none: answer 404), with their time zone (the steps' clock) and the company's (the deadline's:
    /// see <see cref="ReminderPlan"/>); a customer zone that is not IANA is added to
    /// <paramref name="validation"/> as a <c>customerId</c> problem.
    /// </summary>
    public static async Task<(Customer? Customer, TimeZoneInfo Zone, TimeZoneInfo DeadlineZone)> FindCustomerAsync(
        OutboxDbContext db, Guid companyId, Guid? id, string? externalId, Validation validation, CancellationToken cancellationToken)
    {
        var customers = db.Customers.AsNoTracking().Where(c => c.CompanyId == companyId && c.DeletedAt == null);
        var trimmed = externalId?.Trim();   // as a message's customerExternalId is
        var customer = await (id is { } ours ? customers.Where(c => c.Id == ours) : customers.Where(c => c.ExternalId == trimmed)).SingleOrDefaultAsync(cancellationToken);
        if (customer is null)
        {
            return (null, TimeZoneInfo.Utc, TimeZoneInfo.Utc);
        }
        var companyZone = await db.Companies.Where(c => c.Id == companyId).Select(c => c.TimeZone).SingleAsync(cancellationToken);
        if (!LocalTimes.TryFindZone(customer.TimeZone, out var zone))
        {
            validation.Add("customerId", $"the customer's time zone '{customer.TimeZone}' is not an IANA time zone; correct the customer first.");
            return (customer, TimeZoneInfo.Utc, TimeZoneInfo.Utc);
        }
        // The company's zone is checked when it is saved; one changed by SQL to something unknown leaves the deadline in the customer's.
        return (customer, zone, LocalTimes.TryFindZone(companyZone, out var deadlineZone) ? deadlineZone : zone);
    }

    /// <summary>What a request may give for every step it creates: local send time, channel, grace days.</summary>
    public static (TimeOnly SendAt, Channel Channel, int GraceDays) ParseStepDefaults(this Validation validation, string? sendAt, string? channel, int? graceDays)
    {
        validation.When(graceDays is < 0 or > 365, "graceDays", "graceDays is between 0 and 365.");
        return (validation.ParseLocalTime("sendAt", sendAt, ReminderPlan.DefaultSendAt), validation.ParseChannel("channel", channel, Core.Messages.Channel.Preferred), graceDays ?? 0);
    }

    /// <summary>
    /// What keeps each template key that a plan will send on a channel from rendering, keyed by the
    /// use; a use that can render is absent. EMAIL, WHATSAPP and SMS need a template of that
    /// channel, BOTH one for email and one for WhatsApp, PREFERRED any (the worker picks the
    /// channel, and falls back, at send time). Checked when a reminder or schedule is saved: a
    /// missing template would otherwise be found weeks later, when every step fails.
    /// </summary>
    public static async Task<Dictionary<(string Key, Channel Channel), string>> MissingTemplatesAsync(
        OutboxDbContext db, Guid companyId, IEnumerable<(string Key, Channel Channel)> uses, CancellationToken cancellationToken, Customer? customer = null)
    {
        var wanted = uses.Distinct().ToList();
        var keys = wanted.Select(u => u.Key).Distinct().ToList();
        var variants = await db.MessageTemplates.AsNoTracking().Where(t => t.CompanyId == companyId && keys.Contains(t.Key))
            .Select(t => new { t.Key, t.Channel, t.Language }).ToListAsync(cancellationToken);
        // For one customer, only the languages the worker will look in for them (theirs, the
        // company's, English): a template only in Hindi does not reach an English-speaking client.
        List<string>? languages = null;
        if (customer is not null)
        {
            var companyLanguage = await db.Companies.Where(c => c.Id == companyId).Select(c => c.DefaultLanguage).SingleAsync(cancellationToken);
            languages = [.. MessageTemplate.LanguagesToTry(customer.PreferredLanguage, companyLanguage).Distinct(StringComparer.OrdinalIgnoreCase)];
        }
        var missing = new Dictionary<(string Key, Channel Channel), string>();
        foreach (var (key, channel) in wanted)
        {
            var ofKey = variants.Where(v => v.Key == key).ToList();
            var have = ofKey.Where(v => languages is null || languages.Contains(v.Language, StringComparer.OrdinalIgnoreCase)).Select(v => v.Channel).ToHashSet();
            Channel[] needed = channel switch
            {
                Channel.Preferred => [],
                Channel.Both => [Channel.Email, Channel.WhatsApp],
                _ => [channel],
            };
            var inLanguages = languages is null ? "" : $" in the customer's languages ({string.Join(", ", languages)})";
            if (ofKey.Count == 0)
            {
                missing[(key, channel)] = $"No template '{key}' exists in this company: create it with PUT /v1/templates/{key}.";
            }
            else if (have.Count == 0)
            {
                missing[(key, channel)] = $"Template '{key}' has no version{inLanguages}: add one with PUT /v1/templates/{key}.";
            }
            else if (needed.Where(c => !have.Contains(c)).Select(WireName<Channel>.Of).ToList() is { Count: > 0 } absent)
            {
                var sends = channel == Channel.Both ? "BOTH sends email and WhatsApp" : $"the channel is {WireName<Channel>.Of(channel)}";
                missing[(key, channel)] = $"Template '{key}' has no {string.Join(" or ", absent)} version{inLanguages} ({sends}; it has {string.Join(", ", have.Order().Select(WireName<Channel>.Of))}): add one with PUT /v1/templates/{key}.";
            }
        }
        return missing;
    }

    /// <summary>The customer named by the request's field is not one of the company's (or was deleted): a 400 naming that field.</summary>
    public static Validation UnknownCustomer(Validation validation, Guid? id, string? externalId) =>
        validation.Add(id is not null ? "customerId" : "customerExternalId", $"{Describe(id, externalId)} is not a customer of this company (or was deleted).");

    public static string Describe(Guid? id, string? externalId) => id is { } ours ? $"Customer {ours}" : $"Customer with external id '{externalId}'";
}
