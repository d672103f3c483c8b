using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace OutboxComms.Core.Data;

public static class OutboxDatabaseExtensions
{
    public const string ConnectionStringName = "Outbox";

    /// <summary>The log category of ASP.NET Core's health check service (silenced: see AddOutboxDatabase).</summary>
    public const string HealthServiceCategory = "Microsoft.Extensions.Diagnostics.HealthChecks.DefaultHealthCheckService";

    /// <summary>
    /// The startup option (connection string <c>Options</c>) of a session whose outbox inserts do
    /// not NOTIFY. PgBouncer refuses startup parameters it does not know unless they are listed in
    /// its <c>ignore_startup_parameters</c>, and then drops them: the API's inserts then notify as
    /// plain SQL producers do (correct, only slower under many concurrent single inserts).
    /// </summary>
    public const string DeferNotifyOption = "-c outboxcomms.defer_notify=on";

    /// <summary>
    /// The startup option of a session that plans every execution of a prepared statement for its
    /// own parameters. PostgreSQL otherwise switches a prepared statement to one generic plan after
    /// five executions when that plan looks no costlier — and a worker that starts against an empty
    /// or nearly empty outbox can get a generic claim plan that scans the whole table on every call
    /// (a hash join over a sequential scan: cheapest for zero rows), which it keeps until an
    /// autoanalyze invalidates it (reproduced: 40 ms per claim of 500 once 200,000 rows arrived,
    /// against ~10 ms). Planning each time costs about 1.6 ms per batch of 500 over all the
    /// batch's statements, some 3 µs per message.
    /// Dropped by PgBouncer like <see cref="DeferNotifyOption"/> unless configured to pass it.
    /// </summary>
    public const string CustomPlansOption = "-c plan_cache_mode=force_custom_plan";

    /// <summary>
    /// Registers the one <see cref="NpgsqlDataSource"/> of the process (hot paths use it directly),
    /// the EF Core context over the same connection string, the migrator and the readiness check.
    /// </summary>
    /// <param name="builder">The host.</param>
    /// <param name="deferInsertNotifications">
    /// Every session of this process sets <c>outboxcomms.defer_notify</c> (migration 0008), so its
    /// inserts into the outbox do not NOTIFY at commit (PostgreSQL serializes notifying commits);
    /// the process must wake the workers itself after committing (<see cref="Messages.OutboxNotifier"/>).
    /// Being a session setting, it costs no statement per transaction and needs no explicit one.
    /// </param>
    /// <param name="statelessSessions">
    /// The process leaves no session state on a pooled connection (no session SET, LISTEN or
    /// session advisory lock), so Npgsql may skip its reset (<c>No Reset On Close</c>): five small
    /// statements on every reuse, which cost a busy API more PostgreSQL CPU than its own queries.
    /// </param>
    /// <param name="customPlans">Every session plans each execution for its parameters (<see cref="CustomPlansOption"/>): for the worker, whose batch statements must never run a plan made for an empty table.</param>
    public static IHostApplicationBuilder AddOutboxDatabase(this IHostApplicationBuilder builder, bool deferInsertNotifications = false, bool statelessSessions = false, bool customPlans = false)
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
        if (deferInsertNotifications)
        {
            AddStartupOption(dataSourceBuilder.ConnectionStringBuilder, DeferNotifyOption);
        }
        if (customPlans)
        {
            AddStartupOption(dataSourceBuilder.ConnectionStringBuilder, CustomPlansOption);
        }
        if (statelessSessions)
        {
            dataSourceBuilder.ConnectionStringBuilder.NoResetOnClose = true;
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
        // The health service logs every probe's result, an unhealthy one as an error with its stack
        // trace: anyone may probe, so an outage would fill the log at the prober's pace. The check
        // logs changes itself (DatabaseReadyHealthCheck).
        builder.Logging.AddFilter(HealthServiceCategory, LogLevel.None);
        return builder;
    }

    private static void AddStartupOption(NpgsqlConnectionStringBuilder connectionString, string option)
    {
        var options = connectionString.Options;
        connectionString.Options = (string.IsNullOrWhiteSpace(options) ? "" : options + " ") + option;
    }

    private static void TryAddSystemTimeProvider(this IServiceCollection services)
    {
        if (!services.Any(d => d.ServiceType == typeof(TimeProvider)))
        {
            services.AddSingleton<TimeProvider>(DatabaseClock.Instance);
        }
    }
}

/// <summary>
/// Ready when PostgreSQL answers and carries every migration this build knows. Anyone may ask, so
/// a flood of probes must not take the connection pool from real requests: one check runs at a time
/// (callers meanwhile share its answer), and a healthy answer is reused for a second. The log gets
/// each change of the answer, and an unchanged unhealthy one once a minute, not one line per probe.
/// </summary>
internal sealed partial class DatabaseReadyHealthCheck(SchemaMigrator migrator, TimeProvider time, ILogger<DatabaseReadyHealthCheck> logger) : IHealthCheck
{
    private static readonly TimeSpan HealthyFor = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan RepeatUnhealthyLogAfter = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(10);

    // Per migrator (one per host): the check itself is created per request.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<SchemaMigrator, Shared> Checks = [];

    private sealed class Shared
    {
        public Task<HealthCheckResult>? Running;
        public DateTimeOffset CompletedAt;
        public HealthStatus? Logged;
        public DateTimeOffset LoggedAt;
    }

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var shared = Checks.GetValue(migrator, _ => new Shared());
        Task<HealthCheckResult> check;
        lock (shared)
        {
            if (shared.Running is not { } running
                || (running.IsCompleted && (running.Result.Status != HealthStatus.Healthy || time.GetUtcNow() - shared.CompletedAt >= HealthyFor)))
            {
                shared.Running = running = RunAsync(shared);
            }
            check = running;
        }
        return check.WaitAsync(cancellationToken);
    }

    private async Task<HealthCheckResult> RunAsync(Shared shared)
    {
        // Not the caller's token: other callers wait on this check too.
        using var timeout = new CancellationTokenSource(CheckTimeout);
        HealthCheckResult result;
        try
        {
            var state = await migrator.GetStateAsync(timeout.Token);
            result = state.IsCurrent
                ? HealthCheckResult.Healthy($"schema at version {state.AppliedVersion}")
                : state.Changed.Count > 0
                    ? HealthCheckResult.Unhealthy($"migrations {string.Join(", ", state.Changed)} were applied from files that differ from this build's: the workers refuse to migrate until that is resolved (see README, Migrations)")
                : state.Missing.Count > 0
                    ? HealthCheckResult.Unhealthy($"schema at version {state.AppliedVersion} but migrations {string.Join(", ", state.Missing)} were never applied: run `OutboxComms.Worker migrate`")
                    : HealthCheckResult.Unhealthy($"schema at version {state.AppliedVersion}, this build needs {state.ExpectedVersion}: run `OutboxComms.Worker migrate`");
        }
        catch (Exception ex)
        {
            // The answer is public (no key is needed to ask): its error text, which may name the
            // database host or user, goes only to the log, where the health service writes the exception.
            result = HealthCheckResult.Unhealthy("database unreachable (the service's log has the error)", ex);
        }
        bool log;
        HealthStatus? before;
        lock (shared)
        {
            shared.CompletedAt = time.GetUtcNow();
            before = shared.Logged;
            // The first healthy answer is the normal state: nothing to say.
            log = before is null ? result.Status != HealthStatus.Healthy
                : result.Status != before || (result.Status != HealthStatus.Healthy && shared.CompletedAt - shared.LoggedAt >= RepeatUnhealthyLogAfter);
            if (log || before is null)
            {
                (shared.Logged, shared.LoggedAt) = (result.Status, shared.CompletedAt);
            }
        }
        if (log && result.Status == HealthStatus.Healthy)
        {
            ReadyAgain(logger, result.Description);
        }
        else if (log)
        {
            NotReady(logger, result.Exception, result.Description);
        }
        return result;
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Not ready: {Description}")]
    private static partial void NotReady(ILogger logger, Exception? exception, string? description);

    [LoggerMessage(Level = LogLevel.Information, Message = "Ready again: {Description}")]
    private static partial void ReadyAgain(ILogger logger, string? description);
}
