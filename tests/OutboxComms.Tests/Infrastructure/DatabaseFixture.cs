using Microsoft.EntityFrameworkCore;
using Npgsql;
using OutboxComms.Core.Data;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>
/// A fresh migrated database for one test class (cloned from the template, so tests in different
/// classes never see each other's rows). Tests still create their own companies, so order never matters.
/// </summary>
public sealed class DatabaseFixture(PostgresServer server) : IAsyncLifetime
{
    public string ConnectionString { get; private set; } = "";

    public NpgsqlDataSource DataSource { get; private set; } = null!;

    public PostgresServer Server => server;

    public async ValueTask InitializeAsync()
    {
        ConnectionString = await server.CreateDatabaseAsync();
        DataSource = NpgsqlDataSource.Create(ConnectionString);
    }

    public OutboxDbContext CreateDbContext() =>
        new(new DbContextOptionsBuilder<OutboxDbContext>().UseNpgsql(DataSource).UseSnakeCaseNamingConvention().Options);

    public async ValueTask DisposeAsync()
    {
        await DataSource.DisposeAsync();
        await server.DropDatabaseAsync(ConnectionString);
    }
}
