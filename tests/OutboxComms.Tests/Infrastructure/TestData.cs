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
