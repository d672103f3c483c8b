using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using OutboxComms.Api.Messages;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Api;

/// <summary>
/// Concurrent single-message sends share one batch and one commit: each caller still gets exactly
/// its own rows and its own errors. A gate trigger (this class's database only) holds the first
/// batches until the rest of the calls have queued up behind them, so that they are coalesced.
/// </summary>
public sealed class CoalescedSendTests(DatabaseFixture db) : ApiTests(db)
{
    private const long GateLock = 4242;

    private async Task InstallGateAsync()
    {
        await using var command = Db.DataSource.CreateCommand("""
            CREATE OR REPLACE FUNCTION test_send_gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_advisory_xact_lock_shared(4242);
                IF NEW.subject = 'poison' THEN
                    RAISE EXCEPTION 'a row this test refuses' USING ERRCODE = 'check_violation';
                END IF;
                IF NEW.subject = 'read-only' THEN
                    RAISE EXCEPTION 'the database is read-only now' USING ERRCODE = 'read_only_sql_transaction';
                END IF;
                RETURN NEW;
            END $$;
            DROP TRIGGER IF EXISTS test_send_gate ON communication_logs;
            CREATE TRIGGER test_send_gate BEFORE INSERT ON communication_logs FOR EACH ROW EXECUTE FUNCTION test_send_gate();
            """);
        await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>Sends every request at once while the gate is closed, then opens it.</summary>
    private async Task<(HttpResponseMessage Response, System.Text.Json.Nodes.JsonNode? Body)[]> SendBehindGateAsync(IReadOnlyList<(HttpClient Client, object Body)> requests)
    {
        await using var gate = await Db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using (var close = new NpgsqlCommand($"SELECT pg_advisory_lock({GateLock})", gate))
        {
            await close.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        try
        {
            var store = Api.Services.GetRequiredService<MessageStore>();
            var queuedBefore = store.QueuedInserts;
            var sends = requests.Select(r => r.Client.PostAsync("/v1/messages", r.Body)).ToArray();
            // The first batches wait at the gate; every other call queues up behind them.
            var waited = System.Diagnostics.Stopwatch.StartNew();
            while (store.QueuedInserts - queuedBefore < requests.Count
                   || await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))", gate.ProcessID) == 0)
            {
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), "the sends did not all queue up behind the gate");
                await Task.Delay(10, TestContext.Current.CancellationToken);
            }
            await using (var open = new NpgsqlCommand($"SELECT pg_advisory_unlock({GateLock})", gate))
            {
                await open.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }
            return await Task.WhenAll(sends);
        }
        finally
        {
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", gate);
            await release.ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Concurrent_sends_from_two_practices_are_written_together_and_each_answered_with_its_own_rows()
    {
        await InstallGateAsync();
        var (first, firstKey) = await Api.NewCompanyAsync("Rao & Associates");
        var (second, secondKey) = await Api.NewCompanyAsync("Iyer Corporate Services");
        using var firstClient = Api.As(firstKey);
        using var secondClient = Api.As(secondKey);
        var firstCustomers = new List<Guid>();
        var secondCustomers = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            firstCustomers.Add(await TestData.CreateCustomerAsync(Db.DataSource, first, externalId: $"R-{i}"));
            secondCustomers.Add(await TestData.CreateCustomerAsync(Db.DataSource, second));
        }

        // 30 sends: each practice's to its own customers (some by external id, some to both
        // channels), and every fifth to a customer of the other practice, which must be refused.
        var requests = Enumerable.Range(0, 30).Select(i =>
        {
            var (client, own, others) = i % 2 == 0 ? (firstClient, firstCustomers, secondCustomers) : (secondClient, secondCustomers, firstCustomers);
            object body = i % 5 == 4
                ? new { customerId = others[i % others.Count], type = "INVOICE", channel = "EMAIL", subject = $"Invoice {i}", content = "Attached." }
                : i % 3 == 0 && client == firstClient
                    ? new { customerExternalId = $"R-{i % 5}", type = "INVOICE", channel = "BOTH", subject = $"Invoice {i}", content = "Attached." }
                    : new { customerId = own[i % own.Count], type = "INVOICE", channel = "EMAIL", subject = $"Invoice {i}", content = "Attached." };
            return (client, body);
        }).ToList();

        var answers = await SendBehindGateAsync(requests);

        var transactions = new HashSet<uint>();
        for (var i = 0; i < requests.Count; i++)
        {
            var (response, body) = answers[i];
            if (i % 5 == 4)
            {
                Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
                Assert.NotNull(body!["errors"]!["customerId"]);
                continue;
            }
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            var messages = body!["messages"]!.AsArray();
            var both = i % 3 == 0 && i % 2 == 0;
            Assert.Equal(both ? ["EMAIL", "WHATSAPP"] : new[] { "EMAIL" }, messages.Select(m => m!["channel"]!.GetValue<string>()));
            foreach (var message in messages)
            {
                await using var row = Db.DataSource.CreateCommand("SELECT company_id, subject, xmin::text::bigint FROM communication_logs WHERE id = $1");
                row.Parameters.AddWithValue(message!["id"]!.GetValue<long>());
                await using var reader = await row.ExecuteReaderAsync(TestContext.Current.CancellationToken);
                Assert.True(await reader.ReadAsync(TestContext.Current.CancellationToken));
                Assert.Equal((i % 2 == 0 ? first : second, $"Invoice {i}"), (reader.GetGuid(0), reader.GetString(1)));
                transactions.Add((uint)reader.GetInt64(2));
            }
        }
        Assert.Equal(24 + 4, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id IN ($1, $2)", first, second));
        // Coalesced: far fewer transactions than sends.
        Assert.True(transactions.Count < 24 / 2, $"{transactions.Count} transactions for 24 accepted sends");
    }

    [Fact]
    public async Task A_send_that_fails_in_a_shared_batch_fails_alone()
    {
        await InstallGateAsync();
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        var requests = Enumerable.Range(0, 20)
            .Select(i => (client, (object)new { customerId = customer, type = "INVOICE", channel = "EMAIL", subject = i == 13 ? "poison" : $"Invoice {i}", content = "Attached." }))
            .ToList();

        var answers = await SendBehindGateAsync(requests);

        // Its values are at fault (a constraint's error, class 23): a 400, and it alone.
        Assert.Equal(HttpStatusCode.BadRequest, answers[13].Response.StatusCode);
        Assert.All(answers.Where((_, i) => i != 13), a => Assert.Equal(HttpStatusCode.Accepted, a.Response.StatusCode));
        Assert.Equal(19, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
        Assert.Equal(0, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_logs WHERE subject = 'poison'"));
        // The failed send's batch was written again without it, in one transaction, not one by one.
        Assert.True(await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(DISTINCT xmin::text) FROM communication_logs WHERE company_id = $1", company) < 19 / 2);
    }

    [Fact]
    public async Task An_error_of_the_database_rather_than_of_a_sends_values_fails_its_whole_batch_at_once()
    {
        await InstallGateAsync();
        var (company, key) = await Api.NewCompanyAsync();
        using var client = Api.As(key);
        var customer = await TestData.CreateCustomerAsync(Db.DataSource, company);
        // As a failover's read-only standby answers (25006): nothing about these sends' values.
        // Four of them, so that at least one shares the batch of the many queued behind the gate.
        bool ReadOnly(int i) => i % 5 == 3;
        var requests = Enumerable.Range(0, 20)
            .Select(i => (client, (object)new { customerId = customer, type = "INVOICE", channel = "EMAIL", subject = ReadOnly(i) ? "read-only" : $"Invoice {i}", content = "Attached." }))
            .ToList();

        var answers = await SendBehindGateAsync(requests);

        // Such a send's batch fails as a whole, innocent sends included, rather than the send being
        // blamed alone and the rest written again (one shorter batch after another, each failing
        // its first send, during a failover).
        var failed = answers.Count(a => a.Response.StatusCode == HttpStatusCode.InternalServerError);
        Assert.All(answers.Where((_, i) => ReadOnly(i)), a => Assert.Equal(HttpStatusCode.InternalServerError, a.Response.StatusCode));
        Assert.True(failed > 4, $"only the {failed} read-only sends failed: each was blamed alone and its batch written again");
        Assert.All(answers.Where(a => a.Response.StatusCode != HttpStatusCode.InternalServerError), a => Assert.Equal(HttpStatusCode.Accepted, a.Response.StatusCode));
        Assert.Equal(20 - failed, await TestData.ScalarAsync<long>(Db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
    }
}
