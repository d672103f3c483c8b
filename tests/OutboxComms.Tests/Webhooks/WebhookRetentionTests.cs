using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Tests.Webhooks;

public sealed class WebhookRetentionTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Raw_events_older_than_the_retention_are_deleted_and_newer_ones_kept()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var now = new DateTimeOffset(2026, 11, 24, 0, 0, 0, TimeSpan.Zero);
        await using (var insert = db.DataSource.CreateCommand("""
            INSERT INTO webhook_events (company_id, provider, event_key, received_at, outcome, payload)
            SELECT $1, 'whatsapp', 'e' || g, $2::timestamptz - (g || ' days')::interval, 'APPLIED', '{}' FROM generate_series(1, 60) g
            """))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(now);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var retention = new WebhookEventRetention(db.DataSource, Options.Create(new WebhookOptions { RetentionDays = 30 }), Options.Create(new KeyRetentionOptions()), new FakeTimeProvider(now), NullLogger<WebhookEventRetention>.Instance);

        var deleted = await retention.PurgeAsync(TestContext.Current.CancellationToken);

        Assert.Equal(30, deleted); // 31..60 days old; exactly 30 days old is kept
        Assert.Equal(30, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM webhook_events WHERE company_id = $1", company));
    }

    [Fact]
    public async Task Signature_nonces_are_forgotten_once_their_signatures_are_stale()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var now = new DateTimeOffset(2026, 11, 24, 0, 0, 0, TimeSpan.Zero);
        await using (var insert = db.DataSource.CreateCommand("""
            INSERT INTO webhook_nonces (company_id, provider, nonce, body_sha256, seen_at)
            SELECT $1, 'mailgun', 't' || g, '\x00', $2::timestamptz - (g * 10 || ' minutes')::interval FROM generate_series(1, 120) g
            """))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(now);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var retention = new WebhookEventRetention(db.DataSource, Options.Create(new WebhookOptions()), Options.Create(new KeyRetentionOptions()), new FakeTimeProvider(now), NullLogger<WebhookEventRetention>.Instance);

        var deleted = await retention.PurgeNoncesAsync(TestContext.Current.CancellationToken);

        // Older than 9 h 15 min (560..1,200 minutes old): a Mailgun signature is fresh for 9 hours of
        // retries, five minutes ahead, and the nonce is kept five minutes more.
        Assert.Equal(65, deleted);
        Assert.Equal(now.AddMinutes(-550).UtcDateTime, await TestData.ScalarAsync<DateTime>(db.DataSource, "SELECT min(seen_at) FROM webhook_nonces WHERE company_id = $1", company));
    }
}
