using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Serialization;
using Cronos;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Api.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Preferences;

namespace OutboxComms.Api.Preferences;

/// <summary>
/// A customer's channel choices and consent. Every opt-in or opt-out is also written to
/// <c>consent_records</c>, with who made it, when and on what evidence, because a practice must be
/// able to show when a client agreed to WhatsApp or SMS (WhatsApp Business policy, India's DPDP Act).
/// </summary>
public static class PreferenceEndpoints
{
    public const string DefaultConsentSource = "api";

    /// <summary>A daily window in the customer's time zone, HH:mm; it may cross midnight (22:00 to 09:00).</summary>
    public sealed record QuietHoursWindow(string? Start, string? End);

    /// <summary>
    /// A change to the preferences: an omitted field keeps its value, so consent never changes as a
    /// side effect of a field the caller did not mention. <c>quietHours: null</c> clears the window.
    /// </summary>
    [EchoedFields("customerId", "updatedAt")]
    public sealed record PreferencesRequest
    {
        private readonly QuietHoursWindow? quietHours;

        public bool? EmailOptIn { get; init; }
        public bool? WhatsAppOptIn { get; init; }
        public bool? SmsOptIn { get; init; }
        /// <summary>EMAIL, WHATSAPP, SMS or BOTH.</summary>
        [OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH")]
        public string? InvoiceDeliveryChannel { get; init; }
        [OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH")]
        public string? ComplianceReminderChannel { get; init; }
        [OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH")]
        public string? PaymentReminderChannel { get; init; }
        [OpenApiValues("EMAIL", "WHATSAPP", "SMS", "BOTH")]
        public string? GeneralUpdatesChannel { get; init; }
        /// <summary>True after the client used a one-click unsubscribe link; false re-subscribes them to general updates.</summary>
        public bool? GeneralUpdatesOptOut { get; init; }
        /// <summary>
        /// The channels the client stopped general updates on, and only there (WhatsApp's "stop
        /// promotions"): the whole list, replacing the current one; [] resumes them everywhere it stopped them.
        /// </summary>
        public IReadOnlyList<string>? GeneralUpdatesOptOutChannels { get; init; }
        /// <summary>DAILY, WEEKLY, MONTHLY or CUSTOM.</summary>
        [OpenApiValues("DAILY", "WEEKLY", "MONTHLY", "CUSTOM")]
        public string? ReminderFrequency { get; init; }
        /// <summary>Cron expression (five fields, or six with seconds), required for CUSTOM.</summary>
        public string? ReminderCron { get; init; }

        public QuietHoursWindow? QuietHours
        {
            get => quietHours;
            init
            {
                quietHours = value;
                QuietHoursGiven = true;
            }
        }

        /// <summary>The JSON named quietHours (null included): only then do the quiet hours change.</summary>
        [JsonIgnore]
        public bool QuietHoursGiven { get; private init; }

        /// <summary>The evidence for an opt-in or opt-out, e.g. "signed engagement letter"; "api" when omitted.</summary>
        public string? ConsentSource { get; init; }
    }

    /// <summary>The preferences in force; <c>updatedAt</c> is null while the customer still has the defaults.</summary>
    public sealed record PreferencesResponse(
        Guid CustomerId, bool EmailOptIn, bool WhatsAppOptIn, bool SmsOptIn,
        Channel InvoiceDeliveryChannel, Channel ComplianceReminderChannel, Channel PaymentReminderChannel, Channel GeneralUpdatesChannel,
        bool GeneralUpdatesOptOut, IReadOnlyList<Channel> GeneralUpdatesOptOutChannels,
        ReminderFrequency ReminderFrequency, string? ReminderCron, QuietHoursWindow? QuietHours, DateTimeOffset? UpdatedAt);

    /// <summary>
    /// One opt-in or opt-out. <c>scope</c> CHANNEL is the channel's opt-in (every message on it);
    /// GENERAL_UPDATES is about general updates only, on <c>channel</c> or, when it is null, on every channel.
    /// </summary>
    public sealed record ConsentResponse(long Id, ConsentScope Scope, Channel? Channel, bool OptedIn, string Source, string RecordedBy, DateTimeOffset RecordedAt);

    public static IEndpointRouteBuilder MapPreferences(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/customers/{id}").WithTags("Preferences")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Small);
        group.MapGet("/preferences", Get)
            .WithSummary(CustomerEndpoints.AddressingSummary("The customer's preferences (the defaults, email on and WhatsApp/SMS off, until set)"));
        group.MapPut("/preferences", Put)
            .WithMetadata(new OpenApiHeader("If-Match", "Optional: the ETag of a GET (or an earlier PUT); the PUT is refused with 412 when the preferences changed since."))
            .WithSummary(CustomerEndpoints.AddressingSummary("Changes the preferences; omitted fields keep their value and each opt-in change is recorded as consent"));
        group.MapGet("/consents", ListConsents)
            .WithSummary(CustomerEndpoints.AddressingSummary("Every recorded opt-in and opt-out of the customer, newest first"));
        endpoints.MapGroup("/v1/consents").WithTags("Preferences")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .MapGet("/export", ExportConsents).Produces(StatusCodes.Status200OK, contentType: "text/csv")
            .WithSummary("Every consent record of the company, oldest first, as CSV (UTF-8): the evidence of what each client agreed to, kept by the practice — take it before offboarding.");
        return endpoints;
    }

    /// <summary>
    /// A large practice has hundreds of thousands of records: read in one query into a temporary
    /// file (the records as they stood at that moment), then sent from it, with its length. One
    /// export per company at a time and two per API process: each holds a database connection and
    /// temporary disk space while it is read (429 otherwise).
    /// </summary>
    internal static async Task<Results<FileStreamHttpResult, ProblemHttpResult>> ExportConsents(Tenant tenant, NpgsqlDataSource dataSource, HttpContext http, CancellationToken cancellationToken)
    {
        if (!ConsentExports.TryEnter(tenant.CompanyId))
        {
            http.Response.Headers.RetryAfter = "60";
            return TypedResults.Problem(statusCode: StatusCodes.Status429TooManyRequests, title: "A consent export is already being prepared",
                detail: "Another export of this company's consent records, or too many exports at once, is being prepared on this server: try again in a minute.");
        }
        FileStream spooled;
        try
        {
            spooled = await ConsentExport.SpoolAsync(dataSource, tenant.CompanyId, cancellationToken);
        }
        finally
        {
            ConsentExports.Exit(tenant.CompanyId);
        }
        // Sent with its length, and disposed (so deleted) once sent.
        return TypedResults.Stream(spooled, "text/csv; charset=utf-8", "consents.csv");
    }

    /// <summary>The consent exports being prepared in this process.</summary>
    private static class ConsentExports
    {
        private const int AtOnce = 2;
        private static readonly ConcurrentDictionary<Guid, byte> Companies = new();
        private static int running;

        public static bool TryEnter(Guid companyId)
        {
            if (Interlocked.Increment(ref running) > AtOnce)
            {
                Interlocked.Decrement(ref running);
                return false;
            }
            if (!Companies.TryAdd(companyId, 0))
            {
                Interlocked.Decrement(ref running);
                return false;
            }
            return true;
        }

        public static void Exit(Guid companyId)
        {
            Companies.TryRemove(companyId, out _);
            Interlocked.Decrement(ref running);
        }
    }

    internal static async Task<Results<Ok<PreferencesResponse>, ProblemHttpResult>> Get(string id, Tenant tenant, OutboxDbContext db, HttpContext http, CancellationToken cancellationToken)
    {
        var customer = await CustomerEndpoints.FindAsync(db, tenant, id, cancellationToken);
        if (customer is null)
        {
            return CustomerEndpoints.NotFound(id);
        }
        var preference = await db.CommunicationPreferences.AsNoTracking().SingleOrDefaultAsync(p => p.CustomerId == customer.Id, cancellationToken);
        http.Response.Headers.ETag = ETag(preference);
        return TypedResults.Ok(ToResponse(customer.Id, preference ?? new CommunicationPreference(), isSet: preference is not null));
    }

    /// <summary>
    /// The version of a customer's preferences, for <c>If-Match</c> on the PUT: they change behind
    /// a client's back too (a provider opt-out, a complaint, a WhatsApp user's stop or resume), so a
    /// client that sends whole values such as <c>generalUpdatesOptOutChannels</c> can make sure it
    /// replaces what it read.
    /// </summary>
    private static string ETag(CommunicationPreference? preference) =>
        string.Create(CultureInfo.InvariantCulture, $"\"{(preference is null ? 0 : preference.UpdatedAt.UtcTicks / 10)}\"");

    internal static async Task<Results<Ok<PreferencesResponse>, ValidationProblem, ProblemHttpResult>> Put(
        string id, PreferencesRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, HttpContext http, CancellationToken cancellationToken)
    {
        var found = await CustomerEndpoints.FindAsync(db, tenant, id, cancellationToken);
        if (found is null)
        {
            return CustomerEndpoints.NotFound(id);
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        // Changes to one customer's preferences queue behind this row lock (the worker's and the
        // webhooks' provider opt-outs take it too, first, as here: ProviderOptOuts), so every opt-in
        // change is compared with the value it really replaces and recorded exactly once. NO KEY
        // UPDATE: a row inserted for this customer meanwhile (a reminder; its foreign key takes KEY SHARE) does not wait.
        var locked = await db.Customers
            .FromSql($"SELECT * FROM customers WHERE id = {found.Id} AND company_id = {tenant.CompanyId} AND deleted_at IS NULL FOR NO KEY UPDATE")
            .ToListAsync(cancellationToken);
        if (locked.Count == 0)
        {
            return CustomerEndpoints.NotFound(id);
        }
        var existing = await db.CommunicationPreferences.SingleOrDefaultAsync(p => p.CustomerId == found.Id, cancellationToken);
        // Compared under the customer's lock, so nothing can change them between this check and the write.
        if (http.Request.Headers.IfMatch.ToString() is { Length: > 0 } ifMatch && ifMatch != "*" && ifMatch != ETag(existing))
        {
            return Problems.PreconditionFailed($"The preferences changed since they were read (If-Match {ifMatch}, now {ETag(existing)}): GET them again and send the change from those.");
        }
        var preference = existing ?? new CommunicationPreference { Id = Guid.CreateVersion7(), CustomerId = found.Id };

        var validation = Validate(request, preference, out var change);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var now = time.GetUtcNow();
        var stated = await db.ConsentRecords.Where(r => r.CustomerId == found.Id && r.CompanyId == tenant.CompanyId && r.Scope == ConsentScope.Channel && r.Channel != null && r.OptedIn)
            .Select(r => r.Channel!.Value).Distinct().ToListAsync(cancellationToken);
        ApplyAndRecord(db, tenant, found.Id, existing, preference, change, stated, request.ConsentSource?.Trim() ?? DefaultConsentSource, now);
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        http.Response.Headers.ETag = ETag(preference);
        return TypedResults.Ok(ToResponse(found.Id, preference, isSet: true));
    }

    /// <summary>The evidence recorded for an import's opt-ins and opt-outs when its item names none.</summary>
    public const string ImportConsentSource = "import";

    /// <summary>
    /// An import's preferences (<see cref="CustomerEndpoints"/>): each customer's change applied as
    /// a PUT without <c>If-Match</c> applies it, opt-ins recorded as consent, in the import's
    /// transaction, whose customers it has locked. Problems are added to <paramref name="validation"/>
    /// as <c>label.field</c> (the caller stores nothing then); answers the customers
    /// whose preferences or consent changed.
    /// </summary>
    internal static async Task<HashSet<Guid>> ApplyImportedAsync(
        OutboxDbContext db, Tenant tenant, IReadOnlyList<(Guid CustomerId, string Label, PreferencesRequest Request)> changes,
        Validation validation, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var changed = new HashSet<Guid>();
        if (changes.Count == 0)
        {
            return changed;
        }
        var ids = changes.Select(c => c.CustomerId).ToArray();
        var existing = await db.CommunicationPreferences.Where(p => ids.Contains(p.CustomerId)).ToDictionaryAsync(p => p.CustomerId, cancellationToken);
        var stated = (await db.ConsentRecords
                .Where(r => ids.Contains(r.CustomerId) && r.CompanyId == tenant.CompanyId && r.Scope == ConsentScope.Channel && r.Channel != null && r.OptedIn)
                .Select(r => new { r.CustomerId, Channel = r.Channel!.Value }).Distinct().ToListAsync(cancellationToken))
            .ToLookup(r => r.CustomerId, r => r.Channel);
        foreach (var (customerId, label, request) in changes)
        {
            var current = existing.GetValueOrDefault(customerId);
            var preference = current ?? new CommunicationPreference { Id = Guid.CreateVersion7(now), CustomerId = customerId };
            var problems = Validate(request, preference, out var change);
            if (!problems.IsValid)
            {
                validation.Merge(label, problems);
                continue;
            }
            if (ApplyAndRecord(db, tenant, customerId, current, preference, change, stated[customerId], request.ConsentSource?.Trim() ?? ImportConsentSource, now))
            {
                changed.Add(customerId);
            }
        }
        return changed;
    }

    /// <summary>
    /// Applies a checked change to a customer's preferences (<paramref name="existing"/>, or the new
    /// <paramref name="preference"/> row when they had none) and records each opt-in and opt-out it
    /// makes as consent, from <paramref name="source"/>: a PUT's, and each customer's of an import.
    /// Answers whether anything changed. A change that changes nothing (a retry, a client re-sending
    /// what it read) keeps the version: another client's If-Match on it still holds.
    /// </summary>
    private static bool ApplyAndRecord(
        OutboxDbContext db, Tenant tenant, Guid customerId, CommunicationPreference? existing, CommunicationPreference preference, Change change,
        IEnumerable<Channel> stated, string source, DateTimeOffset now)
    {
        var consents = Apply(change, preference, [.. stated]);
        db.ConsentRecords.AddRange(consents.Select(c => new ConsentRecord
        {
            CompanyId = tenant.CompanyId, CustomerId = customerId, Scope = c.Scope, Channel = c.Channel, OptedIn = c.OptedIn,
            Source = source, RecordedBy = tenant.Actor, RecordedAt = now,
        }));
        if (existing is null)
        {
            preference.UpdatedAt = now;
            db.CommunicationPreferences.Add(preference);
            return true;
        }
        db.ChangeTracker.DetectChanges();
        var modified = db.Entry(existing).State == EntityState.Modified;
        if (modified)
        {
            preference.UpdatedAt = now;
        }
        return modified || consents.Count > 0;
    }

    internal static async Task<Results<Ok<List<ConsentResponse>>, ProblemHttpResult>> ListConsents(string id, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var customer = await CustomerEndpoints.FindAsync(db, tenant, id, cancellationToken);
        if (customer is null)
        {
            return CustomerEndpoints.NotFound(id);
        }
        var consents = await db.ConsentRecords.AsNoTracking()
            .Where(r => r.CustomerId == customer.Id && r.CompanyId == tenant.CompanyId)
            .OrderByDescending(r => r.RecordedAt).ThenByDescending(r => r.Id)
            .Select(r => new ConsentResponse(r.Id, r.Scope, r.Channel, r.OptedIn, r.Source, r.RecordedBy, r.RecordedAt))
            .ToListAsync(cancellationToken);
        return TypedResults.Ok(consents);
    }

    /// <summary>The request, parsed and checked against the current preferences.</summary>
    private sealed record Change(
        bool? EmailOptIn, bool? WhatsAppOptIn, bool? SmsOptIn,
        Channel? Invoice, Channel? Compliance, Channel? Payment, Channel? General, bool? GeneralUpdatesOptOut, IReadOnlyList<Channel>? GeneralUpdatesOptOutChannels,
        ReminderFrequency Frequency, string? Cron, bool QuietHoursGiven, TimeOnly? QuietStart, TimeOnly? QuietEnd);

    private static Validation Validate(PreferencesRequest request, CommunicationPreference current, out Change change)
    {
        var validation = new Validation();
        var invoice = ParseChannel(validation, "invoiceDeliveryChannel", request.InvoiceDeliveryChannel);
        var compliance = ParseChannel(validation, "complianceReminderChannel", request.ComplianceReminderChannel);
        var payment = ParseChannel(validation, "paymentReminderChannel", request.PaymentReminderChannel);
        var general = ParseChannel(validation, "generalUpdatesChannel", request.GeneralUpdatesChannel);
        List<Channel>? stoppedOn = null;
        if (request.GeneralUpdatesOptOutChannels is { Count: > 3 } tooMany)
        {
            // One error, not one per entry: a list of millions would make an answer of hundreds of MB.
            validation.Add("generalUpdatesOptOutChannels", $"generalUpdatesOptOutChannels lists each of EMAIL, WHATSAPP and SMS at most once ({tooMany.Count} entries given).");
        }
        else if (request.GeneralUpdatesOptOutChannels is { } named)
        {
            stoppedOn = [];
            foreach (var name in named)
            {
                if (WireName<Channel>.TryParse(name, out var channel) && channel is Channel.Email or Channel.WhatsApp or Channel.Sms)
                {
                    validation.When(stoppedOn.Contains(channel), "generalUpdatesOptOutChannels", $"generalUpdatesOptOutChannels names {name} twice.");
                    stoppedOn.Add(channel);
                }
                else
                {
                    validation.Add("generalUpdatesOptOutChannels", $"generalUpdatesOptOutChannels lists EMAIL, WHATSAPP or SMS; '{name}' is none of them.");
                }
            }
        }

        var frequency = current.ReminderFrequency;
        var frequencyGiven = request.ReminderFrequency is not null;
        if (frequencyGiven && !WireName<ReminderFrequency>.TryParse(request.ReminderFrequency, out frequency))
        {
            validation.Add("reminderFrequency", $"reminderFrequency is one of {string.Join(", ", WireName<ReminderFrequency>.All)}.");
        }
        // A new non-custom frequency drops the old custom cron; otherwise an omitted cron is kept.
        var cron = request.ReminderCron?.Trim() ?? (frequencyGiven && frequency != ReminderFrequency.Custom ? null : current.ReminderCron);
        if (request.ReminderCron is not null)
        {
            validation.When(frequency != ReminderFrequency.Custom, "reminderCron", "reminderCron applies only when reminderFrequency is CUSTOM.");
            try
            {
                // "0 0 31 2 *" parses but never fires: the frequency limit would never apply.
                validation.When(ReminderFrequencyPolicy.ParseCron(cron!).GetNextOccurrence(DateTime.UtcNow) is null,
                    "reminderCron", "reminderCron never fires (a date that does not exist, such as 31 February).");
            }
            catch (CronFormatException ex)
            {
                validation.Add("reminderCron", $"reminderCron is not a valid cron expression: {ex.Message}");
            }
        }
        validation.When(frequency == ReminderFrequency.Custom && cron is null, "reminderCron", "reminderCron is required when reminderFrequency is CUSTOM.");

        TimeOnly? quietStart = null, quietEnd = null;
        if (request.QuietHours is { } window)
        {
            quietStart = ParseTime(validation, "quietHours.start", window.Start, "quietHours.end", window.End);
            quietEnd = ParseTime(validation, "quietHours.end", window.End, "quietHours.start", window.Start);
            validation.When(quietStart is not null && quietStart == quietEnd, "quietHours.end",
                "quietHours.end must differ from quietHours.start; set quietHours to null for no quiet hours.");
        }

        validation.Storable(("consentSource", request.ConsentSource));
        validation.When(request.ConsentSource is not null && string.IsNullOrWhiteSpace(request.ConsentSource), "consentSource", "consentSource cannot be blank; omit it for \"api\".")
            .When(request.ConsentSource is { Length: > 200 }, "consentSource", "consentSource is at most 200 characters.");

        change = new Change(request.EmailOptIn, request.WhatsAppOptIn, request.SmsOptIn, invoice, compliance, payment, general, request.GeneralUpdatesOptOut, stoppedOn,
            frequency, cron, request.QuietHoursGiven, quietStart, quietEnd);
        return validation;
    }

    /// <summary>
    /// Applies the change; answers the opt-ins and opt-outs it made (an unchanged flag is no consent
    /// event), general updates included: a re-subscription is recorded, so a provider's late report
    /// of an older complaint does not undo it (ProviderOptOuts).
    /// </summary>
    /// <param name="stated">
    /// The channels whose opt-in was ever recorded. An opt-in on any other channel is recorded even
    /// when it matches what is stored, which is then only a default (email is on until changed), not
    /// a consent anyone gave: an email opt-in on a signed engagement letter is evidence to keep.
    /// </param>
    private static List<(ConsentScope Scope, Channel? Channel, bool OptedIn)> Apply(Change change, CommunicationPreference preference, HashSet<Channel> stated)
    {
        var consents = new List<(ConsentScope, Channel?, bool)>();
        preference.EmailOptIn = Consent(Channel.Email, preference.EmailOptIn, change.EmailOptIn);
        preference.WhatsAppOptIn = Consent(Channel.WhatsApp, preference.WhatsAppOptIn, change.WhatsAppOptIn);
        preference.SmsOptIn = Consent(Channel.Sms, preference.SmsOptIn, change.SmsOptIn);
        if (change.GeneralUpdatesOptOut is { } optOut && optOut != preference.GeneralUpdatesOptOut)
        {
            consents.Add((ConsentScope.GeneralUpdates, null, !optOut));
            preference.GeneralUpdatesOptOut = optOut;
        }
        if (change.GeneralUpdatesOptOutChannels is { } stoppedOn)
        {
            foreach (var channel in new[] { Channel.Email, Channel.WhatsApp, Channel.Sms })
            {
                var stopped = stoppedOn.Contains(channel);
                if (stopped != preference.GeneralUpdatesOptOutChannels.Contains(channel))
                {
                    consents.Add((ConsentScope.GeneralUpdates, channel, !stopped));
                }
            }
            // Only a different set is a change: the stored order (a WhatsApp stop is appended) is not.
            if (!stoppedOn.ToHashSet().SetEquals(preference.GeneralUpdatesOptOutChannels))
            {
                preference.GeneralUpdatesOptOutChannels = [.. stoppedOn.Order()];
            }
        }
        preference.InvoiceDeliveryChannel = change.Invoice ?? preference.InvoiceDeliveryChannel;
        preference.ComplianceReminderChannel = change.Compliance ?? preference.ComplianceReminderChannel;
        preference.PaymentReminderChannel = change.Payment ?? preference.PaymentReminderChannel;
        preference.GeneralUpdatesChannel = change.General ?? preference.GeneralUpdatesChannel;
        preference.ReminderFrequency = change.Frequency;
        preference.ReminderCron = change.Cron;
        if (change.QuietHoursGiven)
        {
            preference.QuietHoursStart = change.QuietStart;
            preference.QuietHoursEnd = change.QuietEnd;
        }
        return consents;

        bool Consent(Channel channel, bool current, bool? wanted)
        {
            if (wanted is { } value && (value != current || (value && !stated.Contains(channel))))
            {
                consents.Add((ConsentScope.Channel, channel, value));
                return value;
            }
            return current;
        }
    }

    private static Channel? ParseChannel(Validation validation, string field, string? value)
    {
        if (value is null)
        {
            return null;
        }
        if (WireName<Channel>.TryParse(value, out var channel) && channel is Channel.Email or Channel.WhatsApp or Channel.Sms or Channel.Both)
        {
            return channel;
        }
        validation.Add(field, $"{field} is one of EMAIL, WHATSAPP, SMS, BOTH.");
        return null;
    }

    private static TimeOnly? ParseTime(Validation validation, string field, string? value, string otherField, string? other)
    {
        if (value is null)
        {
            validation.Add(field, other is null
                ? $"{field} is required; set quietHours to null for no quiet hours."
                : $"{field} is required with {otherField} (both or neither).");
            return null;
        }
        if (TimeOnly.TryParseExact(value, "HH:mm", CultureInfo.InvariantCulture, DateTimeStyles.None, out var time))
        {
            return time;
        }
        validation.Add(field, $"{field} is a time of day as HH:mm, e.g. 22:00.");
        return null;
    }

    private static PreferencesResponse ToResponse(Guid customerId, CommunicationPreference p, bool isSet) => new(
        customerId, p.EmailOptIn, p.WhatsAppOptIn, p.SmsOptIn,
        p.InvoiceDeliveryChannel, p.ComplianceReminderChannel, p.PaymentReminderChannel, p.GeneralUpdatesChannel,
        p.GeneralUpdatesOptOut, p.GeneralUpdatesOptOutChannels, p.ReminderFrequency, p.ReminderCron,
        p.QuietHoursStart is { } start && p.QuietHoursEnd is { } end
            ? new QuietHoursWindow(start.ToString("HH:mm", CultureInfo.InvariantCulture), end.ToString("HH:mm", CultureInfo.InvariantCulture))
            : null,
        isSet ? p.UpdatedAt : null);
}
