using Npgsql;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Security;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>A customer as the backlog generator needs it.</summary>
internal readonly record struct Client(Guid CompanyId, Guid CustomerId);

/// <summary>
/// The tenants every scenario sends for: ten CS practices with email (SMTP) and WhatsApp (Cloud
/// API, encrypted token) enabled and a rate card; their templates (Scriban, with a loop over
/// invoice lines; WhatsApp ones mapped to approved templates); and customers who opted in to both
/// channels, half preferring WhatsApp for invoices, in three time zones, each with quiet hours
/// that are not active during the run (six to eight hours from now, their local time), so the
/// policy is evaluated for every message but defers none.
/// </summary>
internal sealed class Practices
{
    public const string WhatsAppPhoneNumberId = "106540352242922";
    private const int CompanyCount = 10;

    private Practices(IReadOnlyList<Guid> companies, IReadOnlyList<Client> clients)
    {
        Companies = companies;
        Clients = clients;
    }

    public IReadOnlyList<Guid> Companies { get; }

    public IReadOnlyList<Client> Clients { get; }

    public static async Task<Practices> SeedAsync(BenchDatabase db, int customers, SecretProtector secrets)
    {
        var companies = new List<Guid>();
        for (var i = 1; i <= CompanyCount; i++)
        {
            var id = await db.ScalarAsync<Guid>("INSERT INTO companies (name) VALUES ($1) RETURNING id", $"Bench CS Practice {i}");
            await db.ExecuteAsync("""
                INSERT INTO company_settings (company_id, email_provider, email_enabled, from_email, from_name,
                                              whatsapp_provider, whatsapp_enabled, whatsapp_api_key_encrypted, whatsapp_phone_id,
                                              email_cost, whatsapp_cost, cost_currency)
                VALUES ($1, 'SMTP', true, 'accounts@practice.example', 'Bench CS Practice', 'WHATSAPP_BUSINESS_API', true, $2, $3, 0.05, 0.80, 'INR')
                """, id, secrets.Protect($"EAAG-bench-token-{i}", new CompanySettings { CompanyId = id }.Slot(nameof(CompanySettings.WhatsAppApiKeyEncrypted))), WhatsAppPhoneNumberId);
            await db.ExecuteAsync(Templates, id);
            companies.Add(id);
        }

        await db.ExecuteAsync("""
            INSERT INTO customers (company_id, external_id, name, email, phone, whatsapp_number, preferred_language, time_zone)
            SELECT c.id, 'CLIENT-' || g, 'Client ' || g || ' Pvt Ltd', 'accounts' || g || '@client.example.in',
                   '+9198' || lpad(g::text, 8, '0'), '+9198' || lpad(g::text, 8, '0'),
                   CASE WHEN g % 7 = 0 THEN 'hi' ELSE 'en' END,
                   (ARRAY['Asia/Kolkata', 'Asia/Kolkata', 'Asia/Kolkata', 'Asia/Dubai', 'Europe/London'])[1 + g % 5]
              FROM generate_series(0, $1 - 1) g
              JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM companies) c ON c.n = g % $2
            """, customers, CompanyCount);
        await db.ExecuteAsync("""
            INSERT INTO communication_preferences (customer_id, email_opt_in, whatsapp_opt_in, invoice_delivery_channel,
                                                   compliance_reminder_channel, payment_reminder_channel, general_updates_channel,
                                                   reminder_frequency, quiet_hours_start, quiet_hours_end)
            SELECT id, true, true,
                   CASE WHEN right(external_id, 1) IN ('1', '3', '5', '7', '9') THEN 'WHATSAPP' ELSE 'EMAIL' END,
                   'EMAIL', 'WHATSAPP', 'EMAIL', 'WEEKLY',
                   ((now() AT TIME ZONE time_zone) + interval '6 hours')::time,
                   ((now() AT TIME ZONE time_zone) + interval '8 hours')::time
              FROM customers
            """);

        var clients = new List<Client>(customers);
        await using (var command = db.DataSource.CreateCommand("SELECT company_id, id FROM customers ORDER BY substr(external_id, 8)::int"))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                clients.Add(new Client(reader.GetGuid(0), reader.GetGuid(1)));
            }
        }
        await db.ExecuteAsync("ANALYZE");
        return new Practices(companies, clients);
    }

    /// <summary>Points every practice's WhatsApp Cloud API at <paramref name="baseUrl"/> (null: Meta's default).</summary>
    public static Task UseWhatsAppEndpointAsync(BenchDatabase db, Uri? baseUrl) =>
        db.ExecuteAsync("UPDATE company_settings SET whatsapp_base_url = $1", (object?)baseUrl?.ToString() ?? DBNull.Value);

    private const string Templates = """
        INSERT INTO message_templates (company_id, key, channel, language, subject, body, html_body, provider_template_name, provider_template_language, parameter_mapping) VALUES
          ($1, 'invoice-ready', 'EMAIL', 'en', 'Invoice {{ number }} from your CS practice',
           'Dear {{ customer.name }},

        Invoice {{ number }} dated {{ date }} for INR {{ amount }} is attached.
        {{ for line in lines }}- {{ line.service }}: INR {{ line.amount }}
        {{ end }}
        Please pay by {{ due_date }}.',
           '<p>Dear {{ customer.name | html.escape }},</p><p>Invoice <b>{{ number }}</b> dated {{ date }} for INR {{ amount }} is attached.</p><ul>{{ for line in lines }}<li>{{ line.service | html.escape }}: INR {{ line.amount }}</li>{{ end }}</ul><p>Please pay by {{ due_date }}.</p>',
           NULL, NULL, '[]'),
          ($1, 'invoice-ready', 'EMAIL', 'hi', 'चालान {{ number }}',
           'प्रिय {{ customer.name }}, चालान {{ number }} (INR {{ amount }}) संलग्न है। कृपया {{ due_date }} तक भुगतान करें।', NULL, NULL, NULL, '[]'),
          ($1, 'invoice-ready', 'WHATSAPP', 'en', NULL,
           'Dear {{ customer.name }}, invoice {{ number }} for INR {{ amount }} is ready. Please pay by {{ due_date }}.', NULL,
           'invoice_ready', 'en', '["{{ customer.name }}", "{{ number }}", "{{ amount }}", "{{ due_date }}"]'),
          ($1, 'payment-due', 'EMAIL', 'en', 'Payment reminder: {{ number }}',
           'Dear {{ customer.name }}, INR {{ amount }} for invoice {{ number }} was due on {{ due_date }}. {{ if days_overdue > 30 }}This is now {{ days_overdue }} days overdue.{{ end }}', NULL, NULL, NULL, '[]'),
          ($1, 'payment-due', 'WHATSAPP', 'en', NULL,
           'Reminder: INR {{ amount }} for invoice {{ number }} was due on {{ due_date }}.', NULL,
           'payment_reminder', 'en', '["{{ customer.name }}", "{{ amount }}", "{{ number }}", "{{ due_date }}"]'),
          ($1, 'monthly-update', 'EMAIL', 'en', '{{ month }} compliance calendar',
           'Dear {{ customer.name }}, your filings this month:{{ for f in filings }}
        - {{ f.form }} due {{ f.due }}{{ end }}', NULL, NULL, NULL, '[]')
        """;
}
