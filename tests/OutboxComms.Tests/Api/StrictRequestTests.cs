using System.Net;
using System.Text.Json.Nodes;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

/// <summary>
/// A field a request does not have is a 400 naming it on every endpoint, not only on messages: a
/// misspelt opt-in, dropped, would record no consent. A GET's answer sent back whole still goes through.
/// </summary>
public sealed class StrictRequestTests(DatabaseFixture db) : ApiTest(db)
{
    [Fact]
    public async Task A_misspelt_preference_is_a_400_naming_it_and_changes_nothing()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CL-STRICT-1", "Mehta Textiles");

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { whatsapp_opt_in = true, consentSource = "signed letter" });

        var errors = ValidationProblemAssert.NamesFields(response, problem, "whatsapp_opt_in");
        Assert.Contains("not a field of this request", errors["whatsapp_opt_in"], StringComparison.Ordinal);
        var (_, preferences) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences");
        Assert.Null(preferences!["updatedAt"]?.GetValue<DateTimeOffset>());
        Assert.Empty((await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/consents")).Body!.AsArray());
    }

    [Fact]
    public async Task A_misspelt_field_of_a_new_customer_or_template_is_named_and_a_wrong_type_too()
    {
        using var client = await NewCompanyClientAsync();

        var (customer, customerProblem) = await client.SendJsonAsync(HttpMethod.Post, "/v1/customers", new { name = "Rao Foods", whatsapp_number = "98765 43210" });
        var (template, templateProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice", new { channel = "EMAIL", subject = "Invoice", body = "Text", html_body = "<p>Text</p>" });
        var (typed, typedProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice", new { channel = "EMAIL", subject = "Invoice", body = 42 });

        ValidationProblemAssert.NamesFields(customer, customerProblem, "whatsapp_number");
        ValidationProblemAssert.NamesFields(template, templateProblem, "html_body");
        Assert.Contains("wrong type", ValidationProblemAssert.NamesFields(typed, typedProblem, "body")["body"], StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/invoice")).Response.StatusCode);
    }

    [Fact]
    public async Task What_a_get_answered_can_be_sent_back_whole()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CL-STRICT-2", "Iyer & Sons");

        var (_, customer) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}");
        customer!["email"] = "accounts@iyer.example";
        var (replaced, _) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}", customer);
        var (_, preferences) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences");
        preferences!["smsOptIn"] = true;
        var (preferred, _) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", preferences);
        Assert.Equal(HttpStatusCode.Created, (await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice", new { channel = "EMAIL", subject = "Invoice", body = "Text" })).Response.StatusCode);
        var (_, templates) = await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/invoice");
        var template = templates!.AsArray()[0]!.DeepClone();
        template["body"] = "New text";
        var (templated, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice", template);

        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK), (replaced.StatusCode, preferred.StatusCode, templated.StatusCode));
        Assert.Equal("accounts@iyer.example", (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}")).Body!["email"]!.GetValue<string>());
        Assert.True((await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences")).Body!["smsOptIn"]!.GetValue<bool>());
        Assert.Equal(2, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/invoice")).Body!.AsArray()[0]!["version"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_missing_body_is_named_body()
    {
        using var client = await NewCompanyClientAsync();
        using var empty = new StringContent("", System.Text.Encoding.UTF8, "application/json");

        using var response = await client.PostAsync("/v1/customers", empty, TestContext.Current.CancellationToken);

        var problem = JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        ValidationProblemAssert.NamesFields(response, problem, "body");
    }
}
