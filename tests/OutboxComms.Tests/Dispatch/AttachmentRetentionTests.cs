using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Providers;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Maintenance;

namespace OutboxComms.Tests.Dispatch;

public sealed class AttachmentRetentionTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Files_of_messages_settled_longer_ago_than_the_retention_are_cleared_and_the_rest_kept()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var now = DateTimeOffset.UtcNow;
        // (status, days since the message last changed): sent long ago, sent lately, failed long ago, still pending long after it was written.
        var messages = new List<long>();
        foreach (var (status, days) in new[] { ("SENT", 100), ("DELIVERED", 10), ("FAILED", 91), ("PENDING", 200) })
        {
            messages.Add(await TestData.ScalarAsync<long>(db.DataSource, """
                WITH m AS (INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, status, updated_at, next_attempt_at)
                           VALUES ($1, $2, 'INVOICE', 'EMAIL', 'Invoice', 'Attached.', $3, $4, $4 + interval '1000 days') RETURNING company_id, id)
                INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content)
                SELECT company_id, id, 'INV.pdf', 'application/pdf', '\x25504446' FROM m RETURNING message_id
                """, company, customer, status, now.AddDays(-days)));
        }
        // A file whose message a producer deleted by hand.
        await TestData.ScalarAsync<long>(db.DataSource,
            "INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content) VALUES ($1, 987654321, 'orphan.pdf', 'application/pdf', '\\x25504446') RETURNING id", company);
        AttachmentRetention Retention(int days) => new(db.DataSource, Options.Create(new AttachmentOptions { RetentionDays = days }), new FakeTimeProvider(now), NullLogger<AttachmentRetention>.Instance);

        Assert.Equal(0, await Retention(0).PurgeAsync(TestContext.Current.CancellationToken));   // 0 keeps them for ever
        var cleared = await Retention(90).PurgeAsync(TestContext.Current.CancellationToken);

        Assert.Equal(3, cleared);
        Assert.Equal([messages[1], messages[3]], await Kept());
        // The rows stay, without their bytes, stamped: a replay of their message fails with that reason.
        Assert.Equal(3, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM communication_attachments WHERE company_id = $1 AND purged_at IS NOT NULL AND content IS NULL AND url IS NULL", company));
        Assert.Equal(0, await Retention(90).PurgeAsync(TestContext.Current.CancellationToken));

        async Task<long[]> Kept()
        {
            var kept = new List<long>();
            await using var read = db.DataSource.CreateCommand("SELECT message_id FROM communication_attachments WHERE company_id = $1 AND content IS NOT NULL ORDER BY message_id");
            read.Parameters.AddWithValue(company);
            await using var reader = await read.ExecuteReaderAsync(TestContext.Current.CancellationToken);
            while (await reader.ReadAsync(TestContext.Current.CancellationToken))
            {
                kept.Add(reader.GetInt64(0));
            }
            return [.. kept];
        }
    }
}
