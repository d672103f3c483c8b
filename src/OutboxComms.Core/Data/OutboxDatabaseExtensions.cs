using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace OutboxComms.Core.Data;

public static class OutboxDatabaseExtensions
{
    public const string ConnectionStringName = "Outbox";

    /// <summary>
    /// Registers the one <see cref="NpgsqlDataSource"/> of the process (hot paths use it directly),
    /// the EF Core context over the same connection string, the migrator and the readiness check.
    /// </summary>
    public static IHostApplicationBuilder AddOutboxDatabase(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var connectionString = builder.Configuration.GetConnectionString(ConnectionStringName);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                $"No database configured: set ConnectionStrings__{ConnectionStringName} (or run ops/run.sh, which starts a local PostgreSQL).");
        }

        var dataSourceBuilder = new NpgsqlDataSourceBuilder(connectionString);
        dataSourceBuilder.ConnectionStringBuilder.ApplicationName ??= builder.Environment.ApplicationName;
        // The hot statements (claim, complete, enqueue) are the same text every time: let Npgsql
        // prepare them so PostgreSQL parses and plans them once per connection, not per call.
        if (dataSourceBuilder.ConnectionStringBuilder.MaxAutoPrepare == 0)
        {
            dataSourceBuilder.ConnectionStringBuilder.MaxAutoPrepare = 64;
            dataSourceBuilder.ConnectionStringBuilder.AutoPrepareMinUsages = 2;
        }
        var dataSource = dataSourceBuilder.Build();
        builder.Services.AddSingleton(dataSource);
        builder.Services.AddDbContextPool<OutboxDbContext>(options => options
            .UseNpgsql(dataSource)
            .UseSnakeCaseNamingConvention());
        builder.Services.AddSingleton<SchemaMigrator>();
        builder.Services.TryAddSystemTimeProvider();
        builder.Services.AddHealthChecks()
            .AddCheck<DatabaseReadyHealthCheck>("database", tags: ["ready"]);
        return builder;
    }

    private static void TryAddSystemTimeProvider(this IServiceCollection services)
    {
        if (!services.Any(d => d.ServiceType == typeof(TimeProvider)))
        {
            services.AddSingleton(TimeProvider.System);
        }
    }
}

/// <summary>Ready when PostgreSQL answers and carries every migration this build knows.</summary>
internal sealed class DatabaseReadyHealthCheck(SchemaMigrator migrator) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var state = await migrator.GetStateAsync(cancellationToken);
            return state.IsCurrent
                ? HealthCheckResult.Healthy($"schema at version {state.AppliedVersion}")
                : HealthCheckResult.Unhealthy($"schema at version {state.AppliedVersion}, this build needs {state.ExpectedVersion}: run `OutboxComms.Worker migrate`");
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            return HealthCheckResult.Unhealthy($"database unreachable: {ex.Message}", ex);
        }
    }
}
