using System.Net;
using OutboxComms.Tests.Infrastructure;
using static OutboxComms.Tests.Api.MessageTestData;

namespace OutboxComms.Tests.Api;

public sealed class ContentRetentionApiTests(DatabaseFixture db) : ApiTests(db)
{
    [Fact]
    public async Task A_company_sets_its_message_content_retention_in_days_or_null_for_ever_and_out_of_range_values_are_named()
    {
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        Assert.Null((await client.SendJsonAsync(HttpMethod.Get, "/v1/settings")).Body!["retention"]!["messageContentDays"]);

        var (set, view) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/retention", new { messageContentDays = 365 });

        Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        Assert.Equal(365, view!["retention"]!["messageContentDays"]!.GetValue<int>());
        Assert.Equal(365, await TestData.ScalarAsync<int>(Db.DataSource, "SELECT content_retention_days FROM company_settings WHERE company_id = $1", company));
        foreach (var days in new[] { 6, 0, -1, 36501 })
        {
            var (refused, problem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/retention", new { messageContentDays = days });
            ValidationProblemAssert.NamesFields(refused, problem, "messageContentDays");
        }
        var (misspelt, misspeltProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/retention", new { contentDays = 30 });
        Assert.Equal(HttpStatusCode.BadRequest, misspelt.StatusCode);
        Assert.Contains("contentDays", misspeltProblem!.ToJsonString(), StringComparison.Ordinal);
        Assert.Equal(365, await TestData.ScalarAsync<int>(Db.DataSource, "SELECT content_retention_days FROM company_settings WHERE company_id = $1", company));

        var (off, offView) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/retention", new { messageContentDays = (int?)null });
        Assert.Equal(HttpStatusCode.OK, off.StatusCode);
        Assert.Null(offView!["retention"]!["messageContentDays"]);
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT content_retention_days IS NULL FROM company_settings WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_failed_message_whose_content_was_cleared_shows_when_and_its_replay_is_refused_saying_why()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var id = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, id, "status = 'FAILED', subject = NULL, content = '', content_redacted_at = '2026-01-05T10:00:00Z'");
        using var client = Api.As(key);

        var (replay, problem) = await client.SendJsonAsync(HttpMethod.Post, $"/v1/messages/{id}/replay");
        var (_, view) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/messages/{id}");

        Assert.Equal(HttpStatusCode.Conflict, replay.StatusCode);
        Assert.Contains("content cleared at 2026-01-05 10:00:00Z", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("FAILED", (await Outbox.GetAsync(Db.DataSource, id)).Status);
        Assert.Equal(new DateTimeOffset(2026, 1, 5, 10, 0, 0, TimeSpan.Zero), view!["contentRedactedAt"]!.GetValue<DateTimeOffset>());
    }
}
