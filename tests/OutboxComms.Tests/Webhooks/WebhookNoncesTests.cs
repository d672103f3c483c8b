using System.Security.Cryptography;
using System.Text;
using Npgsql;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Webhooks;

/// <summary>A signature nonce against real PostgreSQL, including a use that races the first one.</summary>
public sealed class WebhookNoncesTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Theory]
    [InlineData("{\"event\":\"delivered\"}", true)]
    [InlineData("{\"event\":\"failed\"}", false)]
    // At another company (one that shares the signing key): a Mailgun token is single-use across companies.
    [InlineData("{\"event\":\"delivered\"}", true, true)]
    [InlineData("{\"event\":\"failed\"}", false, true)]
    public async Task A_use_racing_the_first_waits_for_it_and_is_accepted_with_its_body_only(string body, bool accepted, bool atAnotherCompany = false)
    {
        const string first = "{\"event\":\"delivered\"}";
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var nonces = new WebhookNonces(db.DataSource);
        var now = DateTimeOffset.UtcNow;
        var nonce = $"n-{Guid.NewGuid():N}";   // Mailgun tokens are single-use across companies: each case its own
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var firstUse = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using (var insert = new NpgsqlCommand("INSERT INTO webhook_nonces (company_id, provider, nonce, body_sha256, seen_at) VALUES ($1, 'mailgun', $4, $2, $3)", connection, firstUse))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(SHA256.HashData(Encoding.UTF8.GetBytes(first)));
            insert.Parameters.AddWithValue(now);
            insert.Parameters.AddWithValue(nonce);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        var user = atAnotherCompany ? await TestData.CreateCompanyAsync(db.DataSource) : company;
        var racing = nonces.TryUseAsync(user, "mailgun", nonce, body, now, TestContext.Current.CancellationToken);
        for (var waited = 0; await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted") == 0; waited++)
        {
            Assert.True(waited < 200, "the second use never waited for the first");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
        await firstUse.CommitAsync(TestContext.Current.CancellationToken);

        Assert.Equal(accepted, await racing);
        Assert.Equal(accepted, await nonces.TryUseAsync(user, "mailgun", nonce, body, now, TestContext.Current.CancellationToken)); // and again, the same
        Assert.True(await nonces.TryUseAsync(company, "mailgun", $"{nonce}-2", body, now, TestContext.Current.CancellationToken)); // a new nonce, any body
    }
}
