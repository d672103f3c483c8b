using System.Net;
using OutboxComms.Core.Preferences;
using OutboxComms.Tests.Infrastructure;
using static OutboxComms.Tests.Api.MessageTestData;

namespace OutboxComms.Tests.Api;

public sealed class CompanyOffboardingTests(DatabaseFixture db) : ApiTests(db)
{
    [Fact]
    public async Task Deactivating_a_company_revokes_its_keys_switches_its_channels_and_schedules_off_and_cancels_its_pending_work()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var (other, otherKey) = await Api.NewCompanyAsync();
        await TestData.ScalarAsync<int>(Db.DataSource, "UPDATE company_settings SET email_enabled = true, email_provider = 'SMTP', sms_enabled = true, sms_provider = 'TWILIO' WHERE company_id = $1 RETURNING 1", company);
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var pending = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        var sending = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, sending, "locked_by = 'worker-1', locked_until = now() + interval '2 minutes'");
        var sent = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        await SetAsync(Db.DataSource, sent, "status = 'SENT'");
        var othersPending = await Outbox.EnqueueAsync(Db.DataSource, other, await TestData.CreateCustomerAsync(Db.DataSource, other));
        await TestData.ScalarAsync<int>(Db.DataSource, """
            WITH r AS (INSERT INTO reminders (company_id, customer_id, type, reference, due_date, time_zone, due_at, grace_ends_at)
                       VALUES ($1, $2, 'PAYMENT_REMINDER', 'INV-1', current_date + 30, 'Asia/Kolkata', now() + interval '30 days', now() + interval '30 days')
                       RETURNING id),
            s AS (INSERT INTO reminder_steps (reminder_id, position, offset_days, send_at, fire_at, template_key)
                  SELECT id, 1, -7, '10:00', now() + interval '23 days', 'payment' FROM r)
            INSERT INTO company_schedules (company_id, key, cron, type, template_key, audience, next_occurrence_at)
            VALUES ($1, 'monthly-update', '0 10 1 * *', 'GENERAL_UPDATE', 'update', 'ALL_CUSTOMERS', now() + interval '10 days')
            RETURNING 1
            """, company, customer);
        using var admin = Api.As(TestKeys.Admin);
        using var asCompany = Api.As(key);
        Assert.Equal(HttpStatusCode.OK, (await asCompany.SendJsonAsync(HttpMethod.Get, "/v1/settings")).Response.StatusCode);

        var (response, body) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/deactivate");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal((1, 1, 1, 1), (body!["keysRevoked"]!.GetValue<int>(), body["messagesCancelled"]!.GetValue<int>(),
            body["reminderStepsCancelled"]!.GetValue<int>(), body["schedulesDisabled"]!.GetValue<int>()));
        var deactivatedAt = body["deactivatedAt"]!.GetValue<DateTimeOffset>();
        // The key no longer opens anything, at once (the API forgets its cached keys).
        Assert.Equal(HttpStatusCode.Unauthorized, (await asCompany.SendJsonAsync(HttpMethod.Get, "/v1/settings")).Response.StatusCode);
        Assert.Equal(("CANCELLED", "cancelled: the company was deactivated"), ((await Outbox.GetAsync(Db.DataSource, pending)).Status, (await Outbox.GetAsync(Db.DataSource, pending)).StatusReason));
        // Being sent: recorded as the send ends. Settled: as it was. Another company's: untouched.
        Assert.Equal("PENDING", (await Outbox.GetAsync(Db.DataSource, sending)).Status);
        Assert.Equal("SENT", (await Outbox.GetAsync(Db.DataSource, sent)).Status);
        Assert.Equal("PENDING", (await Outbox.GetAsync(Db.DataSource, othersPending)).Status);
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource,
            "SELECT NOT (email_enabled OR whatsapp_enabled OR sms_enabled) FROM company_settings WHERE company_id = $1", company));
        Assert.True(await TestData.ScalarAsync<bool>(Db.DataSource,
            "SELECT NOT enabled AND next_occurrence_at IS NULL FROM company_schedules WHERE company_id = $1", company));
        Assert.Equal("CANCELLED", await TestData.ScalarAsync<string>(Db.DataSource,
            "SELECT s.state FROM reminder_steps s JOIN reminders r ON r.id = s.reminder_id WHERE r.company_id = $1", company));
        Assert.Equal(HttpStatusCode.OK, (await Api.As(otherKey).SendJsonAsync(HttpMethod.Get, "/v1/settings")).Response.StatusCode);
        // No way back in by a new key while deactivated; the company shows when.
        var (newKey, refusal) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/api-keys", new { name = "again" });
        Assert.Equal(HttpStatusCode.Conflict, newKey.StatusCode);
        Assert.Contains("reactivate", refusal!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(deactivatedAt, (await admin.SendJsonAsync(HttpMethod.Get, $"/v1/companies/{company}")).Body!["deactivatedAt"]!.GetValue<DateTimeOffset>());
        // Again: whatever appeared since is cancelled too, and the first deactivation's time stands.
        var late = await Outbox.EnqueueAsync(Db.DataSource, company, customer);
        var (_, again) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/deactivate");
        Assert.Equal((deactivatedAt, 0, 1), (again!["deactivatedAt"]!.GetValue<DateTimeOffset>(), again["keysRevoked"]!.GetValue<int>(), again["messagesCancelled"]!.GetValue<int>()));
        Assert.Equal("CANCELLED", (await Outbox.GetAsync(Db.DataSource, late)).Status);
        // Only the admin offboards.
        Assert.Equal(HttpStatusCode.Forbidden, (await Api.As(otherKey).SendJsonAsync(HttpMethod.Post, $"/v1/companies/{other}/deactivate")).Response.StatusCode);

        var (reactivated, view) = await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/reactivate");

        Assert.Equal(HttpStatusCode.OK, reactivated.StatusCode);
        Assert.Null(view!["deactivatedAt"]);
        Assert.Equal(HttpStatusCode.Created, (await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/api-keys", new { name = "back" })).Response.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{Guid.NewGuid()}/deactivate")).Response.StatusCode);
    }

    [Fact]
    public async Task A_key_another_api_replica_still_caches_cannot_make_a_successor_after_the_deactivation()
    {
        var (company, key) = await Api.NewCompanyAsync();
        await using var replica = new ApiFactory(Db.ConnectionString);
        using var cached = replica.As(key);
        Assert.Equal(HttpStatusCode.OK, (await cached.SendJsonAsync(HttpMethod.Get, "/v1/api-keys")).Response.StatusCode);   // now in that replica's cache
        using var admin = Api.As(TestKeys.Admin);
        Assert.Equal(HttpStatusCode.OK, (await admin.SendJsonAsync(HttpMethod.Post, $"/v1/companies/{company}/deactivate")).Response.StatusCode);

        var (created, problem) = await cached.SendJsonAsync(HttpMethod.Post, "/v1/api-keys", new { name = "successor" });

        Assert.Equal(HttpStatusCode.Conflict, created.StatusCode);
        Assert.Contains("deactivated", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM api_keys WHERE company_id = $1 AND revoked_at IS NULL", company));
    }

    [Fact]
    public async Task The_consent_export_is_every_record_as_they_stood_when_it_began_in_order_whatever_is_recorded_while_it_is_written()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        // Several recorded at the same instant.
        await TestData.ScalarAsync<int>(Db.DataSource, """
            INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by, recorded_at)
            SELECT $1, $2, 'EMAIL', n % 2 = 0, 'api', 'n' || n, '2026-01-01T00:00:00Z'::timestamptz + (n / 3) * interval '1 second'
              FROM generate_series(1, 12003) n
            RETURNING 1
            """, company, customer);
        // While the export is being written, two records are committed: one dated before all the
        // others (an API replica whose clock is behind), one after.
        using var output = new InterruptedWriter(after: 6000, meanwhile: () => TestData.ScalarAsync<int>(Db.DataSource, """
            INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by, recorded_at)
            VALUES ($1, $2, 'SMS', true, 'api', 'early', '2025-01-01T00:00:00Z'), ($1, $2, 'SMS', true, 'api', 'late', '2027-01-01T00:00:00Z')
            RETURNING 1
            """, company, customer));

        Assert.Equal(12003, await ConsentExport.WriteCsvAsync(Db.DataSource, company, output, TestContext.Current.CancellationToken));

        var lines = output.ToString().Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Enumerable.Range(1, 12003).Select(n => "n" + n).Order(StringComparer.Ordinal), lines.Skip(1).Select(l => l.Split(',')[^1]).Order(StringComparer.Ordinal));
        Assert.Equal(lines.Skip(1).Select(l => l.Split(',')[0]).Order(StringComparer.Ordinal), lines.Skip(1).Select(l => l.Split(',')[0]));

        // Through the API: both records now, with the file's length.
        using var client = Api.As(key);
        using var response = await client.GetAsync("/v1/consents/export", TestContext.Current.CancellationToken);
        var body = await response.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);
        Assert.Equal(body.Length, response.Content.Headers.ContentLength);
        Assert.Equal((byte[])[0xEF, 0xBB, 0xBF], body[..3]); // UTF-8's BOM: Excel reads names in any script
        Assert.Equal("attachment; filename=consents.csv; filename*=UTF-8''consents.csv", response.Content.Headers.ContentDisposition!.ToString());
        Assert.Empty(Directory.GetFiles(Path.GetTempPath(), "outboxcomms-consents-*.csv")); // unlinked as soon as it was opened
        var csv = System.Text.Encoding.UTF8.GetString(body).TrimStart('\uFEFF').Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal((12006, "early", "late"), (csv.Length, csv[1].Split(',')[^1], csv[^1].Split(',')[^1]));
    }

    [Fact]
    public async Task A_second_consent_export_of_a_company_while_one_is_being_prepared_is_told_to_come_back()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        await TestData.ScalarAsync<int>(Db.DataSource,
            "INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by) VALUES ($1, $2, 'SMS', true, 'api', 'x') RETURNING 1", company, customer);
        using var client = Api.As(key);
        await using var holder = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var hold = await holder.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var lockTable = new Npgsql.NpgsqlCommand("LOCK TABLE consent_records IN ACCESS EXCLUSIVE MODE", holder, hold))
        {
            await lockTable.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var first = client.GetAsync("/v1/consents/export", TestContext.Current.CancellationToken);
        for (var waited = 0; await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM pg_locks WHERE relation = 'consent_records'::regclass AND NOT granted") == 0; waited++)
        {
            Assert.True(waited < 200, "the first export never reached the consent records");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }

        using var second = await client.GetAsync("/v1/consents/export", TestContext.Current.CancellationToken);
        await hold.CommitAsync(TestContext.Current.CancellationToken);
        using var done = await first;

        Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
        Assert.Equal("60", second.Headers.RetryAfter!.ToString());
        Assert.Equal(HttpStatusCode.OK, done.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/consents/export", TestContext.Current.CancellationToken)).StatusCode);
    }

    /// <summary>Runs <paramref name="meanwhile"/> before writing its <paramref name="after"/>th text.</summary>
    private sealed class InterruptedWriter(int after, Func<Task> meanwhile) : StringWriter(System.Globalization.CultureInfo.InvariantCulture)
    {
        private int writes;

        public override async Task WriteAsync(string? value)
        {
            if (++writes == after)
            {
                await meanwhile();
            }
            await base.WriteAsync(value);
        }
    }

    [Fact]
    public async Task A_company_exports_its_consent_records_as_csv_that_a_spreadsheet_cannot_run_as_formulas()
    {
        var (company, key) = await Api.NewCompanyAsync();
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        await TestData.ScalarAsync<int>(Db.DataSource, """
            WITH c AS (UPDATE customers SET name = '=HYPERLINK("http://x.example","Rao, S.")', external_id = 'CL-7' WHERE id = $2 RETURNING id)
            INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by, recorded_at)
            VALUES ($1, $2, 'WHATSAPP', true, 'import', 'api-key:default', '2026-04-01T05:30:00Z'),
                   ($1, $2, 'WHATSAPP', false, 'webhook', 'twilio', '2026-05-02T06:00:00Z')
            RETURNING 1
            """, company, customer);
        var other = (await Api.NewCompanyAsync()).CompanyId;
        await TestData.ScalarAsync<int>(Db.DataSource,
            "INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by) VALUES ($1, $2, 'SMS', true, 'api', 'x') RETURNING 1",
            other, await TestData.CreateCustomerAsync(Db.DataSource, other));
        using var client = Api.As(key);

        using var response = await client.GetAsync("/v1/consents/export", TestContext.Current.CancellationToken);
        var csv = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/csv", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(
            [
                "recorded_at,customer_id,customer_external_id,customer_name,scope,channel,opted_in,source,recorded_by",
                $"2026-04-01T05:30:00.000000Z,{customer},CL-7,\"'=HYPERLINK(\"\"http://x.example\"\",\"\"Rao, S.\"\")\",CHANNEL,WHATSAPP,true,import,api-key:default",
                $"2026-05-02T06:00:00.000000Z,{customer},CL-7,\"'=HYPERLINK(\"\"http://x.example\"\",\"\"Rao, S.\"\")\",CHANNEL,WHATSAPP,false,webhook,twilio",
            ],
            csv.TrimStart('\uFEFF').Split("\r\n", StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(HttpStatusCode.Forbidden, (await Api.As(TestKeys.Admin).GetAsync("/v1/consents/export", TestContext.Current.CancellationToken)).StatusCode);
    }
}
