using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>Helpers for API tests: a company of one's own, authenticated clients, JSON in and out.</summary>
public static class ApiClient
{
    public static HttpClient As(this ApiFactory api, string key)
    {
        var client = api.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    /// <summary>Creates a company with the admin key; returns its id and first API key.</summary>
    public static async Task<(Guid CompanyId, string Key)> NewCompanyAsync(this ApiFactory api, string name = "Rao & Associates, Company Secretaries")
    {
        using var admin = api.As(TestKeys.Admin);
        using var response = await admin.PostAsJsonAsync("/v1/companies", new { name });
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"creating a company answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        }
        var body = await response.Content.ReadFromJsonAsync<JsonObject>();
        return (Guid.Parse(body!["company"]!["id"]!.GetValue<string>()), body["apiKey"]!["key"]!.GetValue<string>());
    }

    /// <summary>Sends JSON and reads the JSON answer; <paramref name="headers"/> may add request headers (e.g. If-Match).</summary>
    public static async Task<(HttpResponseMessage Response, JsonNode? Body)> SendJsonAsync(
        this HttpClient client, HttpMethod method, string path, object? body = null, Action<HttpRequestHeaders>? headers = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = body is string raw ? new StringContent(raw, System.Text.Encoding.UTF8, "application/json") : JsonContent.Create(body);
        }
        headers?.Invoke(request.Headers);
        var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        JsonNode? json = null;
        if (text.Length > 0)
        {
            try
            {
                json = JsonNode.Parse(text);
            }
            catch (JsonException)
            {
                json = JsonValue.Create(text);
            }
        }
        return (response, json);
    }
}
