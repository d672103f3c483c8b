using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

public sealed class CompanyAndSettingsTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    private ApiFactory api = null!;

    public ValueTask InitializeAsync()
    {
        api = new ApiFactory(db.ConnectionString);
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync() => api.DisposeAsync();

    [Fact]
    public async Task Only_the_admin_key_creates_companies_and_the_first_key_is_shown_once_and_stored_hashed()
    {
        using var anonymous = api.CreateClient();
        var (noKey, _) = await anonymous.SendJsonAsync(HttpMethod.Post, "/v1/companies", new { name = "X" });
        Assert.Equal(HttpStatusCode.Unauthorized, noKey.StatusCode);

        var (company, key) = await api.NewCompanyAsync();
        using var asCompany = api.As(key);
        var (companyKeyCannot, _) = await asCompany.SendJsonAsync(HttpMethod.Post, "/v1/companies", new { name = "Y" });
        Assert.Equal(HttpStatusCode.Forbidden, companyKeyCannot.StatusCode);

        Assert.StartsWith("oc_live_", key, StringComparison.Ordinal);
        var stored = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT key_hash FROM api_keys WHERE company_id = $1", company);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)), stored);
        var (list, keys) = await asCompany.SendJsonAsync(HttpMethod.Get, "/v1/api-keys");
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        Assert.DoesNotContain(key, keys!.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_location_of_a_created_company_or_key_answers_it_to_its_creator()
    {
        using var admin = api.As(TestKeys.Admin);
        var (created, body) = await admin.SendJsonAsync(HttpMethod.Post, "/v1/companies", new { name = "Iyer Associates" });
        var (company, shown) = await admin.SendJsonAsync(HttpMethod.Get, created.Headers.Location!.OriginalString);
        using var asCompany = api.As(body!["apiKey"]!["key"]!.GetValue<string>());
        var (keyCreated, newKey) = await asCompany.SendJsonAsync(HttpMethod.Post, "/v1/api-keys", new { name = "billing-app" });
        var (key, keyShown) = await asCompany.SendJsonAsync(HttpMethod.Get, keyCreated.Headers.Location!.OriginalString);
        var (_, otherKey) = await api.NewCompanyAsync();
        using var asOther = api.As(otherKey);

        Assert.Equal((HttpStatusCode.OK, "Iyer Associates"), (company.StatusCode, shown!["name"]!.GetValue<string>()));
        Assert.Equal((HttpStatusCode.OK, "billing-app", newKey!["prefix"]!.GetValue<string>()),
            (key.StatusCode, keyShown!["name"]!.GetValue<string>(), keyShown["prefix"]!.GetValue<string>()));
        Assert.Null(keyShown["key"]);
        Assert.Equal(HttpStatusCode.NotFound, (await asOther.SendJsonAsync(HttpMethod.Get, keyCreated.Headers.Location!.OriginalString)).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.SendJsonAsync(HttpMethod.Get, $"/v1/companies/{Guid.NewGuid()}")).Response.StatusCode);
    }

    [Theory]
    [InlineData("India Standard Time", "en", "timeZone")]   // a Windows id: .NET resolves it, producers in other languages may not
    [InlineData("Asia", "en", "timeZone")]                  // a directory of the zone database, not a zone
    [InlineData("Asia/Kolkata", "Hindi", "defaultLanguage")]
    [InlineData("Asia/Kolkata", "EN", "defaultLanguage")]  // would never match a template stored as "en"
    public async Task A_company_is_created_only_with_an_iana_zone_and_a_language_code(string timeZone, string defaultLanguage, string field)
    {
        using var admin = api.As(TestKeys.Admin);

        var (refused, problem) = await admin.SendJsonAsync(HttpMethod.Post, "/v1/companies", new { name = "Practice", timeZone, defaultLanguage });

        ValidationProblemAssert.NamesFields(refused, problem, field);
    }

    [Fact]
    public async Task A_made_up_key_is_refused_without_being_remembered_and_a_real_one_is_cached()
    {
        var cache = api.Services.GetRequiredService<Microsoft.Extensions.Caching.Memory.IMemoryCache>();
        var (madeUp, _, _) = OutboxComms.Api.Auth.ApiKeys.Create();   // well formed, never stored
        var (_, real) = await api.NewCompanyAsync();

        using var withMadeUp = api.As(madeUp);
        using var withReal = api.As(real);
        Assert.Equal(HttpStatusCode.Unauthorized, (await withMadeUp.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await withReal.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);

        // A flood of made-up tokens must not fill the cache; a real key saves a query per request.
        Assert.False(cache.TryGetValue("apikey:" + Convert.ToHexString(OutboxComms.Api.Auth.ApiKeys.Hash(madeUp)), out _));
        Assert.True(cache.TryGetValue("apikey:" + Convert.ToHexString(OutboxComms.Api.Auth.ApiKeys.Hash(real)), out _));
    }

    [Fact]
    public async Task A_rotated_out_key_stops_working_at_once()
    {
        var (_, first) = await api.NewCompanyAsync();
        using var withFirst = api.As(first);
        var (created, second) = await withFirst.SendJsonAsync(HttpMethod.Post, "/v1/api-keys", new { name = "billing-app" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var withSecond = api.As(second!["key"]!.GetValue<string>());
        var (_, keys) = await withSecond.SendJsonAsync(HttpMethod.Get, "/v1/api-keys");
        var firstId = keys!.AsArray().Single(k => k!["name"]!.GetValue<string>() == "default")!["id"]!.GetValue<string>();
        var (nulName, _) = await withSecond.SendJsonAsync(HttpMethod.Post, "/v1/api-keys", new { name = "crm\u0000" });
        Assert.Equal(HttpStatusCode.BadRequest, nulName.StatusCode);
        // The answer's createdAt is the one stored (microseconds, as PostgreSQL keeps it).
        Assert.Equal(second["createdAt"]!.GetValue<DateTimeOffset>(),
            keys.AsArray().Single(k => k!["name"]!.GetValue<string>() == "billing-app")!["createdAt"]!.GetValue<DateTimeOffset>());

        var (revoked, _) = await withSecond.SendJsonAsync(HttpMethod.Delete, $"/v1/api-keys/{firstId}");

        Assert.Equal(HttpStatusCode.NoContent, revoked.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await withFirst.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await withSecond.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);
    }

    [Fact]
    public async Task A_company_keeps_at_least_one_key_and_the_admin_can_give_it_a_new_one()
    {
        var (company, only) = await api.NewCompanyAsync();
        using var withOnly = api.As(only);
        var (_, keys) = await withOnly.SendJsonAsync(HttpMethod.Get, "/v1/api-keys");
        var onlyId = keys!.AsArray().Single()!["id"]!.GetValue<string>();

        var (refused, problem) = await withOnly.SendJsonAsync(HttpMethod.Delete, $"/v1/api-keys/{onlyId}");
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        Assert.Contains("only active key", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await withOnly.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);

        // A practice that lost its keys: only the admin may give it one.
        var (companyCannot, _) = await withOnly.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/api-keys", new { name = "recovered" });
        Assert.Equal(HttpStatusCode.Forbidden, companyCannot.StatusCode);
        using var admin = api.As(TestKeys.Admin);
        var (unknown, _) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{Guid.NewGuid()}/api-keys", new { name = "recovered" });
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        var (created, recovered) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/api-keys", new { name = "recovered" });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using var withRecovered = api.As(recovered!["key"]!.GetValue<string>());
        var (_, listed) = await withRecovered.SendJsonAsync(HttpMethod.Get, "/v1/api-keys");
        Assert.Equal(["default", "recovered"], listed!.AsArray().Select(k => k!["name"]!.GetValue<string>()));

        // Now the first may go.
        Assert.Equal(HttpStatusCode.NoContent, (await withRecovered.SendJsonAsync(HttpMethod.Delete, $"/v1/api-keys/{onlyId}")).Response.StatusCode);
    }

    [Fact]
    public async Task A_keys_last_use_is_recorded_so_an_operator_can_tell_whether_an_old_key_is_still_in_use()
    {
        var (_, first) = await api.NewCompanyAsync();
        using var withFirst = api.As(first);
        var (_, unused) = await withFirst.SendJsonAsync(HttpMethod.Post, "/v1/api-keys", new { name = "unused" });

        var (_, keys) = await withFirst.SendJsonAsync(HttpMethod.Get, "/v1/api-keys");

        var byName = keys!.AsArray().ToDictionary(k => k!["name"]!.GetValue<string>(), k => k!["lastUsedAt"]);
        Assert.NotNull(byName["default"]);
        Assert.True(DateTimeOffset.UtcNow - byName["default"]!.GetValue<DateTimeOffset>() < TimeSpan.FromMinutes(1), byName["default"]!.ToJsonString());
        Assert.Null(byName["unused"]);
        Assert.NotNull(unused!["key"]);
    }

    [Fact]
    public async Task A_rate_limit_below_one_request_a_second_stops_the_api_at_start()
    {
        await using var misconfigured = new ApiFactory(db.ConnectionString, new Dictionary<string, string?> { ["Api:RateLimitPerSecond"] = "0" });

        var refused = Assert.ThrowsAny<Exception>(() => misconfigured.CreateClient());

        Assert.Contains("Api:RateLimitPerSecond must be at least 1", refused.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_admin_key_short_enough_to_guess_stops_the_api_at_start()
    {
        await using var misconfigured = new ApiFactory(db.ConnectionString, new Dictionary<string, string?> { ["OUTBOXCOMMS_ADMIN_KEY"] = "admin123" });

        var refused = Assert.ThrowsAny<Exception>(() => misconfigured.CreateClient());

        Assert.Contains("OUTBOXCOMMS_ADMIN_KEY must be at least 32 characters (it has 8)", refused.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_metrics_token_reads_metrics_and_nothing_else()
    {
        const string Token = "oc_metrics_test_token_0123456789abcdef";
        await using var scraped = new ApiFactory(db.ConnectionString, new Dictionary<string, string?> { ["OUTBOXCOMMS_METRICS_TOKEN"] = Token });
        using var scraper = scraped.As(Token);
        using var admin = scraped.As(TestKeys.Admin);
        using var anonymous = scraped.CreateClient();

        using var metrics = await scraper.GetAsync(new Uri("/metrics", UriKind.Relative), TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        Assert.Contains("# TYPE", await metrics.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync(new Uri("/metrics", UriKind.Relative), TestContext.Current.CancellationToken)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync(new Uri("/metrics", UriKind.Relative), TestContext.Current.CancellationToken)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await scraper.SendJsonAsync(HttpMethod.Post, "/v1/companies", new { name = "Scraped Practice" })).Response.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await scraper.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);

        await using var weak = new ApiFactory(db.ConnectionString, new Dictionary<string, string?> { ["OUTBOXCOMMS_METRICS_TOKEN"] = "metrics" });
        Assert.Contains("OUTBOXCOMMS_METRICS_TOKEN must be at least 32 characters", Assert.ThrowsAny<Exception>(() => weak.CreateClient()).ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_rate_limit_is_shared_by_all_of_a_companys_keys()
    {
        // Two requests a second, bursts of four. Both keys are made by the admin (whose share is its
        // own), so each would start with a full bucket if the limit were per key: eight of ten would pass.
        await using var limited = new ApiFactory(db.ConnectionString, new Dictionary<string, string?> { ["Api:RateLimitPerSecond"] = "2" });
        var (company, first) = await limited.NewCompanyAsync();
        var (_, otherCompanysKey) = await limited.NewCompanyAsync();
        using var admin = limited.As(TestKeys.Admin);
        var (_, second) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/api-keys", new { name = "second" });
        using var withFirst = limited.As(first);
        using var withSecond = limited.As(second!["key"]!.GetValue<string>());

        var answers = await Task.WhenAll(Enumerable.Range(0, 10).Select(async i =>
            (await (i % 2 == 0 ? withFirst : withSecond).SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode));

        // The company's four tokens, and two more should a second pass meanwhile.
        Assert.InRange(answers.Count(a => a == HttpStatusCode.OK), 4, 6);
        Assert.All(answers, a => Assert.True(a is HttpStatusCode.OK or HttpStatusCode.TooManyRequests, a.ToString()));
        using var other = limited.As(otherCompanysKey);
        Assert.Equal(HttpStatusCode.OK, (await other.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);   // another company's share is its own

        // A caller without a valid key (a guessed one, shaped like ours) is limited too, not answered 401 for ever.
        using var guessing = limited.As("oc_live_" + new string('A', 43));
        var guesses = await Task.WhenAll(Enumerable.Range(0, 10).Select(async _ => (await guessing.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode));
        Assert.Contains(HttpStatusCode.TooManyRequests, guesses);
        Assert.Contains(HttpStatusCode.Unauthorized, guesses);
    }

    [Fact]
    public async Task Provider_secrets_are_encrypted_at_rest_never_returned_and_hidden_from_the_admin()
    {
        var (company, key) = await api.NewCompanyAsync();
        using var client = api.As(key);

        var (put, view) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "SMTP", enabled = true, host = "smtp.practice.example", port = 587, security = "STARTTLS",
            username = "accounts@practice.example", password = "s3cret-smtp-password-1234", fromEmail = "accounts@practice.example", fromName = "Rao & Associates",
        });

        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        Assert.Equal("••••1234", view!["email"]!["password"]!.GetValue<string>());
        Assert.DoesNotContain("s3cret", view.ToJsonString(), StringComparison.Ordinal);
        var ciphertext = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT smtp_password_encrypted FROM company_settings WHERE company_id = $1", company);
        Assert.DoesNotContain("s3cret", System.Text.Encoding.UTF8.GetString(ciphertext), StringComparison.Ordinal);
        Assert.Equal("s3cret-smtp-password-1234", api.Services.GetRequiredService<SecretProtector>().Unprotect(ciphertext, TestKeys.Slot(company, "smtp_password_encrypted")));

        // Omitting the password on a later change keeps it.
        await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "SMTP", enabled = true, host = "smtp2.practice.example", port = 587, username = "accounts@practice.example", fromEmail = "accounts@practice.example",
        });
        Assert.Equal(ciphertext, await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT smtp_password_encrypted FROM company_settings WHERE company_id = $1", company));

        // MessageBird's signing key for SMS delivery reports, the same way.
        var (_, sms) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new
        {
            provider = "MESSAGEBIRD", enabled = true, apiKey = "mb-live-access-key", fromNumber = "OUTBOX", webhookSecret = "mb-signing-key-for-sms-9a7c",
        });
        Assert.Equal("••••9a7c", sms!["sms"]!["webhookSecret"]!.GetValue<string>());
        Assert.Equal("mb-signing-key-for-sms-9a7c", api.Services.GetRequiredService<SecretProtector>().Unprotect(
            await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT sms_webhook_secret_encrypted FROM company_settings WHERE company_id = $1", company), TestKeys.Slot(company, "sms_webhook_secret_encrypted")));

        using var admin = api.As(TestKeys.Admin);
        admin.DefaultRequestHeaders.Add("X-Company-Id", company.ToString());
        Assert.Equal(HttpStatusCode.Forbidden, (await admin.SendJsonAsync(HttpMethod.Get, "/v1/settings")).Response.StatusCode);

        // Copied by SQL into another company's row, the password does not decrypt there: its settings still load and say so.
        var (copier, copierKey) = await api.NewCompanyAsync();
        using var copierClient = api.As(copierKey);
        await copierClient.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SMTP", enabled = true, host = "smtp.practice.example", fromEmail = "accounts@copier.example" });
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource, "UPDATE company_settings SET smtp_password_encrypted = $2 WHERE company_id = $1 RETURNING 1", copier, ciphertext));
        var (copied, copiedView) = await copierClient.SendJsonAsync(HttpMethod.Get, "/v1/settings");
        Assert.Equal(HttpStatusCode.OK, copied.StatusCode);
        Assert.Equal("(cannot be read: enter it again)", copiedView!["email"]!["password"]!.GetValue<string>());
    }

    [Fact]
    public async Task Settings_naming_a_plainly_internal_host_are_refused_unless_the_operator_allows_private_networks()
    {
        await using var strict = new ApiFactory(db.ConnectionString, new Dictionary<string, string?> { ["Providers:AllowPrivateNetworks"] = "false" });
        var (_, key) = await strict.NewCompanyAsync();
        using var client = strict.As(key);

        var (smtp, smtpProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SMTP", enabled = true, host = "169.254.169.254", fromEmail = "billing@practice.example" });
        var (cloud, cloudProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/whatsapp", new
        {
            provider = "WHATSAPP_BUSINESS_API", enabled = true, apiKey = "token", phoneNumberId = "1234567890", baseUrl = "http://localhost:8080/",
        });
        var (publicHost, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SMTP", enabled = true, host = "smtp.practice.example", fromEmail = "billing@practice.example" });

        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.BadRequest, HttpStatusCode.OK), (smtp.StatusCode, cloud.StatusCode, publicHost.StatusCode));
        Assert.Equal("host names an internal address, which a company's SMTP server may not use (Providers:AllowPrivateNetworks).",
            smtpProblem!["errors"]!["host"]![0]!.GetValue<string>());
        Assert.Equal("baseUrl names an internal address, which providers may not reach (Providers:AllowPrivateNetworks).",
            cloudProblem!["errors"]!["baseUrl"]![0]!.GetValue<string>());
    }

    [Fact]
    public async Task Settings_are_validated_per_provider_with_the_field_named()
    {
        var (_, key) = await api.NewCompanyAsync();
        using var client = api.As(key);

        var (smtp, smtpProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SMTP", enabled = true, fromEmail = "not-an-email" });
        var (twilio, twilioProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/whatsapp", new { provider = "TWILIO", enabled = true, apiKey = "token", fromNumber = "+14155238886" });

        Assert.Equal(HttpStatusCode.BadRequest, smtp.StatusCode);
        Assert.Equal("application/problem+json", smtp.Content.Headers.ContentType!.MediaType);
        var smtpErrors = smtpProblem!["errors"]!.AsObject();
        Assert.True(smtpErrors.ContainsKey("host"));
        Assert.True(smtpErrors.ContainsKey("fromEmail"));
        Assert.Equal(HttpStatusCode.BadRequest, twilio.StatusCode);
        Assert.True(twilioProblem!["errors"]!.AsObject().ContainsKey("accountSid"));
        // A PUT of a new key alone once switched the channel off (enabled left out was false): enabled is required.
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "SENDGRID", enabled = true, apiKey = "SG.key", fromEmail = "accounts@practice.example",
        })).Response.StatusCode);
        var (keyOnly, keyOnlyProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SENDGRID", apiKey = "SG.new-key", fromEmail = "accounts@practice.example" });
        ValidationProblemAssert.NamesFields(keyOnly, keyOnlyProblem, "enabled");
        Assert.True((await client.SendJsonAsync(HttpMethod.Get, "/v1/settings")).Body!["email"]!["enabled"]!.GetValue<bool>());

        // The price per message is numeric(12, 6): a million would not fit the column.
        var (cost, costProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new { provider = "TWILIO", enabled = false, cost = 1_000_000m });
        Assert.Equal(HttpStatusCode.BadRequest, cost.StatusCode);
        Assert.True(costProblem!["errors"]!.AsObject().ContainsKey("cost"));
        // More decimals than it keeps would be stored rounded without a word.
        var (fine, fineProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new { provider = "TWILIO", enabled = false, cost = 0.1234567m });
        Assert.Equal(HttpStatusCode.BadRequest, fine.StatusCode);
        Assert.Equal("cost has at most 6 decimals (it would be stored rounded).", fineProblem!["errors"]!["cost"]![0]!.GetValue<string>());
        // The SMTP port is stored whatever the provider (for a switch back to SMTP), so it is checked whatever the provider: not a 500 from the column's CHECK.
        var (port, portProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "SENDGRID", enabled = true, apiKey = "SG.key", fromEmail = "accounts@practice.example", port = 0,
        });
        Assert.Equal(HttpStatusCode.BadRequest, port.StatusCode);
        Assert.Equal(["port"], portProblem!["errors"]!.AsObject().Select(e => e.Key));

        // An SES region is part of the endpoint's host name: a typo is refused here, not on every send.
        var (ses, sesProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "AWS_SES", enabled = true, apiKey = "secret-access-key", apiUser = "AKIAIOSFODNN7EXAMPLE", region = "ap south/1", fromEmail = "accounts@practice.example",
        });
        Assert.Equal(HttpStatusCode.BadRequest, ses.StatusCode);
        Assert.Equal(["region"], sesProblem!["errors"]!.AsObject().Select(e => e.Key));
        // Its webhook secret is the SNS topic the notifications come through, checked on every notification.
        var (topic, topicProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "AWS_SES", enabled = true, apiKey = "secret-access-key", apiUser = "AKIAIOSFODNN7EXAMPLE", region = "ap-south-1", fromEmail = "accounts@practice.example",
            webhookSecret = "ses-notifications",
        });
        Assert.Equal(HttpStatusCode.BadRequest, topic.StatusCode);
        Assert.Equal(["webhookSecret"], topicProblem!["errors"]!.AsObject().Select(e => e.Key));
        var (mumbai, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new
        {
            provider = "AWS_SES", enabled = true, apiKey = "secret-access-key", apiUser = "AKIAIOSFODNN7EXAMPLE", region = "ap-south-1", fromEmail = "accounts@practice.example",
            webhookSecret = "arn:aws:sns:ap-south-1:123456789012:ses-notifications",
        });
        Assert.Equal(HttpStatusCode.OK, mumbai.StatusCode);

        // One currency for the whole rate card: set from the SMS settings it would relabel email's INR price as USD.
        await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "SMTP", enabled = true, host = "smtp.practice.example", fromEmail = "accounts@practice.example", cost = 0.25m });
        var (usd, usdProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new { provider = "TWILIO", enabled = false, accountSid = "AC123", apiKey = "token", fromNumber = "+14155238886", cost = 0.0079m, costCurrency = "USD" });
        var (inr, inrView) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new { provider = "TWILIO", enabled = false, accountSid = "AC123", apiKey = "token", fromNumber = "+14155238886", cost = 0.65m });
        Assert.Equal(["costCurrency"], usdProblem!["errors"]!.AsObject().Select(e => e.Key));
        Assert.StartsWith("costCurrency is the company's, for every channel's cost, and EMAIL costs are set in INR", usdProblem["errors"]!["costCurrency"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal((HttpStatusCode.BadRequest, HttpStatusCode.OK, "INR"), (usd.StatusCode, inr.StatusCode, inrView!["costCurrency"]!.GetValue<string>()));
    }

    [Fact]
    public async Task A_currency_change_waits_for_a_cost_being_set_at_the_same_moment_and_is_then_refused()
    {
        var (company, key) = await api.NewCompanyAsync();
        using var client = api.As(key);
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email",
            new { provider = "SMTP", enabled = true, host = "smtp.practice.example", fromEmail = "accounts@practice.example" })).Response.StatusCode);

        // Another request is setting email's price in INR, and has not committed yet…
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var price = new Npgsql.NpgsqlCommand("UPDATE company_settings SET email_cost = 0.25 WHERE company_id = $1", connection, transaction) { Parameters = { new() { Value = company } } })
        {
            Assert.Equal(1, await price.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }
        // …when the SMS settings would make the company's currency USD.
        var usd = client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new { provider = "TWILIO", enabled = false, accountSid = "AC123", apiKey = "token", fromNumber = "+14155238886", cost = 0.0079m, costCurrency = "USD" });
        await Task.Delay(500, TestContext.Current.CancellationToken);
        Assert.False(usd.IsCompleted);   // waiting for the row
        await transaction.CommitAsync(TestContext.Current.CancellationToken);
        var (response, problem) = await usd;

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(["costCurrency"], problem!["errors"]!.AsObject().Select(e => e.Key));
        Assert.Equal("INR/0.250000", await TestData.ScalarAsync<string>(db.DataSource, "SELECT cost_currency || '/' || email_cost FROM company_settings WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_stored_secret_is_kept_only_while_its_destination_stays_so_it_cannot_be_redirected_elsewhere()
    {
        var (_, key) = await api.NewCompanyAsync();
        using var client = api.As(key);
        object Sms(string baseUrl, string? apiKey, bool enabled = true) =>
            new { provider = "TWILIO", enabled, accountSid = "AC0123456789abcdef0123456789abcdef", fromNumber = "MGASSO", apiKey, baseUrl };
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", Sms("https://api.twilio.com/", "auth-token"))).Response.StatusCode);

        // Switching the channel off (nothing else changes) keeps the token without re-entering it…
        var (off, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", Sms("https://api.twilio.com/", null, enabled: false));
        // …pointing it at another server does not: a connection test would send the token there.
        var (moved, movedProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", Sms("https://elsewhere.example/", null));
        var (reentered, _) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", Sms("https://elsewhere.example/", "auth-token"));

        Assert.Equal(HttpStatusCode.OK, off.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, moved.StatusCode);
        Assert.StartsWith("apiKey must be given again when provider, baseUrl or accountSid changes", movedProblem!["errors"]!["apiKey"]![0]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, reentered.StatusCode);

        // SMTP: the password stays with its host.
        object Smtp(string host, string? password) =>
            new { provider = "SMTP", enabled = true, host, port = 587, security = "STARTTLS", username = "accounts", password, fromEmail = "accounts@practice.example" };
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", Smtp("smtp.practice.example", "smtp-password"))).Response.StatusCode);
        var (otherHost, otherHostProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", Smtp("smtp.elsewhere.example", null));
        Assert.Equal(HttpStatusCode.BadRequest, otherHost.StatusCode);
        Assert.True(otherHostProblem!["errors"]!.AsObject().ContainsKey("password"), otherHostProblem.ToJsonString());
        // Moving to an API provider asks for its key only, not for SMTP's password, which it never sends.
        var (toResend, toResendProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", new { provider = "RESEND", enabled = true, apiKey = "re_123", fromEmail = "accounts@practice.example" });
        Assert.True(toResend.StatusCode == HttpStatusCode.OK, toResendProblem?.ToJsonString());
        // Clearing the channel (no provider) sends nothing anywhere: no secret asked for.
        Assert.Equal(HttpStatusCode.OK, (await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/sms", new { enabled = false })).Response.StatusCode);

        // WhatsApp: the phone number id becomes part of the URL, so it is digits only.
        var (url, urlProblem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/whatsapp", new
        {
            provider = "WHATSAPP_BUSINESS_API", enabled = true, apiKey = "EAAG-token", phoneNumberId = "https://elsewhere.example/x",
        });
        Assert.Equal(HttpStatusCode.BadRequest, url.StatusCode);
        Assert.True(urlProblem!["errors"]!.AsObject().ContainsKey("phoneNumberId"), urlProblem.ToJsonString());
    }

    [Fact]
    public async Task Test_connection_answers_in_words_when_the_provider_cannot_be_reached()
    {
        var (_, key) = await api.NewCompanyAsync();
        using var client = api.As(key);
        await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/whatsapp", new
        {
            provider = "WHATSAPP_BUSINESS_API", enabled = false, apiKey = "EAAG-token", phoneNumberId = "106540352242922", baseUrl = "http://127.0.0.1:1/v21.0/",
        });

        var (response, body) = await client.SendJsonAsync(HttpMethod.Post, "/v1/settings/whatsapp/test");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(body!["ok"]!.GetValue<bool>());
        Assert.StartsWith("Could not reach WhatsApp", body["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"provider":"SMTP","enabled":"yes"}""", "enabled")]
    [InlineData("""{"provider":99,"enabled":false}""", "provider")]          // not a provider at all
    [InlineData("""{"provider":2,"enabled":false}""", "provider")]           // a provider by its position in our code
    [InlineData("""{"provider":"99","enabled":false}""", "provider")]
    [InlineData("""{"provider":"SMTP","host":"smtp.example.com","fromEmail":"a@example.com","security":9}""", "security")]
    public async Task A_value_of_the_wrong_type_is_a_400_naming_the_field_not_a_500(string json, string field)
    {
        var (_, key) = await api.NewCompanyAsync();
        using var client = api.As(key);

        var (response, problem) = await client.SendJsonAsync(HttpMethod.Put, "/v1/settings/email", json);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.True(problem!["errors"]!.AsObject().ContainsKey(field), problem.ToJsonString());
    }
}
