using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using OutboxComms.Core.Messages;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Tests.Dispatch;

public sealed class MessageContentRetentionTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Messages_settled_longer_ago_than_the_company_retention_lose_their_content_and_keep_their_record()
    {
        var now = DateTimeOffset.UtcNow;
        var clock = new FakeTimeProvider(now);
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var other = await TestData.CreateCompanyAsync(db.DataSource);
        await SetRetentionAsync(company, 30);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var otherCustomer = await TestData.CreateCustomerAsync(db.DataSource, other);
        // (written, last changed) days ago; ids ascend in this order.
        var oldSent = await InsertAsync(company, customer, "SENT", 100, 100);
        var scheduled = await InsertAsync(company, customer, "PENDING", 90, 90);
        var lateReceipt = await InsertAsync(company, customer, "READ", 60, 2);
        var oldFailed = await InsertAsync(company, customer, "FAILED", 45, 45);
        var recent = await InsertAsync(company, customer, "SENT", 5, 5);
        var otherOld = await InsertAsync(other, otherCustomer, "SENT", 100, 100);
        var job = new MessageContentRetention(db.DataSource, clock, NullLogger<MessageContentRetention>.Instance);

        Assert.Equal(2, await job.RunAsync(Cancel));

        foreach (var id in new[] { oldSent, oldFailed })
        {
            var row = await ReadAsync(company, id);
            Assert.Null(row.Subject);
            Assert.Equal("", row.Content);
            Assert.Equal("{}", row.TemplateData);
            Assert.Null(row.Error);
            // The scheduler's keys stay (they name only our ids); the producer's go.
            Assert.Equal("""{"reminderId": "7"}""", row.Metadata);
            Assert.Equal(now, row.RedactedAt!.Value, TimeSpan.FromMilliseconds(1));
            Assert.Equal("content cleared by the company's retention", await TestData.ScalarAsync<string>(db.DataSource,
                "SELECT status_reason FROM communication_logs WHERE company_id = $1 AND id = $2", company, id));
            // The record stays: status, provider id, cost, and the producer's idempotency key (its ON CONFLICT retry relies on it).
            Assert.Equal(($"invoice-{id}", $"provider-{id}", 0.25m), (row.IdempotencyKey, row.ProviderMessageId, row.Cost));
            Assert.True(await TestData.ScalarAsync<bool>(db.DataSource,
                "SELECT bool_and(error_message IS NULL) FROM communication_attempts WHERE company_id = $1 AND message_id = $2", company, id));
            Assert.True(await TestData.ScalarAsync<bool>(db.DataSource,
                "SELECT bool_and(previous_error IS NULL) FROM message_replays WHERE company_id = $1 AND message_id = $2", company, id));
            Assert.True(await TestData.ScalarAsync<bool>(db.DataSource,
                "SELECT content IS NULL AND url IS NULL AND purged_at IS NOT NULL FROM communication_attachments WHERE company_id = $1 AND message_id = $2", company, id));
        }
        Assert.Equal("SENT", (await ReadAsync(company, oldSent)).Status);
        Assert.Equal("FAILED", (await ReadAsync(company, oldFailed)).Status);
        // Not yet: still to be sent, changed within the retention, written within it, another company's.
        foreach (var (owner, id) in new[] { (company, scheduled), (company, lateReceipt), (company, recent), (other, otherOld) })
        {
            var row = await ReadAsync(owner, id);
            Assert.Equal(($"Invoice {id}", $"Dear client, invoice {id} is attached.", (DateTimeOffset?)null), (row.Subject, row.Content, row.RedactedAt));
            Assert.True(await TestData.ScalarAsync<bool>(db.DataSource,
                "SELECT content IS NOT NULL FROM communication_attachments WHERE company_id = $1 AND message_id = $2", owner, id));
        }
        // The walk stopped before the first message written within the retention.
        Assert.Equal(oldFailed, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT last_id FROM content_retention_cursors WHERE company_id = $1", company));
        Assert.Equal(0, await job.RunAsync(Cancel));

        // The scheduled message is sent and settles; the read receipt's month passes.
        await using (var settle = db.DataSource.CreateCommand("UPDATE communication_logs SET status = 'SENT', updated_at = $3 WHERE company_id = $1 AND id = $2"))
        {
            settle.Parameters.AddWithValue(company);
            settle.Parameters.AddWithValue(scheduled);
            settle.Parameters.AddWithValue(now.AddDays(-31));
            await settle.ExecuteNonQueryAsync(Cancel);
        }
        Assert.Equal(1, await job.RunAsync(Cancel));
        Assert.NotNull((await ReadAsync(company, scheduled)).RedactedAt);
        // 29 days on, the read receipt is a month old, and so is the message written 5 days before the first run: the walk resumes at it.
        clock.Advance(TimeSpan.FromDays(29));
        Assert.Equal(2, await job.RunAsync(Cancel));
        Assert.NotNull((await ReadAsync(company, lateReceipt)).RedactedAt);
        Assert.NotNull((await ReadAsync(company, recent)).RedactedAt);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM content_retention_deferred WHERE company_id = $1", company));
        Assert.Null((await ReadAsync(other, otherOld)).RedactedAt);
    }

    [Fact]
    public async Task A_row_committed_after_the_walk_passed_its_id_is_cleared_by_the_weekly_walk_and_a_future_dated_row_does_not_stop_it()
    {
        var now = DateTimeOffset.UtcNow;
        var clock = new FakeTimeProvider(now);
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await SetRetentionAsync(company, 30);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var job = new MessageContentRetention(db.DataSource, clock, NullLogger<MessageContentRetention>.Instance);
        // A long business transaction takes its id first and commits after the walk went past it.
        await using var producer = await db.DataSource.OpenConnectionAsync(Cancel);
        await using var open = await producer.BeginTransactionAsync(Cancel);
        long late;
        await using (var insert = new NpgsqlCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status, created_at, updated_at)
            VALUES ($1, $2, 'INVOICE', 'EMAIL', 'Dear client', 'SENT', now() - interval '40 days', now() - interval '40 days') RETURNING id
            """, producer, open))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(customer);
            late = (long)(await insert.ExecuteScalarAsync(Cancel))!;
        }
        var typo = await InsertAsync(company, customer, "SENT", -3650, 40);   // written "in 2036"
        var old = await InsertAsync(company, customer, "SENT", 40, 40);

        Assert.Equal(2, await job.RunAsync(Cancel));
        await open.CommitAsync(Cancel);
        Assert.Equal(0, await job.RunAsync(Cancel));
        Assert.Null((await ReadAsync(company, late)).RedactedAt);

        clock.Advance(MessageContentRetention.RewalkEvery + TimeSpan.FromHours(1));

        Assert.Equal(1, await job.RunAsync(Cancel));
        Assert.NotNull((await ReadAsync(company, late)).RedactedAt);
        Assert.NotNull((await ReadAsync(company, typo)).RedactedAt);
        Assert.NotNull((await ReadAsync(company, old)).RedactedAt);
    }

    [Fact]
    public async Task A_message_whose_content_was_cleared_is_never_sent_again()
    {
        var now = DateTimeOffset.UtcNow;
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await SetRetentionAsync(company, 7);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var failed = await InsertAsync(company, customer, "FAILED", 10, 10);
        await new MessageContentRetention(db.DataSource, new FakeTimeProvider(now), NullLogger<MessageContentRetention>.Instance).RunAsync(Cancel);
        var replay = new MessageReplay(db.DataSource, TimeProvider.System, NullLogger<MessageReplay>.Instance);

        Assert.Equal(0, await replay.CountAsync(new ReplayFilter { CompanyId = company }, Cancel));
        Assert.Equal(0, await replay.ReplayAsync(new ReplayFilter { CompanyId = company, MessageId = failed }, "test", Cancel));
        // Nor by hand: the table refuses it.
        await using var byHand = db.DataSource.CreateCommand("UPDATE communication_logs SET status = 'PENDING' WHERE company_id = $1 AND id = $2");
        byHand.Parameters.AddWithValue(company);
        byHand.Parameters.AddWithValue(failed);
        var refused = await Assert.ThrowsAsync<PostgresException>(() => byHand.ExecuteNonQueryAsync(Cancel));
        Assert.Equal(("23514", "communication_logs_redacted_not_pending"), (refused.SqlState, refused.ConstraintName));
    }

    private async Task SetRetentionAsync(Guid company, int days)
    {
        await using var command = db.DataSource.CreateCommand(
            "INSERT INTO company_settings (company_id, content_retention_days) VALUES ($1, $2) ON CONFLICT (company_id) DO UPDATE SET content_retention_days = $2");
        command.Parameters.AddWithValue(company);
        command.Parameters.AddWithValue(days);
        await command.ExecuteNonQueryAsync(Cancel);
    }

    /// <summary>A message with everything retention clears: subject, body, data, metadata, error, an attempt's and a replay's error, a file.</summary>
    private async Task<long> InsertAsync(Guid company, Guid customer, string status, int writtenDaysAgo, int changedDaysAgo)
    {
        var now = DateTimeOffset.UtcNow;
        var id = await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, status, created_at, updated_at, next_attempt_at,
                                            template_data, metadata, error_message, cost, provider_message_id)
            VALUES ($1, $2, 'INVOICE', 'EMAIL', 'x', 'x', $3, $4, $5, $5 + interval '1000 days',
                    '{"amount": "₹12,000"}', '{"reminderId": "7", "pan": "ABCDE1234F"}', 'mailbox a.client@example.com full', 0.25, 'p')
            RETURNING id
            """, company, customer, status, now.AddDays(-writtenDaysAgo), now.AddDays(-changedDaysAgo));
        await using var fill = new NpgsqlBatch(await db.DataSource.OpenConnectionAsync(Cancel));
        foreach (var sql in new[]
        {
            """
            UPDATE communication_logs SET subject = 'Invoice ' || id, content = 'Dear client, invoice ' || id || ' is attached.',
                   idempotency_key = 'invoice-' || id, provider_message_id = 'provider-' || id
             WHERE company_id = $1 AND id = $2
            """,
            "INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, outcome, error_message) VALUES ($2, $1, 1, 'EMAIL', 'TRANSIENT_FAILURE', '452 mailbox a.client@example.com full')",
            "INSERT INTO message_replays (company_id, message_id, replayed_at, replayed_by, previous_status, previous_error) VALUES ($1, $2, now(), 'test', 'FAILED', 'mailbox a.client@example.com full')",
            @"INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content) VALUES ($1, $2, 'INV.pdf', 'application/pdf', '\x25504446')",
        })
        {
            fill.BatchCommands.Add(new NpgsqlBatchCommand(sql) { Parameters = { new() { Value = company }, new() { Value = id } } });
        }
        await fill.ExecuteNonQueryAsync(Cancel);
        await fill.Connection!.DisposeAsync();
        return id;
    }

    private async Task<(string Status, string? Subject, string? Content, string TemplateData, string Metadata, string? Error, string? IdempotencyKey, string? ProviderMessageId, decimal? Cost, DateTimeOffset? RedactedAt)> ReadAsync(Guid company, long id)
    {
        await using var command = db.DataSource.CreateCommand("""
            SELECT status, subject, content, template_data::text, metadata::text, error_message, idempotency_key, provider_message_id, cost, content_redacted_at
              FROM communication_logs WHERE company_id = $1 AND id = $2
            """);
        command.Parameters.AddWithValue(company);
        command.Parameters.AddWithValue(id);
        await using var reader = await command.ExecuteReaderAsync(Cancel);
        Assert.True(await reader.ReadAsync(Cancel));
        string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
        return (reader.GetString(0), Text(1), Text(2), reader.GetString(3), reader.GetString(4), Text(5), Text(6), Text(7),
            reader.IsDBNull(8) ? null : reader.GetDecimal(8), reader.IsDBNull(9) ? null : reader.GetFieldValue<DateTimeOffset>(9));
    }
}
