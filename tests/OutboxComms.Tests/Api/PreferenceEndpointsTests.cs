using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

public sealed class PreferenceEndpointsTests(DatabaseFixture db) : ApiTest(db)
{
    [Fact]
    public async Task A_customer_who_never_set_preferences_has_email_on_and_whatsapp_and_sms_off()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-1", "New Client");

        var (response, preferences) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-1/preferences");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(id, preferences!["customerId"]!.GetValue<string>());
        Assert.True(preferences["emailOptIn"]!.GetValue<bool>());
        Assert.False(preferences["whatsAppOptIn"]!.GetValue<bool>());
        Assert.False(preferences["smsOptIn"]!.GetValue<bool>());
        Assert.Equal("EMAIL", preferences["invoiceDeliveryChannel"]!.GetValue<string>());
        Assert.Equal("WEEKLY", preferences["reminderFrequency"]!.GetValue<string>());
        Assert.Null(preferences["quietHours"]);
        Assert.Null(preferences["updatedAt"]);
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task Put_sets_every_field_and_a_later_put_changes_only_what_it_names()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-2", "Client");

        var (put, set) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new
        {
            emailOptIn = true, whatsAppOptIn = true, smsOptIn = true,
            invoiceDeliveryChannel = "BOTH", complianceReminderChannel = "WHATSAPP", paymentReminderChannel = "SMS", generalUpdatesChannel = "EMAIL",
            reminderFrequency = "CUSTOM", reminderCron = "0 9 * * MON,THU", quietHours = new { start = "22:00", end = "09:00" },
        });
        var (later, changed) = await client.SendJsonAsync(HttpMethod.Put, "/v1/customers/CLIENT-2/preferences", new { paymentReminderChannel = "WHATSAPP" });
        var (_, read) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences");

        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        Assert.Equal("BOTH", set!["invoiceDeliveryChannel"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, later.StatusCode);
        foreach (var preferences in new[] { changed!, read! })
        {
            Assert.True(preferences["whatsAppOptIn"]!.GetValue<bool>());
            Assert.True(preferences["smsOptIn"]!.GetValue<bool>());
            Assert.Equal("BOTH", preferences["invoiceDeliveryChannel"]!.GetValue<string>());
            Assert.Equal("WHATSAPP", preferences["complianceReminderChannel"]!.GetValue<string>());
            Assert.Equal("WHATSAPP", preferences["paymentReminderChannel"]!.GetValue<string>());
            Assert.Equal("EMAIL", preferences["generalUpdatesChannel"]!.GetValue<string>());
            Assert.Equal("CUSTOM", preferences["reminderFrequency"]!.GetValue<string>());
            Assert.Equal("0 9 * * MON,THU", preferences["reminderCron"]!.GetValue<string>());
            Assert.Equal("22:00", preferences["quietHours"]!["start"]!.GetValue<string>());
            Assert.Equal("09:00", preferences["quietHours"]!["end"]!.GetValue<string>());
            Assert.NotNull(preferences["updatedAt"]);
        }
        Assert.Equal("22:00:00", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT quiet_hours_start::text FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));

        // A new non-custom frequency drops the custom cron; quietHours: null clears the window.
        var (_, weekly) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { reminderFrequency = "MONTHLY", quietHours = (object?)null });
        Assert.Equal("MONTHLY", weekly!["reminderFrequency"]!.GetValue<string>());
        Assert.Null(weekly["reminderCron"]);
        Assert.Null(weekly["quietHours"]);
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource, "SELECT quiet_hours_start IS NULL AND quiet_hours_end IS NULL FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task Each_opt_in_or_opt_out_change_is_recorded_with_who_when_and_the_evidence_and_unchanged_flags_record_nothing()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var clock = new FakeTimeProvider(new DateTimeOffset(2025, 3, 14, 10, 30, 0, TimeSpan.Zero));
        await using var timed = Api.WithWebHostBuilder(b => b.ConfigureTestServices(s => s.AddSingleton<TimeProvider>(clock)));
        using var client = timed.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var id = await CreateCustomerAsync(client, "CLIENT-3", "Consenting Client");

        // The first statement of preferences records each opt-in it states, email's too though it is on
        // by default (the engagement letter is the evidence); later PUTs record only changes.
        await PutAsync(client, id, new { emailOptIn = true, whatsAppOptIn = true, consentSource = "signed engagement letter" });
        clock.Advance(TimeSpan.FromDays(1));
        await PutAsync(client, id, new { emailOptIn = true, whatsAppOptIn = true, consentSource = "repeated" });
        await PutAsync(client, id, new { generalUpdatesChannel = "WHATSAPP" });
        clock.Advance(TimeSpan.FromDays(1));
        await PutAsync(client, "CLIENT-3", new { whatsAppOptIn = false, smsOptIn = true });

        var (response, consents) = await client.SendJsonAsync(HttpMethod.Get, "/v1/customers/CLIENT-3/consents");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var records = consents!.AsArray().Select(c => (
            Channel: c!["channel"]!.GetValue<string>(), OptedIn: c["optedIn"]!.GetValue<bool>(), Source: c["source"]!.GetValue<string>(),
            RecordedBy: c["recordedBy"]!.GetValue<string>(), RecordedAt: c["recordedAt"]!.GetValue<DateTimeOffset>())).ToList();
        var third = new DateTimeOffset(2025, 3, 16, 10, 30, 0, TimeSpan.Zero);
        Assert.Equal(4, records.Count);
        Assert.Equal(new[] { "SMS", "WHATSAPP" }, records.Take(2).Select(r => r.Channel).Order(StringComparer.Ordinal));
        Assert.All(records.Take(2), r => Assert.Equal((third, "api", "api-key:default"), (r.RecordedAt, r.Source, r.RecordedBy)));
        Assert.True(records.Single(r => r.RecordedAt == third && r.Channel == "SMS").OptedIn);
        Assert.False(records.Single(r => r.RecordedAt == third && r.Channel == "WHATSAPP").OptedIn);
        Assert.Equal(new[] { ("EMAIL", true, "signed engagement letter", "api-key:default", new DateTimeOffset(2025, 3, 14, 10, 30, 0, TimeSpan.Zero)),
            ("WHATSAPP", true, "signed engagement letter", "api-key:default", new DateTimeOffset(2025, 3, 14, 10, 30, 0, TimeSpan.Zero)) }, records.Skip(2).OrderBy(r => r.Channel, StringComparer.Ordinal));
        Assert.Equal(4L, await TestData.ScalarAsync<long>(Db.DataSource,
            "SELECT count(*) FROM consent_records WHERE customer_id = $1 AND company_id = $2", Guid.Parse(id), company));
    }

    [Fact]
    public async Task General_updates_stopped_and_resumed_everywhere_or_per_channel_are_recorded_as_general_updates_consent()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-8", "Client");

        await PutAsync(client, id, new { generalUpdatesOptOut = true, consentSource = "asked at the AGM" });
        await PutAsync(client, id, new { generalUpdatesOptOut = false });
        await PutAsync(client, id, new { generalUpdatesOptOutChannels = new[] { "WHATSAPP", "SMS" } });
        var stoppedOnSms = await PutAsync(client, id, new { generalUpdatesOptOutChannels = new[] { "SMS" } });
        var unchanged = await PutAsync(client, id, new { generalUpdatesOptOutChannels = new[] { "SMS" }, generalUpdatesOptOut = false });
        var (_, consents) = await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/consents");

        foreach (var preferences in new[] { stoppedOnSms, unchanged })
        {
            Assert.False(preferences["generalUpdatesOptOut"]!.GetValue<bool>());
            Assert.Equal(["SMS"], preferences["generalUpdatesOptOutChannels"]!.AsArray().Select(c => c!.GetValue<string>()));
        }
        Assert.Equal(
            ["GENERAL_UPDATES/ALL/false/asked at the AGM", "GENERAL_UPDATES/ALL/true/api", "GENERAL_UPDATES/SMS/false/api", "GENERAL_UPDATES/WHATSAPP/false/api", "GENERAL_UPDATES/WHATSAPP/true/api"],
            consents!.AsArray().Select(c => $"{c!["scope"]}/{c["channel"]?.GetValue<string>() ?? "ALL"}/{c["optedIn"]}/{c["source"]}").Order(StringComparer.Ordinal));
        // Consent to the channels themselves is another matter, and unchanged.
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1 AND scope = 'CHANNEL'", Guid.Parse(id)));
        Assert.Equal("{SMS}", await TestData.ScalarAsync<string>(Db.DataSource, "SELECT general_updates_opt_out_channels::text FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task General_updates_opt_out_channels_name_email_whatsapp_or_sms_once_each()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-9", "Client");
        var path = $"/v1/customers/{id}/preferences";

        foreach (var channels in new[] { new[] { "FAX" }, ["BOTH"], ["EMAIL", "email"] })
        {
            var (response, body) = await client.SendJsonAsync(HttpMethod.Put, path, new { generalUpdatesOptOutChannels = channels });
            Assert.Contains(channels[^1], ValidationProblemAssert.NamesFields(response, body, "generalUpdatesOptOutChannels")["generalUpdatesOptOutChannels"], StringComparison.Ordinal);
        }
        // A long list is one error, not one per entry; a body past the endpoint's 64 KB is refused whole.
        var (many, manyBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { generalUpdatesOptOutChannels = Enumerable.Repeat("EMAIL", 1000).ToArray() });
        Assert.Equal("generalUpdatesOptOutChannels lists each of EMAIL, WHATSAPP and SMS at most once (1000 entries given).",
            ValidationProblemAssert.NamesFields(many, manyBody, "generalUpdatesOptOutChannels")["generalUpdatesOptOutChannels"]);
        var (huge, _) = await client.SendJsonAsync(HttpMethod.Put, path, new { generalUpdatesOptOutChannels = Enumerable.Repeat("EMAIL", 20_000).ToArray() });
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.StatusCode);
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task If_match_makes_a_put_replace_only_the_preferences_it_read()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-10", "Client");
        var path = $"/v1/customers/{id}/preferences";
        var (read, _) = await client.SendJsonAsync(HttpMethod.Get, path);
        var defaults = read.Headers.ETag!.Tag;
        var (first, _) = await PutIfMatchAsync(defaults, new { whatsAppOptIn = true });
        var afterFirst = first.Headers.ETag!.Tag;

        // Meanwhile the user stopped promotions in WhatsApp (as ProviderOptOuts records it).
        await TestData.ScalarAsync<int>(Db.DataSource,
            "UPDATE communication_preferences SET general_updates_opt_out_channels = '{WHATSAPP}', updated_at = now() WHERE customer_id = $1 RETURNING 1", Guid.Parse(id));
        var (stale, staleBody) = await PutIfMatchAsync(afterFirst, new { generalUpdatesOptOutChannels = Array.Empty<string>() });
        var (again, _) = await client.SendJsonAsync(HttpMethod.Get, path);
        var (fresh, freshBody) = await PutIfMatchAsync(again.Headers.ETag!.Tag, new { generalUpdatesOptOutChannels = Array.Empty<string>() });

        Assert.Equal("\"0\"", defaults);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.NotEqual(defaults, afterFirst);
        Assert.Equal(HttpStatusCode.PreconditionFailed, stale.StatusCode);
        Assert.Equal(412, staleBody!["status"]!.GetValue<int>());
        Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);
        Assert.Empty(freshBody!["generalUpdatesOptOutChannels"]!.AsArray());
        Assert.Equal(1L, await TestData.ScalarAsync<long>(Db.DataSource,
            "SELECT count(*) FROM consent_records WHERE customer_id = $1 AND scope = 'GENERAL_UPDATES'", Guid.Parse(id)));   // only the fresh PUT's resume

        Task<(HttpResponseMessage Response, JsonNode? Body)> PutIfMatchAsync(string tag, object body) =>
            client.SendJsonAsync(HttpMethod.Put, path, body, h => h.IfMatch.Add(new EntityTagHeaderValue(tag)));
    }

    [Fact]
    public async Task A_put_that_changes_nothing_keeps_the_version_so_another_clients_if_match_still_holds()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-11", "Client");
        var path = $"/v1/customers/{id}/preferences";
        var (set, setBody) = await client.SendJsonAsync(HttpMethod.Put, path, new
        {
            whatsAppOptIn = true, complianceReminderChannel = "WHATSAPP", generalUpdatesOptOutChannels = new[] { "SMS" }, quietHours = new { start = "21:00", end = "08:00" },
        });
        var version = set.Headers.ETag!.Tag;

        // WhatsApp's own stop is appended to the stored list (ProviderOptOuts), after SMS.
        await TestData.ScalarAsync<int>(Db.DataSource,
            "UPDATE communication_preferences SET general_updates_opt_out_channels = '{SMS,WHATSAPP}' WHERE customer_id = $1 RETURNING 1", Guid.Parse(id));
        (set, setBody) = await client.SendJsonAsync(HttpMethod.Get, path);
        version = set.Headers.ETag!.Tag;

        // A retry of the same PUT, and a client sending back every field it read.
        var (retry, _) = await client.SendJsonAsync(HttpMethod.Put, path, new { whatsAppOptIn = true, complianceReminderChannel = "WHATSAPP" });
        var (echo, echoBody) = await client.SendJsonAsync(HttpMethod.Put, path, setBody!.ToJsonString());
        var (other, _) = await client.SendJsonAsync(HttpMethod.Put, path, new { smsOptIn = true }, h => h.IfMatch.Add(new EntityTagHeaderValue(version)));

        Assert.Equal((HttpStatusCode.OK, version), (retry.StatusCode, retry.Headers.ETag!.Tag));
        Assert.Equal((HttpStatusCode.OK, version), (echo.StatusCode, echo.Headers.ETag!.Tag));
        Assert.Equal(setBody["updatedAt"]!.GetValue<DateTimeOffset>(), echoBody!["updatedAt"]!.GetValue<DateTimeOffset>());
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        Assert.NotEqual(version, other.Headers.ETag!.Tag);   // a real change still moves it
    }

    [Fact]
    public async Task A_channels_first_stated_opt_in_is_recorded_even_when_it_matches_the_default_and_only_once()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-FIRST", "First Statement Client");
        var path = $"/v1/customers/{id}/preferences";

        await client.SendJsonAsync(HttpMethod.Put, path, new { whatsAppOptIn = true, consentSource = "website form" });
        // Email was on by default all along; stated now, on a signed letter, it is the consent given.
        await client.SendJsonAsync(HttpMethod.Put, path, new { emailOptIn = true, consentSource = "signed engagement letter" });
        await client.SendJsonAsync(HttpMethod.Put, path, new { emailOptIn = true, whatsAppOptIn = true, consentSource = "repeated" });

        Assert.Equal("WHATSAPP:True:website form,EMAIL:True:signed engagement letter", await TestData.ScalarAsync<string>(Db.DataSource,
            "SELECT string_agg(channel || ':' || CASE WHEN opted_in THEN 'True' ELSE 'False' END || ':' || source, ',' ORDER BY recorded_at, id) FROM consent_records WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task Concurrent_identical_opt_ins_record_the_consent_once()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-4", "Busy Client");

        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ =>
            client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { whatsAppOptIn = true, consentSource = "website form" })));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.Response.StatusCode));
        Assert.Equal(1L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1", Guid.Parse(id)));
        Assert.Equal(1L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task A_custom_frequency_needs_a_valid_cron_and_a_cron_needs_custom()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-5", "Client");
        var path = $"/v1/customers/{id}/preferences";

        var (missing, missingBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "CUSTOM" });
        var (invalid, invalidBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "CUSTOM", reminderCron = "every monday" });
        var (notCustom, notCustomBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "WEEKLY", reminderCron = "0 9 * * MON" });
        var (unknown, unknownBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "HOURLY" });
        var (never, neverBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "CUSTOM", reminderCron = "0 0 31 2,4 *" });
        var (valid, validBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "CUSTOM", reminderCron = "0 0 9 1,15 * *" });

        Assert.Contains("required", ValidationProblemAssert.NamesFields(missing, missingBody, "reminderCron")["reminderCron"], StringComparison.Ordinal);
        Assert.Contains("not a valid cron", ValidationProblemAssert.NamesFields(invalid, invalidBody, "reminderCron")["reminderCron"], StringComparison.Ordinal);
        ValidationProblemAssert.NamesFields(notCustom, notCustomBody, "reminderCron");
        Assert.Contains("DAILY, WEEKLY, MONTHLY, CUSTOM", ValidationProblemAssert.NamesFields(unknown, unknownBody, "reminderFrequency")["reminderFrequency"], StringComparison.Ordinal);
        // 31 February and 31 April never come: the frequency limit would never apply.
        Assert.Contains("never fires", ValidationProblemAssert.NamesFields(never, neverBody, "reminderCron")["reminderCron"], StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, valid.StatusCode);
        Assert.Equal("0 0 9 1,15 * *", validBody!["reminderCron"]!.GetValue<string>());
        // With CUSTOM stored, an omitted cron keeps the stored one.
        var (_, kept) = await client.SendJsonAsync(HttpMethod.Put, path, new { reminderFrequency = "CUSTOM" });
        Assert.Equal("0 0 9 1,15 * *", kept!["reminderCron"]!.GetValue<string>());
    }

    [Fact]
    public async Task Quiet_hours_are_HH_mm_both_or_neither_and_channels_are_checked_with_each_field_named()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-6", "Client");
        var path = $"/v1/customers/{id}/preferences";

        var (onlyStart, onlyStartBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { quietHours = new { start = "22:00" } });
        var (badTimes, badTimesBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { quietHours = new { start = "25:00", end = "9am" } });
        var (same, sameBody) = await client.SendJsonAsync(HttpMethod.Put, path, new { quietHours = new { start = "09:00", end = "09:00" } });
        var (channels, channelsBody) = await client.SendJsonAsync(HttpMethod.Put, path, new
        {
            invoiceDeliveryChannel = "FAX", complianceReminderChannel = "PREFERRED", paymentReminderChannel = "VOICE", generalUpdatesChannel = "whatsapp", consentSource = " ",
        });

        Assert.Contains("both or neither", ValidationProblemAssert.NamesFields(onlyStart, onlyStartBody, "quietHours.end")["quietHours.end"], StringComparison.Ordinal);
        var errors = ValidationProblemAssert.NamesFields(badTimes, badTimesBody, "quietHours.start", "quietHours.end");
        Assert.Contains("HH:mm", errors["quietHours.start"], StringComparison.Ordinal);
        ValidationProblemAssert.NamesFields(same, sameBody, "quietHours.end");
        ValidationProblemAssert.NamesFields(channels, channelsBody, "invoiceDeliveryChannel", "complianceReminderChannel", "paymentReminderChannel", "consentSource");
        Assert.Equal(0L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_preferences WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task Preferences_and_consents_of_a_deleted_customer_are_not_found()
    {
        using var client = await NewCompanyClientAsync();
        var id = await CreateCustomerAsync(client, "CLIENT-7", "Client");
        await PutAsync(client, id, new { whatsAppOptIn = true });
        await client.SendJsonAsync(HttpMethod.Delete, $"/v1/customers/{id}");

        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", new { smsOptIn = true })).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/consents")).Response.StatusCode);
        // The evidence itself is kept.
        Assert.Equal(1L, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM consent_records WHERE customer_id = $1", Guid.Parse(id)));
    }

    [Fact]
    public async Task Another_company_cannot_read_or_change_preferences_or_read_consents()
    {
        var (_, keyA) = await Api.NewCompanyAsync("Practice A");
        var (_, keyB) = await Api.NewCompanyAsync("Practice B");
        using var a = Api.As(keyA);
        using var b = Api.As(keyB);
        var id = await CreateCustomerAsync(a, "A-CLIENT", "A's client");
        await PutAsync(a, id, new { whatsAppOptIn = true, quietHours = new { start = "21:00", end = "08:00" } });
        var before = (await a.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences")).Body!.ToJsonString();

        foreach (var address in new[] { id, "A-CLIENT" })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{address}/preferences")).Response.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{address}/preferences", new { whatsAppOptIn = false, smsOptIn = true })).Response.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await b.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{address}/consents")).Response.StatusCode);
        }

        Assert.Equal(before, (await a.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/preferences")).Body!.ToJsonString());
        Assert.Single((await a.SendJsonAsync(HttpMethod.Get, $"/v1/customers/{id}/consents")).Body!.AsArray());
    }

    private static async Task<JsonNode> PutAsync(HttpClient client, string id, object body)
    {
        var (response, preferences) = await client.SendJsonAsync(HttpMethod.Put, $"/v1/customers/{id}/preferences", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return preferences!;
    }
}
