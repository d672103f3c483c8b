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
    public async Task Events_about_mail_we_never_sent_are_kept_a_day_and_those_about_our_messages_the_full_retention()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var now = new DateTimeOffset(2026, 11, 20, 0, 0, 0, TimeSpan.Zero);
        await using (var insert = db.DataSource.CreateCommand("""
            INSERT INTO webhook_events (company_id, provider, event_key, received_at, outcome, payload)
            VALUES ($1, 'sendgrid', 'other-system-30h', $2::timestamptz - interval '30 hours', 'UNKNOWN_MESSAGE', '{"email":"someone@elsewhere.example"}'),
                   ($1, 'sendgrid', 'other-system-10h', $2::timestamptz - interval '10 hours', 'UNKNOWN_MESSAGE', '{}'),
                   ($1, 'sendgrid', 'ours-30h', $2::timestamptz - interval '30 hours', 'APPLIED', '{}')
            """))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(now);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var retention = new WebhookEventRetention(db.DataSource, Options.Create(new WebhookOptions()), Options.Create(new KeyRetentionOptions()), new FakeTimeProvider(now), NullLogger<WebhookEventRetention>.Instance);

        var deleted = await retention.PurgeUnmatchedAsync(TestContext.Current.CancellationToken);

        Assert.Equal(1, deleted);
        Assert.Equal("other-system-10h,ours-30h", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(event_key, ',' ORDER BY event_key) FROM webhook_events WHERE company_id = $1", company));
    }

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

    [Fact]
    public async Task A_waiting_event_whose_message_was_recorded_without_applying_it_is_applied_by_the_sweep()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var now = DateTimeOffset.UtcNow;
        var recorder = new DeliveryEventRecorder(db.DataSource);
        // A bounce that came before its message's provider id was recorded, and a batch that recorded the id but never applied it.
        Assert.Equal(WebhookOutcome.UnknownMessage, await recorder.RecordAsync(company, "smtp",
            new DeliveryEvent("SMTP-sweep-1", Core.Messages.DeliveryStatus.Bounced, now.AddMinutes(-5), "550 5.1.1 mailbox unavailable", "sweep-e1", "{}"), now.AddMinutes(-5), TestContext.Current.CancellationToken));
        Assert.Equal(WebhookOutcome.UnknownMessage, await recorder.RecordAsync(company, "smtp",
            new DeliveryEvent("SMTP-elsewhere", Core.Messages.DeliveryStatus.Delivered, now.AddMinutes(-5), null, "sweep-e2", "{}"), now.AddMinutes(-5), TestContext.Current.CancellationToken));
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        Assert.Equal(1, await TestData.ScalarAsync<int>(db.DataSource,
            "UPDATE communication_logs SET status = 'SENT', provider_name = 'SMTP', provider_message_id = 'SMTP-sweep-1', sent_at = $2 WHERE id = $1 RETURNING 1", id, now.AddMinutes(-6)));
        // Events are stamped with the database's clock on arrival; the sweep leaves those under a minute old to the batch.
        var clock = new FakeTimeProvider(now);
        var sweep = new WaitingEventSweep(db.DataSource, recorder, clock, NullLogger<WaitingEventSweep>.Instance);
        Assert.Equal(0, await sweep.SweepOnceAsync(TestContext.Current.CancellationToken));
        clock.Advance(TimeSpan.FromMinutes(2));

        Assert.Equal(1, await sweep.SweepOnceAsync(TestContext.Current.CancellationToken));

        var row = await Outbox.GetAsync(db.DataSource, id);
        Assert.Equal(("BOUNCED", "550 5.1.1 mailbox unavailable"), (row.Status, row.ErrorMessage));
        Assert.Equal("sweep-e1:APPLIED,sweep-e2:UNKNOWN_MESSAGE", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(event_key || ':' || outcome, ',' ORDER BY event_key) FROM webhook_events WHERE company_id = $1", company));
        Assert.Equal(0, await sweep.SweepOnceAsync(TestContext.Current.CancellationToken));   // applied once
    }
}
