using System.Net;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Workflows;

public sealed class ScheduleApiTests(DatabaseFixture db) : WorkflowApiTests(db)
{
    private static object WeeklyDigest(string? timeZone = null, string cron = "0 9 * * MON") => new
    {
        cron,
        timeZone,
        type = "COMPLIANCE_REMINDER",
        templateKey = "weekly-digest",
        templateData = new { signature = "Rao & Associates" },
        audience = new { kind = "REMINDERS_DUE", withinDays = 7 },
    };

    [Fact]
    public async Task A_schedule_runs_in_the_companys_zone_and_saving_it_unchanged_keeps_its_next_occurrence()
    {
        var (client, _, _) = await PracticeAsync();

        var (created, body) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/weekly-digest", WeeklyDigest());

        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        // Next Monday 09:00 in Kolkata (this Monday's 09:00 has passed at 11:30).
        Assert.Equal(new DateTimeOffset(2026, 1, 12, 3, 30, 0, TimeSpan.Zero), body!["nextOccurrenceAt"]!.GetValue<DateTimeOffset>());
        Assert.Equal("2026-01-12T09:00:00+05:30", body.Text("nextOccurrenceLocal"));
        Assert.Equal(("Asia/Kolkata", "PREFERRED", "REMINDERS_DUE"), (body.Text("effectiveTimeZone"), body.Text("channel"), body["audience"].Text("kind")));
        Assert.Null(body["timeZone"]);

        Time.Advance(TimeSpan.FromDays(3));
        var (replaced, same) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/weekly-digest", WeeklyDigest());
        Assert.Equal(HttpStatusCode.OK, replaced.StatusCode);
        Assert.Equal(body["nextOccurrenceAt"]!.ToJsonString(), same!["nextOccurrenceAt"]!.ToJsonString());

        var (_, newYork) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/weekly-digest", WeeklyDigest("America/New_York"));
        Assert.Equal(new DateTimeOffset(2026, 1, 12, 14, 0, 0, TimeSpan.Zero), newYork!["nextOccurrenceAt"]!.GetValue<DateTimeOffset>());

        var (_, list) = await client.SendJsonAsync(HttpMethod.Get, "/v1/schedules");
        Assert.Equal("weekly-digest", Assert.Single(list!.AsArray()).Text("key"));
        var (_, one) = await client.SendJsonAsync(HttpMethod.Get, "/v1/schedules/weekly-digest");
        Assert.Empty(one!["recentRuns"]!.AsArray());

        Assert.Equal(HttpStatusCode.NoContent, (await client.SendJsonAsync(HttpMethod.Delete, "/v1/schedules/weekly-digest")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, "/v1/schedules/weekly-digest")).Response.StatusCode);
    }

    [Fact]
    public async Task A_disabled_schedule_has_no_next_occurrence_until_enabled_again()
    {
        var (client, _, _) = await PracticeAsync();

        var (_, disabled) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/monthly", new
        {
            cron = "30 10 1 * *", type = "GENERAL_UPDATE", templateKey = "newsletter", audience = new { kind = "ALL_CUSTOMERS" }, enabled = false,
        });
        Assert.Null(disabled!["nextOccurrenceAt"]);

        var (_, enabled) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/monthly", new
        {
            cron = "30 10 1 * *", type = "GENERAL_UPDATE", templateKey = "newsletter", audience = new { kind = "ALL_CUSTOMERS" },
        });
        Assert.Equal(new DateTimeOffset(2026, 2, 1, 5, 0, 0, TimeSpan.Zero), enabled!["nextOccurrenceAt"]!.GetValue<DateTimeOffset>());
    }

    [Fact]
    public async Task The_same_new_schedule_saved_by_concurrent_requests_is_created_once_and_no_request_gets_a_500()
    {
        var (client, _, _) = await PracticeAsync();

        for (var round = 0; round < 5; round++)
        {
            var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
                (await client.SendJsonAsync(HttpMethod.Put, $"/v1/schedules/race-{round}", WeeklyDigest())).Response.StatusCode));

            Assert.All(answers, a => Assert.True(a is HttpStatusCode.Created or HttpStatusCode.OK or HttpStatusCode.Conflict, $"round {round}: {string.Join(", ", answers)}"));
            Assert.Equal(1, answers.Count(a => a == HttpStatusCode.Created));
        }
    }

    [Fact]
    public async Task An_invalid_cron_expression_or_time_zone_is_answered_400_naming_the_field()
    {
        var (client, _, _) = await PracticeAsync();

        var (badCron, cronProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", WeeklyDigest(cron: "61 9 * * MON"));
        WorkflowApi.AssertFields(badCron, cronProblem, "cron");

        var (badZone, zoneProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", WeeklyDigest(timeZone: "Mars/Olympus_Mons"));
        WorkflowApi.AssertFields(badZone, zoneProblem, "timeZone");

        var (never, neverProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", WeeklyDigest(cron: "0 9 30 2 *"));
        WorkflowApi.AssertFields(never, neverProblem, "cron");

        // Every minute of 9 o'clock (a typo for "0 9 * * MON"), and a six-field expression every 30 seconds: not a digest.
        var (everyMinute, minuteProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", WeeklyDigest(cron: "* 9 * * MON"));
        WorkflowApi.AssertFields(everyMinute, minuteProblem, "cron");
        Assert.Contains("runs more often than once an hour", minuteProblem!["errors"]!["cron"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        var (everyHalfMinute, halfMinuteProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", WeeklyDigest(cron: "*/30 * * * * *"));
        WorkflowApi.AssertFields(everyHalfMinute, halfMinuteProblem, "cron");
        // Bursts on one date, whatever today is: every minute of 10 o'clock on 31 March, twice in 9 o'clock on the 1st, twice in the minute of 9:00 on 1 April.
        foreach (var (burst, field) in new[] { ("* 10 31 3 *", "minute field '*'"), ("0,30 9 1 * *", "minute field '0,30'"), ("0,30 0 9 1 4 *", "second field '0,30'") })
        {
            var (refused, problem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", WeeklyDigest(cron: burst));
            WorkflowApi.AssertFields(refused, problem, "cron");
            Assert.Contains($"runs more often than once an hour (its {field} matches more than one", problem!["errors"]!["cron"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        }
        var (hourly, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/hourly", WeeklyDigest(cron: "0 9-17 * * MON-FRI"));
        Assert.Equal(HttpStatusCode.Created, hourly.StatusCode);
        var (yearly, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/fy-close", WeeklyDigest(cron: "30 10 31 3 *"));
        Assert.Equal(HttpStatusCode.Created, yearly.StatusCode);

        var (rest, restProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/bad key!", new
        {
            cron = "0 9 * * MON", type = "BROCHURE", channel = "PIGEON", templateData = "text", audience = new { kind = "REMINDERS_DUE" },
        });
        WorkflowApi.AssertFields(rest, restProblem, "key", "type", "channel", "templateKey", "templateData", "audience.withinDays");

        var (noAudience, audienceProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/schedules/digest", new { cron = "0 9 * * MON", type = "GENERAL_UPDATE", templateKey = "t" });
        WorkflowApi.AssertFields(noAudience, audienceProblem, "audience");
    }

    [Fact]
    public async Task Another_companys_schedules_are_not_found_and_the_same_key_is_its_own()
    {
        var (clientA, _, _) = await PracticeAsync();
        var (clientB, _, _) = await PracticeAsync();
        await clientA.SendJsonAsync(HttpMethod.Put, "/v1/schedules/weekly-digest", WeeklyDigest());

        Assert.Equal(HttpStatusCode.NotFound, (await clientB.SendJsonAsync(HttpMethod.Get, "/v1/schedules/weekly-digest")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await clientB.SendJsonAsync(HttpMethod.Delete, "/v1/schedules/weekly-digest")).Response.StatusCode);
        Assert.Empty((await clientB.SendJsonAsync(HttpMethod.Get, "/v1/schedules")).Body!.AsArray());

        var (created, _) = await clientB.SendJsonAsync(HttpMethod.Put, "/v1/schedules/weekly-digest", WeeklyDigest("Europe/London"));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var (_, ofA) = await clientA.SendJsonAsync(HttpMethod.Get, "/v1/schedules/weekly-digest");
        Assert.Equal("Asia/Kolkata", ofA.Text("effectiveTimeZone"));
    }
}
