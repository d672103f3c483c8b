using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Dispatch;

/// <summary>What reaches the outbox of an offboarded practice after its deactivation is cancelled, not sent.</summary>
public sealed class DeactivatedCompanyDispatchTests(PostgresServer server) : IAsyncLifetime
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
    public async Task A_message_of_a_deactivated_company_is_cancelled_with_the_reason_even_with_its_channel_switched_back_on()
    {
        var offboarded = await TestData.CreateCompanyAsync(db.DataSource);
        var active = await TestData.CreateCompanyAsync(db.DataSource);
        foreach (var company in new[] { offboarded, active })
        {
            await Outbox.ConfigureChannelsAsync(db.DataSource, company);
        }
        // Deactivated; its email was switched on again in the seconds a cached key still worked, and a SQL producer still writes.
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE companies SET deactivated_at = now() WHERE id = $1 RETURNING 1", offboarded);
        var late = await Outbox.EnqueueAsync(db.DataSource, offboarded, await TestData.CreateCustomerAsync(db.DataSource, offboarded));
        var sent = await Outbox.EnqueueAsync(db.DataSource, active, await TestData.CreateCustomerAsync(db.DataSource, active));

        await worker.RunOnceAsync();

        var row = await Outbox.GetAsync(db.DataSource, late);
        Assert.Equal(("CANCELLED", "cancelled: the company was deactivated"), (row.Status, row.StatusReason));
        Assert.Equal("SENT", (await Outbox.GetAsync(db.DataSource, sent)).Status);
        Assert.Equal(1, email.Calls);
    }
}
