using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Policies;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Api.Templates;

/// <summary>
/// A company's Scriban templates, one per key, channel and language. Texts are checked for syntax on
/// the way in, so a broken template is a 400 here rather than a failed message later; every change
/// bumps <c>version</c>, which the worker records (<c>key@vN/CHANNEL/language</c>) on each message.
/// </summary>
public static partial class TemplateEndpoints
{
    private static readonly Channel[] TemplateChannels = [Channel.Email, Channel.WhatsApp, Channel.Sms];

    /// <summary>WhatsApp: the provider-approved template and the Scriban texts that fill its {{1}}, {{2}}, ...</summary>
    public sealed record ProviderTemplateMapping(string? Name, string? Language, List<string>? Parameters);

    /// <summary>subject and htmlBody are for EMAIL templates, providerTemplate for WHATSAPP.</summary>
    [EchoedFields("id", "key", "version", "createdAt", "updatedAt")]
    public sealed record TemplateRequest([property: OpenApiValues("EMAIL", "WHATSAPP", "SMS")] string? Channel, string? Language, string? Subject, string? Body, string? HtmlBody, ProviderTemplateMapping? ProviderTemplate);

    public sealed record ProviderTemplateView(string Name, string? Language, List<string> Parameters);

    public sealed record TemplateResponse(
        Guid Id, string Key, Channel Channel, string Language, string? Subject, string Body, string? HtmlBody, ProviderTemplateView? ProviderTemplate,
        int Version, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt);

    /// <summary>Who the preview is for; every field left out takes the sample customer's value.</summary>
    public sealed record PreviewCustomer(string? ExternalId, string? Name, string? Email, string? Phone, string? WhatsAppNumber, string? PreferredLanguage, string? TimeZone);

    /// <summary>
    /// Renders the stored template for <c>channel</c>. Without a language the worker's choice is made:
    /// the customer's language, then the company's, then English. <c>type</c> (default GENERAL_UPDATE)
    /// fills <c>message.type</c>.
    /// </summary>
    public sealed record PreviewRequest(string? Channel, string? Language, string? Type, JsonElement? Data, PreviewCustomer? Customer);

    public sealed record RenderedProviderTemplate(string Name, string Language, List<string> Parameters);

    /// <summary><c>template</c> is the key@version/channel/language that rendered, as a message would record it.</summary>
    public sealed record PreviewResponse(string Template, string? Subject, string Body, string? HtmlBody, RenderedProviderTemplate? ProviderTemplate);

    public static IEndpointRouteBuilder MapTemplates(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/templates").WithTags("Templates")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(BodySizeLimit.Template);
        group.MapGet("/", List).WithSummary("The company's templates (the current version of each), optionally of one key.");
        group.MapGet("/{key}", GetKey).WithSummary("Every channel and language of one template key.");
        group.MapPut("/{key}", Upsert)
            .WithSummary("Creates or replaces the template for the key, channel and language; a change bumps its version. Scriban syntax errors answer 400 with line and column.");
        group.MapDelete("/{key}", Delete).WithSummary("Deletes the key's templates: all of them, or only those of ?channel= and/or ?language=; the last ones of a key that schedules, reminder steps or pending messages name only with ?force=true (else 409).");
        group.MapPost("/{key}/preview", Preview).WithSummary("Renders the stored template with sample data, exactly as the worker would.");
        return endpoints;
    }

    internal static async Task<Ok<List<TemplateResponse>>> List(string? key, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var query = Of(db, tenant);
        if (key is not null)
        {
            query = query.Where(t => t.Key == key);
        }
        return TypedResults.Ok(await ListAsync(query, cancellationToken));
    }

    internal static async Task<Results<Ok<List<TemplateResponse>>, ProblemHttpResult>> GetKey(string key, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var templates = await ListAsync(Of(db, tenant).Where(t => t.Key == key), cancellationToken);
        return templates.Count == 0 ? NotFound(key) : TypedResults.Ok(templates);
    }

    internal static async Task<Results<Created<TemplateResponse>, Ok<TemplateResponse>, ValidationProblem>> Upsert(
        string key, TemplateRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = Validate(key, request, out var channel);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var now = time.GetUtcNow();
        var id = Guid.CreateVersion7(now);
        var channelName = WireName<Channel>.Of(channel);
        var language = FieldRules.NormaliseLanguage(request.Language ?? "en");
        // A template stored before tags were normalised (en-in) is the one this request replaces.
        language = await Of(db, tenant).Where(t => t.Key == key && t.Channel == channel && t.Language.ToLower() == language.ToLower())
            .Select(t => t.Language).FirstOrDefaultAsync(cancellationToken) ?? language;
        var provider = request.ProviderTemplate;
        var mapping = JsonSerializer.Serialize(provider?.Parameters ?? []);
        // One statement, so concurrent writers of the same template cannot both create it or lose a
        // version bump. The WHERE makes re-sending identical content a no-op: the version then still
        // names exactly one text.
        var written = await db.MessageTemplates.FromSql($"""
            INSERT INTO message_templates AS t (id, company_id, key, channel, language, subject, body, html_body,
                                                provider_template_name, provider_template_language, parameter_mapping, version, created_at, updated_at)
            VALUES ({id}, {tenant.CompanyId}, {key}, {channelName}, {language}, {request.Subject}, {request.Body}, {request.HtmlBody},
                    {provider?.Name}, {provider?.Language}, {mapping}::jsonb, 1, {now}, {now})
            ON CONFLICT (company_id, key, channel, language) DO UPDATE
               SET subject = excluded.subject, body = excluded.body, html_body = excluded.html_body,
                   provider_template_name = excluded.provider_template_name, provider_template_language = excluded.provider_template_language,
                   parameter_mapping = excluded.parameter_mapping, version = t.version + 1, updated_at = excluded.updated_at
             WHERE (t.subject, t.body, t.html_body, t.provider_template_name, t.provider_template_language, t.parameter_mapping)
                   IS DISTINCT FROM (excluded.subject, excluded.body, excluded.html_body,
                                     excluded.provider_template_name, excluded.provider_template_language, excluded.parameter_mapping)
            RETURNING t.*
            """).AsNoTracking().ToListAsync(cancellationToken);

        if (written.Count == 0)
        {
            var unchanged = await Of(db, tenant).SingleAsync(t => t.Key == key && t.Channel == channel && t.Language == language, cancellationToken);
            return TypedResults.Ok(ToResponse(unchanged));
        }
        var template = written[0];
        return template.Id == id
            ? TypedResults.Created($"/v1/templates/{Uri.EscapeDataString(key)}", ToResponse(template))
            : TypedResults.Ok(ToResponse(template));
    }

    internal static async Task<Results<NoContent, ValidationProblem, ProblemHttpResult>> Delete(
        string key, string? channel, string? language, bool? force, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var parsed = channel is null ? (Channel?)null : ParseChannel(validation, "channel", channel);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var all = Of(db, tenant).Where(t => t.Key == key);
        var query = all;
        if (parsed is { } only)
        {
            query = query.Where(t => t.Channel == only);
        }
        if (language is not null)
        {
            query = query.Where(t => t.Language.ToLower() == language.ToLower());
        }
        // The key's last templates, while schedules, reminder steps or pending messages still name
        // it: each would fail when it fires (a renamed template found missing the day before a
        // filing deadline). Deleting only some of them is not checked, though a use on that channel,
        // or in a language with no fallback left, will fail the same way.
        if (force != true && await query.CountAsync(cancellationToken) is > 0 and var deleting && deleting == await all.CountAsync(cancellationToken)
            && await UsesAsync(db, tenant.CompanyId, key, cancellationToken) is { } uses)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Template in use",
                detail: $"Template '{key}' is still named by {uses}, which would fail when they fire. Point them at another template first, or delete with ?force=true.");
        }
        return await query.ExecuteDeleteAsync(cancellationToken) == 0 ? NotFound(key) : TypedResults.NoContent();
    }

    /// <summary>What still names the template key: enabled schedules, reminder steps not yet fired, pending messages; null when nothing does.</summary>
    private static async Task<string?> UsesAsync(OutboxDbContext db, Guid companyId, string key, CancellationToken cancellationToken)
    {
        var schedules = await db.CompanySchedules.Where(s => s.CompanyId == companyId && s.TemplateKey == key && s.Enabled)
            .OrderBy(s => s.Key).Select(s => s.Key).ToListAsync(cancellationToken);
        var steps = await db.ReminderSteps.CountAsync(
            s => s.TemplateKey == key && s.State == StepState.Scheduled && db.Reminders.Any(r => r.Id == s.ReminderId && r.CompanyId == companyId), cancellationToken);
        var pending = await db.CommunicationLogs.CountAsync(m => m.CompanyId == companyId && m.Status == DeliveryStatus.Pending && m.TemplateKey == key, cancellationToken);
        List<string> uses = [];
        if (schedules.Count > 0)
        {
            uses.Add($"{schedules.Count} schedule(s) ({string.Join(", ", schedules)})");
        }
        if (steps > 0)
        {
            uses.Add($"{steps} reminder step(s) not yet fired");
        }
        if (pending > 0)
        {
            uses.Add($"{pending} pending message(s)");
        }
        return uses.Count == 0 ? null : string.Join(", ", uses);
    }

    internal static async Task<Results<Ok<PreviewResponse>, ValidationProblem, ProblemHttpResult>> Preview(
        string key, PreviewRequest request, Tenant tenant, OutboxDbContext db, TemplateRenderer renderer, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var channel = request.Channel is null ? null : ParseChannel(validation, "channel", request.Channel);
        validation.When(request.Channel is null, "channel", "channel is required: EMAIL, WHATSAPP or SMS.");
        var type = MessageType.GeneralUpdate;
        validation
            .When(request.Type is not null && !WireName<MessageType>.TryParse(request.Type, out type), "type", $"type is one of {string.Join(", ", WireName<MessageType>.All)}.")
            .When(request.Data is { ValueKind: not (JsonValueKind.Object or JsonValueKind.Null) }, "data", "data must be a JSON object (the message's template_data).")
            .When(request.Language is not null && !FieldRules.IsLanguageCode(request.Language), "language", $"language is {FieldRules.LanguageHint}.")
            .When(request.Customer?.TimeZone is { } timeZone && !FieldRules.IsIanaZone(timeZone), "customer.timeZone", $"'{request.Customer?.TimeZone}' is not an IANA time zone (e.g. Asia/Kolkata).")
            .TemplateDataNames("data", request.Data);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var company = await db.Companies.AsNoTracking().SingleAsync(c => c.Id == tenant.CompanyId, cancellationToken);
        var customer = SampleCustomer(request.Customer, company.DefaultLanguage);
        string[] languages = request.Language is { } language ? [language] : MessageTemplate.LanguagesToTry(customer.PreferredLanguage, company.DefaultLanguage).ToArray();
        var lowered = languages.Select(l => l.ToLowerInvariant()).ToArray();
        var candidates = await Of(db, tenant).Where(t => t.Key == key && t.Channel == channel && lowered.Contains(t.Language.ToLower())).ToListAsync(cancellationToken);
        var template = languages.Select(l => candidates.Find(t => string.Equals(t.Language, l, StringComparison.OrdinalIgnoreCase))).FirstOrDefault(t => t is not null);
        if (template is null)
        {
            return Problems.NotFound($"Template '{key}' for {WireName<Channel>.Of(channel!.Value)} in {string.Join(", ", languages)}");
        }

        LocalTimes.TryFindZone(customer.TimeZone, out var zone);
        var now = time.GetUtcNow();
        var model = TemplateRenderer.Model(request.Data is { } data ? AsStored(data) : default, TemplateRenderer.CustomerFields(customer), TemplateRenderer.MessageFields(0, type, template.Channel, now, zone));
        // One render session for all of the message's texts, as the worker renders them (one time
        // limit for the whole message); after a text fails, the rest get a fresh session so that
        // every failing field is reported.
        var session = renderer.Session(model, TemplateRenderer.LocalTime(now, zone));
        string? Render(string field, string? text, bool html = false)
        {
            try
            {
                return text is null ? null : html ? session.RenderHtml(text) : session.Render(text);
            }
            catch (TemplateException ex)
            {
                validation.Add(field, $"{field} does not render: {ex.Message}");
                session.Dispose();
                session = renderer.Session(model, TemplateRenderer.LocalTime(now, zone));
                return null;
            }
        }
        string? subject, body, html;
        List<string> parameters;
        try
        {
            // As the worker sends them: the subject and parameters on one line, and an empty one a
            // failure (the message would fail with it).
            subject = OneLineText.Of(Render("subject", template.Subject));
            validation.When(template.Subject is not null && subject == "", "subject", "subject renders empty: a message would fail with it.");
            body = Render("body", template.Body);
            html = Render("htmlBody", template.HtmlBody, html: true);
            parameters = Parameters(template).Select((p, i) =>
            {
                var field = $"providerTemplate.parameters[{i}]";
                var value = OneLineText.Of(Render(field, p));
                validation.When(value == "", field, $"{field} renders empty: WhatsApp refuses an empty parameter, so a message would fail with it.");
                return value ?? "";
            }).ToList();
        }
        finally
        {
            session.Dispose();
        }
        if (!validation.IsValid)
        {
            return validation.Problem("The template does not render with this data.");
        }
        var providerTemplate = template.ProviderTemplateName is { } name
            ? new RenderedProviderTemplate(name, template.ProviderLanguage(), parameters)
            : null;
        return TypedResults.Ok(new PreviewResponse(template.Reference(), subject, body!, html, providerTemplate));
    }

    private static IQueryable<MessageTemplate> Of(OutboxDbContext db, Tenant tenant) =>
        db.MessageTemplates.AsNoTracking().Where(t => t.CompanyId == tenant.CompanyId);

    private static async Task<List<TemplateResponse>> ListAsync(IQueryable<MessageTemplate> query, CancellationToken cancellationToken) =>
        (await query.OrderBy(t => t.Key).ThenBy(t => t.Channel).ThenBy(t => t.Language).ToListAsync(cancellationToken)).Select(ToResponse).ToList();

    private static ProblemHttpResult NotFound(string key) => Problems.NotFound($"Template '{key}'");

    private static Validation Validate(string key, TemplateRequest request, out Channel channel)
    {
        channel = default;
        var validation = new Validation()
            .When(!TemplateKey().IsMatch(key), "key", "key is 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. mgt7-reminder).")
            .Require("channel", request.Channel)
            .When(request.Language is not null && !FieldRules.IsLanguageCode(request.Language), "language", $"language is {FieldRules.LanguageHint}.")
            .Require("body", request.Body);
        if (request.Channel is not null && ParseChannel(validation, "channel", request.Channel) is { } parsed)
        {
            channel = parsed;
            validation
                .When(request.Subject is not null && parsed != Channel.Email, "subject", "subject is for EMAIL templates only.")
                // Blank, every email from it would fail at the send ("the email's subject is empty").
                .When(request.Subject is not null && parsed == Channel.Email && string.IsNullOrWhiteSpace(request.Subject), "subject",
                    "subject cannot be blank: give one, or leave it out to send each message's own subject.")
                .When(request.HtmlBody is not null && parsed != Channel.Email, "htmlBody", "htmlBody is for EMAIL templates only.")
                .When(request.ProviderTemplate is not null && parsed != Channel.WhatsApp, "providerTemplate", "providerTemplate is for WHATSAPP templates only.");
        }

        validation.Storable(("subject", request.Subject), ("body", request.Body), ("htmlBody", request.HtmlBody),
            ("providerTemplate.name", request.ProviderTemplate?.Name), ("providerTemplate.language", request.ProviderTemplate?.Language));
        foreach (var (parameter, i) in (request.ProviderTemplate?.Parameters ?? []).Select((p, i) => (p, i)))
        {
            validation.Storable(($"providerTemplate.parameters[{i}]", parameter))
                .When(string.IsNullOrWhiteSpace(parameter), $"providerTemplate.parameters[{i}]",
                    "a parameter is an expression such as {{ invoice.number }}: WhatsApp refuses an empty one, so every message would fail.");
        }
        Syntax(validation, "subject", request.Subject);
        Syntax(validation, "body", request.Body);
        Syntax(validation, "htmlBody", request.HtmlBody);
        if (request.ProviderTemplate is { } provider)
        {
            validation.Require("providerTemplate.name", provider.Name)
                .When(provider.Language is not null && (string.IsNullOrWhiteSpace(provider.Language) || provider.Language.Length > 20),
                    "providerTemplate.language", "providerTemplate.language is the approved template's language code, e.g. en or en_US.");
            foreach (var (parameter, i) in (provider.Parameters ?? []).Select((p, i) => (p, i)))
            {
                var field = $"providerTemplate.parameters[{i}]";
                validation.When(parameter is null, field, $"{field} is a Scriban text such as {{{{ invoice_number }}}}.");
                Syntax(validation, field, parameter);
            }
        }
        return validation;
    }

    private static void Syntax(Validation validation, string field, string? text)
    {
        if (text is not null && TemplateRenderer.Validate(text) is { } error)
        {
            validation.Add(field, $"{field} is not valid Scriban: {error}");
        }
    }

    private static Channel? ParseChannel(Validation validation, string field, string value)
    {
        if (WireName<Channel>.TryParse(value, out var channel) && TemplateChannels.Contains(channel))
        {
            return channel;
        }
        validation.Add(field, $"{field} is one of EMAIL, WHATSAPP, SMS.");
        return null;
    }

    /// <summary>
    /// Template data as the worker reads it back from jsonb: an object's keys shortest first, then by
    /// their UTF-8 bytes, a repeated key's last value. A template that walks an object's keys
    /// (<c>object.keys</c>, <c>for … in</c>) sees them in the order the sent message will.
    /// </summary>
    internal static JsonElement AsStored(JsonElement data) => JsonSerializer.SerializeToElement(AsJsonb(data));

    private static readonly Comparer<byte[]> Utf8Order = Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b));

    private static JsonNode? AsJsonb(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => new JsonObject(value.EnumerateObject()
            .GroupBy(p => p.Name, StringComparer.Ordinal).Select(g => g.Last())
            .OrderBy(p => Encoding.UTF8.GetByteCount(p.Name)).ThenBy(p => Encoding.UTF8.GetBytes(p.Name), Utf8Order)
            .Select(p => KeyValuePair.Create(p.Name, AsJsonb(p.Value)))),
        JsonValueKind.Array => new JsonArray([.. value.EnumerateArray().Select(AsJsonb)]),
        _ => JsonValue.Create(value),
    };

    /// <summary>The customer a preview renders for: the sample client, with whatever the request says about them.</summary>
    private static Customer SampleCustomer(PreviewCustomer? given, string companyLanguage) => new()
    {
        Id = Guid.Empty,
        ExternalId = given?.ExternalId ?? "CLIENT-0001",
        Name = given?.Name ?? "Sample Client Pvt Ltd",
        Email = given?.Email ?? "accounts@client.example",
        Phone = given?.Phone ?? "+919876543210",
        WhatsAppNumber = given?.WhatsAppNumber ?? "+919876543210",
        PreferredLanguage = given?.PreferredLanguage ?? companyLanguage,
        TimeZone = given?.TimeZone ?? "Asia/Kolkata",
    };

    private static List<string> Parameters(MessageTemplate template) =>
        template.ParameterMapping.RootElement.ValueKind == JsonValueKind.Array
            ? template.ParameterMapping.RootElement.EnumerateArray().Select(p => p.GetString() ?? "").ToList()
            : [];

    private static TemplateResponse ToResponse(MessageTemplate t) => new(
        t.Id, t.Key, t.Channel, t.Language, t.Subject, t.Body, t.HtmlBody,
        t.ProviderTemplateName is { } name ? new ProviderTemplateView(name, t.ProviderTemplateLanguage, Parameters(t)) : null,
        t.Version, t.CreatedAt, t.UpdatedAt);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", RegexOptions.CultureInvariant)]
    private static partial Regex TemplateKey();
}
