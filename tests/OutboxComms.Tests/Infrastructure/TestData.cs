using Npgsql;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>Creates the rows a test needs, by plain SQL, each with fresh ids so tests never collide.</summary>
public static class TestData
{
    public static async Task<Guid> CreateCompanyAsync(NpgsqlDataSource db, string name = "Test CS Practice")
    {
        await using var command = db.CreateCommand("INSERT INTO companies (name) VALUES ($1) RETURNING id");
        command.Parameters.AddWithValue(name);
        return (Guid)(await command.ExecuteScalarAsync())!;
    }

    public static async Task<Guid> CreateCustomerAsync(
        NpgsqlDataSource db, Guid companyId, string? email = "client@example.com", string? whatsApp = null, string timeZone = "Asia/Kolkata", string? externalId = null)
    {
        await using var command = db.CreateCommand(
            "INSERT INTO customers (company_id, name, email, whatsapp_number, phone, time_zone, external_id) VALUES ($1, 'Client', $2, $3, $3, $4, $5) RETURNING id");
        command.Parameters.AddWithValue(companyId);
        command.Parameters.AddWithValue((object?)email ?? DBNull.Value);
        command.Parameters.AddWithValue((object?)whatsApp ?? DBNull.Value);
        command.Parameters.AddWithValue(timeZone);
        command.Parameters.AddWithValue((object?)externalId ?? DBNull.Value);
        return (Guid)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>An EMAIL, a WHATSAPP and an SMS template for each key, so that any channel can render it.</summary>
    public static async Task CreateTemplatesAsync(NpgsqlDataSource db, Guid companyId, params string[] keys)
    {
        await using var command = db.CreateCommand("""
            INSERT INTO message_templates (company_id, key, channel, subject, body)
            SELECT $1, key, channel, CASE channel WHEN 'EMAIL' THEN 'Reminder' END, 'Dear {{ customer.name }}'
            FROM unnest($2::text[]) AS key CROSS JOIN unnest(ARRAY['EMAIL', 'WHATSAPP', 'SMS']) AS channel
            """);
        command.Parameters.AddWithValue(companyId);
        command.Parameters.AddWithValue(keys);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task<T> ScalarAsync<T>(NpgsqlDataSource db, string sql, params object[] parameters)
    {
        await using var command = db.CreateCommand(sql);
        foreach (var p in parameters)
        {
            command.Parameters.AddWithValue(p);
        }
        return (T)(await command.ExecuteScalarAsync())!;
    }
}

/// <summary>Outbox rows and company setup for dispatch tests.</summary>
public static class Outbox
{
    /// <summary>Enables email (SMTP), WhatsApp (Cloud API) and SMS (Twilio) for a company, with a rate card.</summary>
    public static async Task ConfigureChannelsAsync(NpgsqlDataSource db, Guid companyId, bool email = true, bool whatsApp = true, bool sms = true)
    {
        await using var command = db.CreateCommand("""
            INSERT INTO company_settings (company_id, email_provider, email_enabled, from_email, whatsapp_provider, whatsapp_enabled, sms_provider, sms_enabled,
                                          email_cost, whatsapp_cost, sms_cost, cost_currency)
            VALUES ($1, 'SMTP', $2, 'accounts@practice.example', 'WHATSAPP_BUSINESS_API', $3, 'TWILIO', $4, 0.05, 0.80, 0.25, 'INR')
            """);
        command.Parameters.AddWithValue(companyId);
        command.Parameters.AddWithValue(email);
        command.Parameters.AddWithValue(whatsApp);
        command.Parameters.AddWithValue(sms);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task SetPreferencesAsync(NpgsqlDataSource db, Guid customerId, string assignments)
    {
        await using var batch = db.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand("INSERT INTO communication_preferences (customer_id) VALUES ($1) ON CONFLICT (customer_id) DO NOTHING") { Parameters = { new() { Value = customerId } } });
        batch.BatchCommands.Add(new NpgsqlBatchCommand($"UPDATE communication_preferences SET {assignments} WHERE customer_id = $1") { Parameters = { new() { Value = customerId } } });
        await batch.ExecuteNonQueryAsync();
    }

    public static async Task<long> EnqueueAsync(
        NpgsqlDataSource db, Guid companyId, Guid customerId, string type = "INVOICE", string channel = "EMAIL",
        string? content = "Your invoice is attached.", string? templateKey = null, string templateData = "{}", DateTimeOffset? notBefore = null, int maxRetries = 3)
    {
        await using var command = db.CreateCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, template_key, template_data, next_attempt_at, max_retries)
            VALUES ($1, $2, $3, $4, 'Subject', $5, $6, $7::jsonb, coalesce($8, now()), $9) RETURNING id
            """);
        command.Parameters.AddWithValue(companyId);
        command.Parameters.AddWithValue(customerId);
        command.Parameters.AddWithValue(type);
        command.Parameters.AddWithValue(channel);
        command.Parameters.AddWithValue((object?)content ?? DBNull.Value);
        command.Parameters.AddWithValue((object?)templateKey ?? DBNull.Value);
        command.Parameters.AddWithValue(templateData);
        command.Parameters.Add(new NpgsqlParameter { Value = (object?)notBefore?.ToUniversalTime() ?? DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        command.Parameters.AddWithValue(maxRetries);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    public static async Task<MessageRow> GetAsync(NpgsqlDataSource db, long id)
    {
        await using var command = db.CreateCommand("""
            SELECT status, channel, requested_channel, status_reason, error_message, retry_count, attempt_count, next_attempt_at,
                   provider_name, provider_message_id, sent_at, cost, cost_currency, locked_by, content, subject, template_used
              FROM communication_logs WHERE id = $1
            """);
        command.Parameters.AddWithValue(id);
        await using var reader = await command.ExecuteReaderAsync();
        if (!await reader.ReadAsync())
        {
            throw new InvalidOperationException($"message {id} not found");
        }
        return new MessageRow(
            reader.GetString(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2),
            reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4),
            reader.GetInt32(5), reader.GetInt32(6), reader.GetFieldValue<DateTimeOffset>(7),
            reader.IsDBNull(8) ? null : reader.GetString(8), reader.IsDBNull(9) ? null : reader.GetString(9),
            reader.IsDBNull(10) ? null : reader.GetFieldValue<DateTimeOffset>(10),
            reader.IsDBNull(11) ? null : reader.GetDecimal(11), reader.IsDBNull(12) ? null : reader.GetString(12),
            reader.IsDBNull(13) ? null : reader.GetString(13), reader.IsDBNull(14) ? null : reader.GetString(14),
            reader.IsDBNull(15) ? null : reader.GetString(15), reader.IsDBNull(16) ? null : reader.GetString(16));
    }

    public static async Task<List<(int AttemptNo, string Outcome, DateTimeOffset At, string? Error)>> AttemptsAsync(NpgsqlDataSource db, long id)
    {
        var attempts = new List<(int, string, DateTimeOffset, string?)>();
        await using var command = db.CreateCommand("SELECT attempt_no, outcome, attempted_at, error_message FROM communication_attempts WHERE message_id = $1 ORDER BY attempt_no");
        command.Parameters.AddWithValue(id);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            attempts.Add((reader.GetInt32(0), reader.GetString(1), reader.GetFieldValue<DateTimeOffset>(2), reader.IsDBNull(3) ? null : reader.GetString(3)));
        }
        return attempts;
    }
}

public sealed record MessageRow(
    string Status, string Channel, string? RequestedChannel, string? StatusReason, string? ErrorMessage, int RetryCount, int AttemptCount,
    DateTimeOffset NextAttemptAt, string? ProviderName, string? ProviderMessageId, DateTimeOffset? SentAt, decimal? Cost, string? CostCurrency,
    string? LockedBy, string? Content, string? Subject, string? TemplateUsed);
