using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace OutboxComms.Core.Data;

/// <summary>One versioned SQL file from <c>migrations/</c> (named <c>NNNN_description.sql</c>).</summary>
public sealed record Migration(int Version, string Name, string Sql)
{
    public string Checksum { get; } = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Sql.ReplaceLineEndings("\n"))));
}

/// <summary>State of the database schema against the migrations this build carries.</summary>
public sealed record SchemaState(int AppliedVersion, int ExpectedVersion)
{
    /// <summary>Migrations of this build below the applied version that were never applied (a file applied out of order by hand).</summary>
    public IReadOnlyList<int> Missing { get; init; } = [];

    /// <summary>Migrations applied from a file that differs from this build's: the workers refuse to migrate (and start) until it is sorted out.</summary>
    public IReadOnlyList<int> Changed { get; init; } = [];

    public bool IsCurrent => AppliedVersion >= ExpectedVersion && Missing.Count == 0 && Changed.Count == 0;
}

/// <summary>
/// Applies the embedded SQL migrations, each pending file in its own transaction under an advisory
/// lock, so several processes may call <see cref="ApplyAsync"/> at once and each file runs once; a
/// file that was edited after it was applied is refused (its checksum no longer matches).
/// </summary>
public sealed partial class SchemaMigrator(NpgsqlDataSource dataSource, ILogger<SchemaMigrator> logger)
{
    // Any constant unique to us; pg_advisory_xact_lock takes a bigint. ("OUTBOXMG" in ASCII.)
    private const long MigrationLockKey = 0x4F5554424F584D47;

    private const string BookkeepingSql = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer     PRIMARY KEY,
            name        text        NOT NULL,
            checksum    text        NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        );
        """;

    public static IReadOnlyList<Migration> All { get; } = LoadEmbedded();

    public static int LatestVersion => All[^1].Version;

    public async Task<IReadOnlyList<Migration>> ApplyAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var applied = new Dictionary<int, string>();
        await using (var transaction = await connection.BeginTransactionAsync(cancellationToken))
        {
            // The bookkeeping table is created only when it is missing: CREATE TABLE IF NOT EXISTS
            // still needs CREATE on the schema, which a least-privilege role running an up-to-date
            // database (a worker migrating at start) does not have.
            await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({MigrationLockKey})", connection, transaction))
            {
                await lockCommand.ExecuteNonQueryAsync(cancellationToken);
            }
            await using (var exists = new NpgsqlCommand("SELECT to_regclass('schema_migrations') IS NOT NULL", connection, transaction))
            {
                if (await exists.ExecuteScalarAsync(cancellationToken) is not true)
                {
                    await using var create = new NpgsqlCommand(BookkeepingSql, connection, transaction);
                    await create.ExecuteNonQueryAsync(cancellationToken);
                }
            }
            await using (var select = new NpgsqlCommand("SELECT version, checksum FROM schema_migrations", connection, transaction))
            await using (var reader = await select.ExecuteReaderAsync(cancellationToken))
            {
                while (await reader.ReadAsync(cancellationToken))
                {
                    applied[reader.GetInt32(0)] = reader.GetString(1);
                }
            }
            await transaction.CommitAsync(cancellationToken);
        }
        foreach (var migration in All)
        {
            if (applied.TryGetValue(migration.Version, out var checksum) && checksum != migration.Checksum)
            {
                throw new InvalidOperationException(
                    $"Migration {migration.Name} was changed after it was applied (checksum {checksum} in the database, {migration.Checksum} now). Add a new migration instead of editing an applied one.");
            }
        }

        // Each file in its own transaction, recorded with it, under the advisory lock taken again in
        // that transaction (a transaction lock also holds behind a transaction-pooling PgBouncer,
        // where a session lock would stay on whichever server connection took it): the locks one
        // file takes are released before the next runs (upgrading from before 0019 held 0019's lock
        // on communication_logs through 0020's index build, blocking every producer's insert), and a
        // file that fails leaves the ones before it applied. Another process may have applied a
        // file meanwhile: each is checked again under the lock.
        var pending = new List<Migration>();
        foreach (var migration in All.Where(m => !applied.ContainsKey(m.Version)))
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await using (var lockCommand = new NpgsqlCommand($"SELECT pg_advisory_xact_lock({MigrationLockKey})", connection, transaction))
            {
                await lockCommand.ExecuteNonQueryAsync(cancellationToken);
            }
            await using (var check = new NpgsqlCommand("SELECT count(*) FROM schema_migrations WHERE version = $1", connection, transaction))
            {
                check.Parameters.Add(new NpgsqlParameter<int> { TypedValue = migration.Version });
                if (await check.ExecuteScalarAsync(cancellationToken) is long and > 0)
                {
                    continue;
                }
            }
            await using (var command = new NpgsqlCommand(migration.Sql, connection, transaction))
            {
                try
                {
                    await command.ExecuteNonQueryAsync(cancellationToken);
                }
                catch (PostgresException ex)
                {
                    // Name the file: "55P03: canceling statement due to lock timeout" alone leaves the
                    // operator to work out which one from the lines before it.
                    throw new MigrationFailedException($"migration {migration.Name} failed and was rolled back (the ones before it stay applied): {ex.SqlState}: {ex.MessageText}", ex);
                }
            }
            await using (var record = new NpgsqlCommand("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", connection, transaction)
            {
                Parameters = { new() { Value = migration.Version }, new() { Value = migration.Name }, new() { Value = migration.Checksum } },
            })
            {
                await record.ExecuteNonQueryAsync(cancellationToken);
            }
            await transaction.CommitAsync(cancellationToken);
            pending.Add(migration);
            LogApplied(migration.Name);
        }
        if (pending.Count == 0)
        {
            LogUpToDate(LatestVersion);
        }
        return pending;
    }

    public async Task<SchemaState> GetStateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var exists = new NpgsqlCommand("SELECT to_regclass('schema_migrations') IS NOT NULL", connection);
        var checksums = new Dictionary<int, string>();
        if ((bool)(await exists.ExecuteScalarAsync(cancellationToken))!)
        {
            await using var command = new NpgsqlCommand("SELECT version, checksum FROM schema_migrations", connection);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                checksums[reader.GetInt32(0)] = reader.GetString(1);
            }
        }
        var applied = checksums.Count == 0 ? 0 : checksums.Keys.Max();
        return new SchemaState(applied, LatestVersion)
        {
            Missing = [.. All.Select(m => m.Version).Where(v => v < applied && !checksums.ContainsKey(v))],
            Changed = [.. All.Where(m => checksums.TryGetValue(m.Version, out var stored) && stored != m.Checksum).Select(m => m.Version)],
        };
    }

    /// <summary>
    /// Every migration as one plain SQL script a DBA can read and run with psql; each file is
    /// wrapped in its own transaction and recorded in schema_migrations like the migrate verb does.
    /// </summary>
    public static string Script()
    {
        var script = new StringBuilder()
            .AppendLine("-- OutboxComms schema script, generated by `OutboxComms.Worker migrate --script`.")
            .AppendLine("-- Apply with: psql \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -f outboxcomms.sql")
            .AppendLine(BookkeepingSql);
        foreach (var migration in All)
        {
            script.AppendLine(CultureInvariant($"-- ===== {migration.Name} ====="))
                .AppendLine("BEGIN;")
                .AppendLine(migration.Sql.TrimEnd())
                .AppendLine(CultureInvariant($"INSERT INTO schema_migrations (version, name, checksum) VALUES ({migration.Version}, '{migration.Name}', '{migration.Checksum}');"))
                .AppendLine("COMMIT;")
                .AppendLine();
        }
        return script.ToString();
    }

    private static string CultureInvariant(FormattableString text) => FormattableString.Invariant(text);

    private static List<Migration> LoadEmbedded()
    {
        var assembly = typeof(SchemaMigrator).Assembly;
        var migrations = new List<Migration>();
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith("migrations/", StringComparison.Ordinal)))
        {
            var name = resource["migrations/".Length..];
            var version = int.Parse(name.AsSpan(0, name.IndexOf('_', StringComparison.Ordinal)), System.Globalization.CultureInfo.InvariantCulture);
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            migrations.Add(new Migration(version, name, reader.ReadToEnd()));
        }
        migrations.Sort((a, b) => a.Version.CompareTo(b.Version));
        if (migrations.Count == 0 || migrations.Select(m => m.Version).Distinct().Count() != migrations.Count)
        {
            throw new InvalidOperationException("The embedded migrations are missing or have duplicate version numbers.");
        }
        return migrations;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied migration {Migration}")]
    private partial void LogApplied(string migration);

    [LoggerMessage(Level = LogLevel.Information, Message = "Database schema is up to date at version {Version}")]
    private partial void LogUpToDate(int version);
}

/// <summary>A migration file that PostgreSQL refused; its message names the file.</summary>
public sealed class MigrationFailedException(string message, Exception inner) : Exception(message, inner);
