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

    [Fact]
    public async Task A_misspelt_query_parameter_is_a_400_naming_it_and_never_widens_a_delete_or_a_listing()
    {
        using var client = await NewCompanyClientAsync();
        foreach (var channel in new[] { "EMAIL", "SMS" })
        {
            Assert.Equal(HttpStatusCode.Created, (await client.SendJsonAsync(HttpMethod.Put, "/v1/templates/invoice", new { channel, subject = channel == "EMAIL" ? "Invoice" : null, body = "Text" })).Response.StatusCode);
        }

        var (deleted, deleteProblem) = await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/invoice?chanel=SMS");
        var (listed, listProblem) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages?customer_id={Guid.NewGuid()}&status=FAILED");
        var (none, noneProblem) = await client.SendJsonAsync(HttpMethod.Get, "/v1/settings?verbose=true");

        Assert.Contains("channel, force, language", ValidationProblemAssert.NamesFields(deleted, deleteProblem, "chanel")["chanel"], StringComparison.Ordinal);
        ValidationProblemAssert.NamesFields(listed, listProblem, "customer_id");
        Assert.Contains("it takes none", ValidationProblemAssert.NamesFields(none, noneProblem, "verbose")["verbose"], StringComparison.Ordinal);
        Assert.Equal(2, (await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/invoice")).Body!.AsArray().Count);
        // The names it does take, in any case, still work.
        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/templates/invoice?Channel=SMS")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Get, "/v1/messages?status=FAILED&limit=5")).Response.StatusCode);
        Assert.Single((await client.SendJsonAsync(HttpMethod.Get, "/v1/templates/invoice")).Body!.AsArray());
    }

    [Fact]
    public async Task An_offset_written_with_an_unencoded_plus_in_a_query_is_read_as_the_offset()
    {
        using var client = await NewCompanyClientAsync();

        // The README's own example, pasted into a URL as it is: the + arrives as a space.
        var (response, report) = await client.SendJsonAsync(HttpMethod.Get, "/v1/analytics?from=2026-04-01T00:00:00+05:30&to=2026-04-30T00:00:00+05:30");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(DateTimeOffset.Parse("2026-03-31T18:30:00Z", System.Globalization.CultureInfo.InvariantCulture), report!["from"]!.GetValue<DateTimeOffset>());
    }
}
