using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OutboxComms.Core.Data;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Foundation;

public sealed class HealthTests(PostgresServer server)
{
    [Fact]
    public async Task Ready_answers_503_until_the_database_is_migrated_then_200()
    {
        var connectionString = await server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var factory = new ApiFactory(connectionString);
            using var client = factory.CreateClient();

            var before = await client.GetAsync(new Uri("/health/ready", UriKind.Relative), TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, before.StatusCode);
            var body = await before.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            Assert.True(body.Contains("migrate", StringComparison.Ordinal), body);

            await using (var dataSource = NpgsqlDataSource.Create(connectionString))
            {
                await new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).ApplyAsync(TestContext.Current.CancellationToken);
            }

            var after = await client.GetAsync(new Uri("/health/ready", UriKind.Relative), TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, after.StatusCode);
            var live = await client.GetAsync(new Uri("/health/live", UriKind.Relative), TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }
        finally
        {
            await server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task A_healthy_answer_is_reused_for_a_second_and_an_unhealthy_one_never()
    {
        var connectionString = await server.CreateDatabaseAsync(migrated: true);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
            var logs = new Microsoft.Extensions.Logging.Testing.FakeLogCollector();
            var check = new DatabaseReadyHealthCheck(new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance), time, new Microsoft.Extensions.Logging.Testing.FakeLogger<DatabaseReadyHealthCheck>(logs));
            async Task<HealthStatus> StatusAsync() => (await check.CheckHealthAsync(new HealthCheckContext(), TestContext.Current.CancellationToken)).Status;
            Assert.Equal(HealthStatus.Healthy, await StatusAsync());

            // The latest migration forgotten: within the second the healthy answer stands (a flood of probes costs one query a second), after it not.
            var latest = await TestData.ScalarAsync<int>(dataSource, "SELECT max(version) FROM schema_migrations");
            await TestData.ScalarAsync<int>(dataSource, "CREATE TABLE forgotten AS SELECT * FROM schema_migrations WITH NO DATA; SELECT 1");
            await TestData.ScalarAsync<int>(dataSource, "WITH d AS (DELETE FROM schema_migrations WHERE version = $1 RETURNING *) INSERT INTO forgotten SELECT * FROM d RETURNING 1", latest);
            // The one before it (not always latest - 1: a number may be left to another branch's file).
            var before = await TestData.ScalarAsync<int>(dataSource, "SELECT max(version) FROM schema_migrations");
            Assert.Equal(HealthStatus.Healthy, await StatusAsync());
            time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(HealthStatus.Unhealthy, await StatusAsync());

            // Each probe checks again, but the log says so once (anyone may probe: not a line each), and again after a minute.
            for (var i = 0; i < 5; i++)
            {
                Assert.Equal(HealthStatus.Unhealthy, await StatusAsync());
            }
            time.Advance(TimeSpan.FromMinutes(1));
            Assert.Equal(HealthStatus.Unhealthy, await StatusAsync());

            // An unhealthy answer is not kept: put right, the next probe says so at once.
            await TestData.ScalarAsync<int>(dataSource, "INSERT INTO schema_migrations SELECT * FROM forgotten; SELECT 1");
            Assert.Equal(HealthStatus.Healthy, await StatusAsync());
            time.Advance(TimeSpan.FromSeconds(1));
            Assert.Equal(HealthStatus.Healthy, await StatusAsync());
            var logged = logs.GetSnapshot();
            Assert.Equal(["Error", "Error", "Information"], logged.Select(r => r.Level.ToString()));
            Assert.All(logged.Take(2), r => Assert.StartsWith($"Not ready: schema at version {before}", r.Message, StringComparison.Ordinal));
            Assert.Equal($"Ready again: schema at version {latest}", logged[2].Message);
        }
        finally
        {
            await server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task Ready_answers_503_when_the_database_is_unreachable_while_live_stays_200()
    {
        await using var factory = new ApiFactory("Host=127.0.0.1;Port=1;Username=nobody;Timeout=2");
        using var client = factory.CreateClient();

        var ready = await client.GetAsync(new Uri("/health/ready", UriKind.Relative), TestContext.Current.CancellationToken);
        var live = await client.GetAsync(new Uri("/health/live", UriKind.Relative), TestContext.Current.CancellationToken);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        // Anyone may ask: the answer says what is wrong without naming the database's address or user.
        var body = await ready.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Contains("database unreachable", body, StringComparison.Ordinal);
        Assert.DoesNotContain("127.0.0.1", body, StringComparison.Ordinal);
        // The health service's own line per probe (an error with its stack trace) is not written: the check logs changes.
        var loggers = factory.Services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>();
        Assert.False(loggers.CreateLogger(OutboxDatabaseExtensions.HealthServiceCategory).IsEnabled(Microsoft.Extensions.Logging.LogLevel.Critical));
    }

    [Fact]
    public void Request_urls_are_never_logged_even_when_the_configuration_asks_for_aspnet_information()
    {
        // A Gupshup callback URL carries the company's webhook token.
        var verbose = new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Information",
            ["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Information",
        };
        using var factory = new ApiFactory("Host=127.0.0.1;Port=1;Username=nobody;Timeout=2", verbose);
        var loggers = factory.Services.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>();

        Assert.False(loggers.CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics").IsEnabled(Microsoft.Extensions.Logging.LogLevel.Information));
        Assert.True(loggers.CreateLogger("Microsoft.AspNetCore.Routing.EndpointMiddleware").IsEnabled(Microsoft.Extensions.Logging.LogLevel.Information)); // the configuration did apply
    }
}
