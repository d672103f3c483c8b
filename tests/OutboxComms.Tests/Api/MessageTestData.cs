using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Npgsql;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

/// <summary>Helpers for the messages API tests: requests with headers, templates and outbox rows by SQL.</summary>
internal static class MessageTestData
{
    /// <summary>The admin key acting on one company (ops endpoints).</summary>
    public static HttpClient AsAdminFor(this ApiFactory api, Guid companyId)
    {
        var client = api.As(TestKeys.Admin);
        client.DefaultRequestHeaders.Add("X-Company-Id", companyId.ToString());
        return client;
    }

    public static async Task<(HttpResponseMessage Response, JsonNode? Body)> PostAsync(this HttpClient client, string path, object body, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }
        var response = await client.SendAsync(request, TestContext.Current.CancellationToken);
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        return (response, text.Length > 0 ? JsonNode.Parse(text) : null);
    }

    /// <summary>The JSON field names a validation problem names.</summary>
    public static string[] ErrorFields(JsonNode? problem) => [.. problem!["errors"]!.AsObject().Select(e => e.Key).Order(StringComparer.Ordinal)];

    public static long[] Ids(JsonNode? accepted) => [.. accepted!["messages"]!.AsArray().Select(m => m!["id"]!.GetValue<long>())];

    public static async Task CreateTemplateAsync(NpgsqlDataSource db, Guid companyId, string key, string channel = "EMAIL")
    {
        await using var command = db.CreateCommand("INSERT INTO message_templates (company_id, key, channel, subject, body) VALUES ($1, $2, $3, 'Reminder', 'Dear {{ customer.name }}')");
        command.Parameters.AddWithValue(companyId);
        command.Parameters.AddWithValue(key);
        command.Parameters.AddWithValue(channel);
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>Sets columns of an outbox row: <paramref name="assignments"/> uses $2, $3, ... for <paramref name="values"/> ($1 is the id).</summary>
    public static async Task SetAsync(NpgsqlDataSource db, long id, string assignments, params object?[] values)
    {
        await using var command = db.CreateCommand($"UPDATE communication_logs SET {assignments} WHERE id = $1");
        command.Parameters.AddWithValue(id);
        foreach (var value in values)
        {
            command.Parameters.Add(value is DateTimeOffset instant
                ? new NpgsqlParameter { Value = instant.ToUniversalTime(), NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz }
                : new NpgsqlParameter { Value = value ?? DBNull.Value });
        }
        Assert.Equal(1, await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
    }

    public static Task<long> CountAsync(NpgsqlDataSource db, Guid companyId, string where = "true") =>
        TestData.ScalarAsync<long>(db, $"SELECT count(*) FROM communication_logs WHERE company_id = $1 AND {where}", companyId);
}
