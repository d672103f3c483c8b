using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Security;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Tests.Webhooks;

public sealed class WebhookEventBackfillTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Reports_stored_whole_before_minimisation_lose_the_people_in_them_and_numbers_in_their_keys_and_later_rows_are_left()
    {
        var keys = new WebhookEventKeys(new SecretProtector(Options.Create(new EncryptionKeyOptions { Keys = SecretProtector.NewKey("k1") })));
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        // As stored before 5f1bd20; then 600 minimised ones (more than a batch); then a report
        // redelivered after keys were hashed; then one stored after the migration.
        var first = await TestData.ScalarAsync<long>(db.DataSource, """
            WITH raw AS (
                INSERT INTO webhook_events (company_id, provider, event_key, status, outcome, payload, error) VALUES
                ($1, 'sendgrid', 'sg-1', 'BOUNCED', 'APPLIED', '[{"email":"meera.iyer@example.com","event":"bounce","sg_event_id":"sg-1","reason":"550 meera.iyer@example.com unknown"}]', '550 <meera.iyer@example.com>: no such user'),
                ($1, 'whatsapp', 'marketing:919876543210:stop:1764000000', 'MARKETING_STOPPED', 'APPLIED', '{"wa_id":"919876543210","category":"marketing_messages","value":"stop","timestamp":1764000000}', NULL),
                ($1, 'messagebird-sms', 'mb-1:919845012345:delivered', 'DELIVERED', 'APPLIED', '?id=mb-1&recipient=919845012345&status=delivered', NULL),
                ($1, 'whatsapp', 'marketing:919811111111:stop:1764000100', 'MARKETING_STOPPED', 'APPLIED', '{"wa_id":"919811111111","value":"stop"}', NULL),
                ($1, 'messagebird-sms', 'mb-2:919822222222:delivered', 'DELIVERED', 'UNKNOWN_MESSAGE', '?id=mb-2&status=delivered', NULL)
                RETURNING id)
            SELECT min(id) FROM raw
            """, company);
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH fill AS (INSERT INTO webhook_events (company_id, provider, event_key, status, outcome, payload)
                SELECT $1, 'resend', 'kept-' || n, 'DELIVERED', 'APPLIED', '{"type":"email.delivered","id":"' || n || '"}' FROM generate_series(1, 600) n RETURNING 1),
            again AS (INSERT INTO webhook_events (company_id, provider, event_key, status, outcome, payload)
                VALUES ($1, 'whatsapp', 'marketing:' || $2 || ':stop:1764000100', 'MARKETING_STOPPED', 'STALE', '{"value":"stop"}'),
                       ($1, 'messagebird-sms', 'mb-2:' || $3 || ':delivered', 'DELIVERED', 'APPLIED', '?id=mb-2&status=delivered') RETURNING 1)
            SELECT (SELECT count(*) FROM fill)::int + (SELECT count(*) FROM again)::int
            """, company, keys.Part("919811111111"), keys.Part("919822222222"));
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH mark AS (UPDATE webhook_event_backfill SET upto_id = (SELECT max(id) FROM webhook_events), done_id = $1 - 1, finished_at = NULL,
                                 walk_until = now() - interval '1 hour' RETURNING 1)
            INSERT INTO webhook_events (company_id, provider, event_key, status, outcome, payload)
            SELECT $2, 'sendgrid', 'after', 'DELIVERED', 'APPLIED', '[{"email":"later@example.com","event":"delivered"}]' FROM mark RETURNING 1
            """, first, company);
        var backfill = new WebhookEventBackfill(db.DataSource, keys, new FakeTimeProvider(DateTimeOffset.UtcNow), NullLogger<WebhookEventBackfill>.Instance);

        var changed = await backfill.RunAsync(Cancel);

        Assert.Equal(5, changed);
        var stored = await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(event_key || ' ' || outcome || ' ' || payload || ' ' || coalesce(error, '-'), E'\\n' ORDER BY id) FROM webhook_events WHERE company_id = $1 AND event_key NOT LIKE 'kept-%'", company);
        Assert.Equal(string.Join('\n',
            """sg-1 APPLIED [{"event":"bounce","sg_event_id":"sg-1","reason":"550 ***@example.com unknown"}] 550 <***@example.com>: no such user""",
            $$"""marketing:{{keys.Part("919876543210")}}:stop:1764000000 APPLIED {"category":"marketing_messages","value":"stop","timestamp":1764000000} -""",
            $"mb-1:{keys.Part("919845012345")}:delivered APPLIED ?id=mb-1&status=delivered -",
            // The first copy keeps its outcome and takes the key; the redelivery stored after hashing goes…
            $$"""marketing:{{keys.Part("919811111111")}}:stop:1764000100 APPLIED {"value":"stop"} -""",
            // …unless only the redelivery matched its message.
            $"mb-2:{keys.Part("919822222222")}:delivered APPLIED ?id=mb-2&status=delivered -",
            """after APPLIED [{"email":"later@example.com","event":"delivered"}] -"""), stored);
        Assert.Equal(600, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1 AND event_key LIKE 'kept-%' AND payload LIKE '{\"type\":\"email.delivered\",\"id\":\"%\"}'", company));
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT finished_at IS NOT NULL AND done_id = upto_id FROM webhook_event_backfill"));

        // Done: the next hour's run walks nothing.
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE webhook_events SET payload = '{\"email\":\"x@example.com\"}' WHERE company_id = $1 AND event_key = 'sg-1' RETURNING 1", company);
        Assert.Equal(0, await backfill.RunAsync(Cancel));

        // Within a day of the migration, rows stored since it ran (by an API of an older build, still
        // running during the upgrade) are walked too, and the walk stays open for more.
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE webhook_event_backfill SET finished_at = NULL, walk_until = now() + interval '1 hour' RETURNING 1");
        Assert.Equal(1, await backfill.RunAsync(Cancel));
        Assert.Equal("""[{"event":"delivered"}]""", await TestData.ScalarAsync<string>(db.DataSource, "SELECT payload FROM webhook_events WHERE company_id = $1 AND event_key = 'after'", company));
        Assert.True(await TestData.ScalarAsync<bool>(db.DataSource, "SELECT finished_at IS NULL FROM webhook_event_backfill"));
    }
}
