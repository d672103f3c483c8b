namespace OutboxComms.Tests.Infrastructure;

/// <summary>Base of an API test class: the real host on the class's own database, started fresh for each test.</summary>
public abstract class ApiTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>, IAsyncLifetime
{
    protected DatabaseFixture Db => db;

    protected ApiFactory Api { get; private set; } = null!;

    public ValueTask InitializeAsync()
    {
        Api = new ApiFactory(db.ConnectionString);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await Api.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}
