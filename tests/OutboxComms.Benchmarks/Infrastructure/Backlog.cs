using System.Globalization;
using Npgsql;
using NpgsqlTypes;

namespace OutboxComms.Benchmarks.Infrastructure;

/// <summary>Which channels the generated messages use.</summary>
internal enum Mix
{
    /// <summary>Email and WhatsApp, plain content and templates, some PREFERRED (resolved per customer).</summary>
    Mixed,

    /// <summary>Everything on WhatsApp (for the HTTP provider run): free text and approved templates.</summary>
    WhatsAppOnly,
}

/// <summary>One outbox row as a producer would insert it.</summary>
internal sealed record OutboxRow(Guid CompanyId, Guid CustomerId, string Type, string Channel, string? Subject, string? Content, string? TemplateKey, string TemplateData);

/// <summary>
/// Generates outbox rows the way CS practices produce them, deterministically by position:
/// 40 % invoices as plain email, 20 % plain WhatsApp updates, 20 % invoice templates to the
/// customer's preferred channel, 10 % monthly-update email templates, 10 % payment reminders
/// (templates, preferred channel). Reminders go to distinct customers while the backlog has at
/// most ten rows per customer, so the frequency policy is evaluated but defers nothing.
/// </summary>
internal static class Backlog
{
    public const string CopyColumns = "company_id, customer_id, type, channel, subject, content, template_key, template_data, next_attempt_at, created_at, status_reason";

    public static OutboxRow Row(IReadOnlyList<Client> clients, long i, Mix mix)
    {
        var slot = (int)(i % 10);
        var client = slot == 9 ? clients[(int)(i / 10 % clients.Count)] : clients[(int)(i * 7919 % clients.Count)];
        var number = string.Create(CultureInfo.InvariantCulture, $"INV-2026-{i % 1_000_000:000000}");
        var amount = string.Create(CultureInfo.InvariantCulture, $"{5_000 + i % 50 * 850:N2}");
        var invoiceData = $$"""{"number":"{{number}}","date":"2026-04-01","amount":"{{amount}}","due_date":"2026-04-30","lines":[{"service":"ROC annual filing (AOC-4, MGT-7)","amount":"6,000.00"},{"service":"Board meeting minutes","amount":"2,500.00"},{"service":"GST on services","amount":"1,530.00"}]}""";
        var plainInvoice = $"Dear client, your invoice {number} for INR {amount} is attached. Please pay by 30 April 2026.";
        var plainUpdate = "Reminder from your CS practice: DIR-3 KYC is due by 30 September. Reply to this message if your details changed.";
        if (mix == Mix.WhatsAppOnly)
        {
            return slot switch
            {
                < 5 => new OutboxRow(client.CompanyId, client.CustomerId, slot < 3 ? "INVOICE" : "GENERAL_UPDATE", "WHATSAPP", null, slot < 3 ? plainInvoice : plainUpdate, null, "{}"),
                < 9 => new OutboxRow(client.CompanyId, client.CustomerId, "INVOICE", "WHATSAPP", null, null, "invoice-ready", invoiceData),
                _ => new OutboxRow(client.CompanyId, client.CustomerId, "PAYMENT_REMINDER", "WHATSAPP", null, null, "payment-due", ReminderData(number, amount, i)),
            };
        }
        return slot switch
        {
            < 4 => new OutboxRow(client.CompanyId, client.CustomerId, "INVOICE", "EMAIL", $"Invoice {number}", plainInvoice, null, "{}"),
            < 6 => new OutboxRow(client.CompanyId, client.CustomerId, "GENERAL_UPDATE", "WHATSAPP", null, plainUpdate, null, "{}"),
            < 8 => new OutboxRow(client.CompanyId, client.CustomerId, "INVOICE", "PREFERRED", null, null, "invoice-ready", invoiceData),
            8 => new OutboxRow(client.CompanyId, client.CustomerId, "GENERAL_UPDATE", "EMAIL", null, null, "monthly-update",
                """{"month":"April 2026","filings":[{"form":"MGT-7","due":"2026-05-29"},{"form":"AOC-4","due":"2026-04-29"},{"form":"DPT-3","due":"2026-06-30"}]}"""),
            _ => new OutboxRow(client.CompanyId, client.CustomerId, "PAYMENT_REMINDER", "PREFERRED", null, null, "payment-due", ReminderData(number, amount, i)),
        };
    }

    /// <summary>
    /// Fills the outbox with <paramref name="count"/> PENDING rows by binary COPY, created and due
    /// within the last hour; with <paramref name="deferredShare"/> that share is instead deferred
    /// one to nine hours ahead, as quiet hours leave them.
    /// </summary>
    public static async Task FillAsync(BenchDatabase db, IReadOnlyList<Client> clients, long count, Mix mix, double deferredShare = 0, long firstIndex = 0)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await FillAsync(connection, clients, count, mix, deferredShare, firstIndex);
    }

    /// <summary>The same on a connection of the caller's, e.g. inside a transaction it commits when it chooses.</summary>
    public static async Task FillAsync(NpgsqlConnection connection, IReadOnlyList<Client> clients, long count, Mix mix, double deferredShare = 0, long firstIndex = 0)
    {
        var now = DateTimeOffset.UtcNow;
        await using var writer = await connection.BeginBinaryImportAsync($"COPY communication_logs ({CopyColumns}) FROM STDIN (FORMAT BINARY)");
        writer.Timeout = TimeSpan.Zero;
        for (var i = firstIndex; i < firstIndex + count; i++)
        {
            var row = Row(clients, i, mix);
            var created = now.AddSeconds(-3600 + 3600.0 * (i - firstIndex) / count);
            // Spread the deferred rows over every kind of message (a multiplicative hash of the position).
            var deferred = (i * 2_654_435_761L & 0xFFFF) < deferredShare * 0x10000;
            await writer.StartRowAsync();
            await WriteAsync(writer, row);
            await writer.WriteAsync(deferred ? now.AddHours(1 + i % 8).AddMinutes(i % 60) : created, NpgsqlDbType.TimestampTz);
            await writer.WriteAsync(created, NpgsqlDbType.TimestampTz);
            if (deferred)
            {
                await writer.WriteAsync("quiet hours 21:00-09:00 (Asia/Kolkata); deferred until their end", NpgsqlDbType.Text);
            }
            else
            {
                await writer.WriteNullAsync();
            }
        }
        await writer.CompleteAsync();
    }

    /// <summary>The producer-side columns of a row, in <see cref="CopyColumns"/> order.</summary>
    public static async Task WriteAsync(NpgsqlBinaryImporter writer, OutboxRow row)
    {
        await writer.WriteAsync(row.CompanyId, NpgsqlDbType.Uuid);
        await writer.WriteAsync(row.CustomerId, NpgsqlDbType.Uuid);
        await writer.WriteAsync(row.Type, NpgsqlDbType.Text);
        await writer.WriteAsync(row.Channel, NpgsqlDbType.Text);
        await WriteNullableAsync(writer, row.Subject);
        await WriteNullableAsync(writer, row.Content);
        await WriteNullableAsync(writer, row.TemplateKey);
        await writer.WriteAsync(row.TemplateData, NpgsqlDbType.Jsonb);
    }

    /// <summary>
    /// A multi-row insert of producer rows in one statement (<c>INSERT … SELECT FROM unnest</c>),
    /// every other column defaulted: due now, PENDING.
    /// </summary>
    public static NpgsqlCommand UnnestInsert(NpgsqlConnection connection, IReadOnlyList<OutboxRow> rows)
    {
        var command = new NpgsqlCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, template_key, template_data)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid[]> { TypedValue = [.. rows.Select(r => r.CompanyId)] });
        command.Parameters.Add(new NpgsqlParameter<Guid[]> { TypedValue = [.. rows.Select(r => r.CustomerId)] });
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. rows.Select(r => r.Type)] });
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. rows.Select(r => r.Channel)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. rows.Select(r => r.Subject)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. rows.Select(r => r.Content)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. rows.Select(r => r.TemplateKey)] });
        command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb, Value = rows.Select(r => r.TemplateData).ToArray() });
        return command;
    }

    private static string ReminderData(string number, string amount, long i) =>
        string.Create(CultureInfo.InvariantCulture, $$"""{"number":"{{number}}","amount":"{{amount}}","due_date":"2026-03-31","days_overdue":{{i % 60}}}""");

    private static async Task WriteNullableAsync(NpgsqlBinaryImporter writer, string? value)
    {
        if (value is null)
        {
            await writer.WriteNullAsync();
        }
        else
        {
            await writer.WriteAsync(value, NpgsqlDbType.Text);
        }
    }
}
