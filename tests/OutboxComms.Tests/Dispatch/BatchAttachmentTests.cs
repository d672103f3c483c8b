using Microsoft.Extensions.DependencyInjection;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

/// <summary>A claimed batch holds its attachments' names and types, not their stored bytes: those are read per message, when it is sent.</summary>
public sealed class BatchAttachmentTests(PostgresServer server) : IAsyncLifetime
{
    private readonly DatabaseFixture db = new(server);
    private readonly CountingProvider email = WorkerHarness.Email();
    private WorkerHarness worker = null!;

    public async ValueTask InitializeAsync()
    {
        await db.InitializeAsync();
        worker = new WorkerHarness(db.ConnectionString, [email]);
    }

    public async ValueTask DisposeAsync()
    {
        await worker.DisposeAsync();
        await db.DisposeAsync();
    }

    [Fact]
    public async Task Stored_bytes_are_read_only_for_the_message_being_sent()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var now = DateTimeOffset.UtcNow;
        var stored = await Outbox.EnqueueAsync(db.DataSource, company, customer, "INVOICE", "EMAIL", "Invoice attached.", null, "{}", now.AddMinutes(-1), 3);
        var linked = await Outbox.EnqueueAsync(db.DataSource, company, customer, "INVOICE", "EMAIL", "Invoice linked.", null, "{}", now.AddMinutes(-1), 3);
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH a AS (INSERT INTO communication_attachments (message_id, file_name, content_type, content, url)
                       VALUES ($1, 'INV-1.pdf', 'application/pdf', '\x25504446', NULL), ($2, 'INV-2.pdf', 'application/pdf', NULL, 'https://files.example/INV-2.pdf')
                       RETURNING 1)
            SELECT count(*)::int FROM a
            """, stored, linked);
        var store = new OutboxStore(db.DataSource);
        var claimed = await store.WithRecipientsAsync("bytes#1", await store.ClaimAsync("bytes#1", 500, now, TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken),
            now, TestContext.Current.CancellationToken);
        var reads = new List<long>();

        // The worker's own DbContext: its compiled queries belong to the worker's model.
        await using var scope = worker.Services.CreateAsyncScope();
        var batch = await BatchContext.LoadAsync(scope.ServiceProvider.GetRequiredService<OutboxDbContext>(), claimed, new ReminderGate(), (ids, token) =>
        {
            reads.AddRange(ids);
            return store.AttachmentContentAsync(ids, token);
        }, TestContext.Current.CancellationToken);

        Assert.Empty(Assert.Single(batch.Attachments(stored)).Content!);   // listed for the checks, no bytes held
        Assert.Null(Assert.Single(batch.Attachments(linked)).Content);
        Assert.Empty(reads);
        Assert.Equal("%PDF"u8.ToArray(), Assert.Single(await batch.AttachmentsForSendAsync(stored, TestContext.Current.CancellationToken)).Content);
        Assert.Equal("https://files.example/INV-2.pdf", Assert.Single(await batch.AttachmentsForSendAsync(linked, TestContext.Current.CancellationToken)).Url);
        Assert.Equal([Assert.Single(batch.Attachments(stored)).Id], reads);   // the linked file needed no read
    }

    /// <summary>
    /// One due invoice of a company with its channels configured, optionally with a stored PDF,
    /// claimed and loaded as its batch, the stored bytes read by <paramref name="read"/> (the store's own by default).
    /// </summary>
    private async Task<(long Id, ClaimedMessage Claimed, BatchContext Batch, AsyncServiceScope Scope)> ClaimOneAsync(
        string lease, bool storedFile, Func<long[], CancellationToken, Task<Dictionary<long, byte[]>>>? read = null)
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var now = DateTimeOffset.UtcNow;
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer, "INVOICE", "EMAIL", "Invoice attached.", null, "{}", now.AddMinutes(-1), 3);
        if (storedFile)
        {
            await TestData.ScalarAsync<int>(db.DataSource,
                "INSERT INTO communication_attachments (message_id, file_name, content_type, content) VALUES ($1, 'INV-1.pdf', 'application/pdf', '\\x25504446') RETURNING 1", id);
        }
        var store = new OutboxStore(db.DataSource);
        var claimed = Assert.Single(await store.WithRecipientsAsync(lease, await store.ClaimAsync(lease, 500, now, TimeSpan.FromMinutes(2), TestContext.Current.CancellationToken),
            now, TestContext.Current.CancellationToken));
        var scope = worker.Services.CreateAsyncScope();
        var batch = await BatchContext.LoadAsync(scope.ServiceProvider.GetRequiredService<OutboxDbContext>(), [claimed], new ReminderGate(), read ?? store.AttachmentContentAsync,
            TestContext.Current.CancellationToken);
        return (id, claimed, batch, scope);
    }

    private Task<Completion> DispatchAsync(ClaimedMessage claimed, BatchContext batch) =>
        worker.Services.GetRequiredService<MessageDispatcher>().DispatchAsync(claimed, batch, TestContext.Current.CancellationToken);

    [Fact]
    public async Task A_message_whose_stored_attachment_is_deleted_between_claim_and_send_fails_without_a_send()
    {
        var (id, claimed, batch, scope) = await ClaimOneAsync("gone#1", storedFile: true);
        await using var _ = scope;

        await TestData.ScalarAsync<int>(db.DataSource, "WITH d AS (DELETE FROM communication_attachments WHERE message_id = $1 RETURNING 1) SELECT count(*)::int FROM d", id);
        var completion = await DispatchAsync(claimed, batch);

        Assert.Equal(DeliveryStatus.Failed, completion.Status);
        Assert.Equal("attachment INV-1.pdf was deleted before the message could be sent", completion.ErrorMessage);
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_message_whose_stored_files_the_database_fails_to_read_is_given_back_unsent_without_spending_a_retry()
    {
        // The pool full, or a failover: the read of the stored bytes times out.
        var (_, claimed, batch, scope) = await ClaimOneAsync("blip#1", storedFile: true, (_, _) => throw new TimeoutException("The connection pool has been exhausted"));
        await using var _ = scope;

        var given = await Assert.ThrowsAsync<SendNotStartedException>(() => DispatchAsync(claimed, batch));

        Assert.False(given.WindowClosed);
        Assert.Equal(0, email.Calls);
    }

    [Fact]
    public async Task A_message_reaching_its_provider_call_after_the_batchs_last_start_is_given_back_unsent()
    {
        var (_, claimed, batch, scope) = await ClaimOneAsync("late#1", storedFile: false);
        await using var _ = scope;
        batch.StartBy = DateTimeOffset.UtcNow.AddSeconds(-1);

        var given = await Assert.ThrowsAsync<SendNotStartedException>(() => DispatchAsync(claimed, batch));

        Assert.True(given.WindowClosed);
        Assert.Equal(0, email.Calls);
    }
}
