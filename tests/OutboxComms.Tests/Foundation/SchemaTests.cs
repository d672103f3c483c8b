using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OutboxComms.Core.Data;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Foundation;

public sealed class SchemaTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task Migrate_under_a_role_that_may_only_read_and_write_rows_finds_nothing_to_do()
    {
        // Workers run migrate at start by default; behind a least-privilege role (no CREATE on the
        // schema) an up-to-date database must not make them fail.
        var role = "outbox_dml_" + Guid.NewGuid().ToString("N")[..12];
        await using (var setup = db.DataSource.CreateCommand(
            $"CREATE ROLE {role} LOGIN PASSWORD 'dml'; REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON schema_migrations TO {role}"))
        {
            await setup.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        try
        {
            var connectionString = new NpgsqlConnectionStringBuilder(db.ConnectionString) { Username = role, Password = "dml" }.ConnectionString;
            await using var dataSource = NpgsqlDataSource.Create(connectionString);

            var applied = await new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).ApplyAsync(TestContext.Current.CancellationToken);

            Assert.Empty(applied);
        }
        finally
        {
            await using var cleanup = db.DataSource.CreateCommand($"DROP OWNED BY {role}; DROP ROLE {role}");
            await cleanup.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task The_EF_model_maps_every_property_onto_an_existing_column_of_a_compatible_type()
    {
        var columns = new Dictionary<(string Table, string Column), string>();
        await using (var command = db.DataSource.CreateCommand(
            "SELECT table_name, column_name, udt_name FROM information_schema.columns WHERE table_schema = 'public'"))
        await using (var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken))
        {
            while (await reader.ReadAsync(TestContext.Current.CancellationToken))
            {
                columns[(reader.GetString(0), reader.GetString(1))] = reader.GetString(2);
            }
        }

        await using var context = db.CreateDbContext();
        var problems = new List<string>();
        var mapped = 0;
        foreach (var entity in context.Model.GetEntityTypes())
        {
            var table = entity.GetTableName()!;
            var store = Microsoft.EntityFrameworkCore.Metadata.StoreObjectIdentifier.Table(table, null);
            foreach (var property in entity.GetProperties())
            {
                var column = property.GetColumnName(store)!;
                var modelType = property.GetRelationalTypeMapping().StoreType;
                if (!columns.TryGetValue((table, column), out var dbType))
                {
                    problems.Add($"{table}.{column} ({entity.ClrType.Name}.{property.Name}) does not exist");
                }
                else if (!SameType(modelType, dbType))
                {
                    problems.Add($"{table}.{column}: model says {modelType}, database has {dbType}");
                }
                mapped++;
            }
        }

        Assert.Empty(problems);
        Assert.True(mapped > 100, $"only {mapped} properties mapped");
    }

    [Fact]
    public async Task Every_secret_column_holds_ciphertext_bytes_only()
    {
        var secretLike = await ColumnsAsync("column_name ~ '(password|api_key|secret|token)'");
        Assert.NotEmpty(secretLike);
        Assert.All(secretLike, c => Assert.True(c.Name.EndsWith("_encrypted", StringComparison.Ordinal) && c.Type == "bytea", $"{c.Name} is {c.Type}"));

        // Each secret's ciphertext is bound to a fixed label, its column: every byte[] property is listed, with the column the model maps it to.
        await using var context = db.CreateDbContext();
        var entity = context.Model.FindEntityType(typeof(OutboxComms.Core.Companies.CompanySettings))!;
        var secretProperties = typeof(OutboxComms.Core.Companies.CompanySettings).GetProperties().Where(p => p.PropertyType == typeof(byte[])).Select(p => p.Name).Order(StringComparer.Ordinal);
        Assert.Equal(secretProperties, OutboxComms.Core.Companies.CompanySettings.SecretColumns.Keys.Order(StringComparer.Ordinal));
        Assert.All(OutboxComms.Core.Companies.CompanySettings.SecretColumns, pair => Assert.Equal(entity.FindProperty(pair.Key)!.GetColumnName(), pair.Value));
        Assert.Equal(secretLike.Select(c => c.Name).Order(StringComparer.Ordinal), OutboxComms.Core.Companies.CompanySettings.SecretColumns.Values.Select(c => $"company_settings.{c}").Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Migrating_again_is_a_no_op_and_concurrent_migrators_apply_each_file_once()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            var migrators = Enumerable.Range(0, 3).Select(_ => new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance)).ToList();

            var applied = await Task.WhenAll(migrators.Select(m => m.ApplyAsync(TestContext.Current.CancellationToken)));

            Assert.Equal(SchemaMigrator.All.Count, applied.Sum(a => a.Count));
            Assert.Empty(await migrators[0].ApplyAsync(TestContext.Current.CancellationToken));
            var state = await migrators[0].GetStateAsync(TestContext.Current.CancellationToken);
            Assert.True(state.IsCurrent);
            Assert.Equal(SchemaMigrator.LatestVersion, state.AppliedVersion);
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task Each_migration_commits_on_its_own_so_one_waiting_for_a_lock_holds_none_of_the_earlier_ones()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: true);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            var ct = TestContext.Current.CancellationToken;
            // 0022 and 0023 pending again: 0022 alters communication_logs, 0023 webhook_events.
            await using (var undo = dataSource.CreateCommand("""
                DELETE FROM schema_migrations WHERE version IN (22, 23);
                ALTER TABLE communication_logs DROP COLUMN split_from;
                DROP INDEX ix_webhook_events_waiting;
                ALTER TABLE webhook_events DROP COLUMN error, DROP COLUMN signal;
                """))
            {
                await undo.ExecuteNonQueryAsync(ct);
            }
            await using var holder = await dataSource.OpenConnectionAsync(ct);
            await using var hold = await holder.BeginTransactionAsync(ct);
            await using (var lockEvents = new NpgsqlCommand("LOCK TABLE webhook_events IN ACCESS SHARE MODE", holder, hold))
            {
                await lockEvents.ExecuteNonQueryAsync(ct);
            }

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var migrating = new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).ApplyAsync(stop.Token);
            // 0023 waits for webhook_events; 0022 is committed by then, and its table free.
            for (var waited = 0; await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM schema_migrations WHERE version = 22") == 0
                                 || await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM pg_locks WHERE relation = 'webhook_events'::regclass AND NOT granted") == 0; waited++)
            {
                Assert.True(waited < 100, "0022 was not committed while 0023 waited for its lock");
                await Task.Delay(50, ct);
            }
            await using (var insert = dataSource.CreateCommand("BEGIN; SET LOCAL lock_timeout = '2s'; LOCK TABLE communication_logs IN ROW EXCLUSIVE MODE; COMMIT"))
            {
                await insert.ExecuteNonQueryAsync(ct);   // a producer's insert is not held up by 0022's lock
            }
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => migrating);
            await hold.RollbackAsync(ct);

            Assert.Equal(0L, await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM schema_migrations WHERE version = 23"));
            var rest = await new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).ApplyAsync(ct);
            Assert.Equal([23], rest.Select(m => m.Version));
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task A_migration_missing_below_the_latest_applied_is_not_current()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: true);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            var skipped = SchemaMigrator.All[^3].Version;
            // As when someone applied a later file by hand and never the one before it.
            await using (var forget = dataSource.CreateCommand($"DELETE FROM schema_migrations WHERE version = {skipped}"))
            {
                await forget.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }

            var state = await new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).GetStateAsync(TestContext.Current.CancellationToken);

            Assert.False(state.IsCurrent);
            Assert.Equal(SchemaMigrator.LatestVersion, state.AppliedVersion);
            Assert.Equal([skipped], state.Missing);
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task A_migration_applied_from_another_version_of_its_file_is_not_current()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: true);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            var edited = SchemaMigrator.All[^2].Version;
            // As when a file was edited after a database applied it: the workers refuse to migrate.
            await using (var change = dataSource.CreateCommand($"UPDATE schema_migrations SET checksum = 'an earlier version' WHERE version = {edited}"))
            {
                await change.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }
            var migrator = new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance);

            var state = await migrator.GetStateAsync(TestContext.Current.CancellationToken);

            Assert.False(state.IsCurrent);
            Assert.Empty(state.Missing);
            Assert.Equal([edited], state.Changed);
            await Assert.ThrowsAnyAsync<InvalidOperationException>(() => migrator.ApplyAsync(TestContext.Current.CancellationToken));
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task The_plain_SQL_script_builds_the_same_schema_as_the_migrate_verb()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            await using (var script = dataSource.CreateCommand(SchemaMigrator.Script()))
            {
                await script.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }

            var state = await new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).GetStateAsync(TestContext.Current.CancellationToken);
            Assert.True(state.IsCurrent);
            Assert.Equal(await SignatureAsync(db.DataSource), await SignatureAsync(dataSource));
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task Migration_0047_clears_every_empty_idempotency_key_and_then_refuses_new_ones()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            foreach (var migration in SchemaMigrator.All.TakeWhile(m => m.Version < 47))
            {
                await MigrateAsync(dataSource, migration.Sql);
            }
            var company = await TestData.CreateCompanyAsync(dataSource);
            // A producer's "" keys: its company's first message went in, and one naming no company that exists.
            await TestData.ScalarAsync<int>(dataSource, """
                INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, idempotency_key)
                VALUES ($1, 'CL-1', 'INVOICE', 'EMAIL', 'a', ''), ($1, 'CL-1', 'INVOICE', 'EMAIL', 'b', 'INV-1042'),
                       (gen_random_uuid(), 'CL-1', 'INVOICE', 'EMAIL', 'c', '')
                RETURNING 1
                """, company);

            await MigrateAsync(dataSource, SchemaMigrator.All.Single(m => m.Version == 47).Sql);

            Assert.Equal("a:,b:INV-1042,c:", await TestData.ScalarAsync<string>(dataSource,
                "SELECT string_agg(content || ':' || coalesce(idempotency_key, ''), ',' ORDER BY content) FROM communication_logs"));
            // Every old row can still be written (as a claim writes it), and a new "" is refused.
            Assert.Equal(3, await TestData.ScalarAsync<int>(dataSource, "WITH u AS (UPDATE communication_logs SET locked_by = 'w' RETURNING 1) SELECT count(*)::int FROM u"));
            var refused = await Assert.ThrowsAsync<PostgresException>(() => TestData.ScalarAsync<int>(dataSource,
                "INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, idempotency_key) VALUES ($1, 'CL-1', 'INVOICE', 'EMAIL', 'd', '') ON CONFLICT DO NOTHING RETURNING 1", company));
            Assert.Equal("communication_logs_idempotency_key_not_blank", refused.ConstraintName);

        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task Migration_0018_files_the_general_updates_opt_outs_already_recorded_under_their_own_scope()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            var before = SchemaMigrator.All.TakeWhile(m => m.Version < 18).ToList();
            Assert.Equal(17, before[^1].Version);
            foreach (var migration in before)
            {
                await using var apply = dataSource.CreateCommand(migration.Sql);
                await apply.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }
            var company = await TestData.CreateCompanyAsync(dataSource);
            var customer = await TestData.CreateCustomerAsync(dataSource, company);
            // What 0006–0017 wrote for general updates (one-click, complaint, provider link), and
            // what stays a channel's record: an API caller's own email opt-out, and an opt-in.
            await using (var insert = dataSource.CreateCommand("""
                INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by) VALUES
                    ($1, $2, 'EMAIL', false, 'one-click unsubscribe from general updates', 'recipient'),
                    ($1, $2, 'EMAIL', false, 'spam complaint: no more general updates', 'MAILGUN'),
                    ($1, $2, 'EMAIL', false, 'unsubscribed through the email provider''s link: no more general updates', 'SENDGRID'),
                    ($1, $2, 'EMAIL', false, 'one-click unsubscribe from general updates', 'crm-key'),
                    ($1, $2, 'EMAIL', false, 'spam complaint: no more general updates', 'api-key:crm'),
                    ($1, $2, 'EMAIL', false, 'client asked by phone', 'crm-key'),
                    ($1, $2, 'WHATSAPP', true, 'signed engagement letter', 'crm-key')
                """))
            {
                insert.Parameters.AddWithValue(company);
                insert.Parameters.AddWithValue(customer);
                await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }

            await using (var migrate = dataSource.CreateCommand(SchemaMigrator.All.Single(m => m.Version == 18).Sql))
            {
                await migrate.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }

            Assert.Equal(
                "GENERAL_UPDATES/ALL/recipient,GENERAL_UPDATES/ALL/MAILGUN,GENERAL_UPDATES/ALL/SENDGRID,CHANNEL/EMAIL/crm-key,CHANNEL/EMAIL/api-key:crm,CHANNEL/EMAIL/crm-key,CHANNEL/WHATSAPP/crm-key",
                await TestData.ScalarAsync<string>(dataSource,
                    "SELECT string_agg(scope || '/' || coalesce(channel, 'ALL') || '/' || recorded_by, ',' ORDER BY id) FROM consent_records"));
            // A channel's record still needs its channel.
            await Assert.ThrowsAsync<PostgresException>(() => TestData.ScalarAsync<int>(dataSource,
                "INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by) VALUES ($1, $2, NULL, true, 'api', 'test') RETURNING 1", company, customer));
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    /// <summary>
    /// A migration whose header says to build its index first with CREATE INDEX CONCURRENTLY (on a
    /// large table) takes that index, and one whose build failed (left invalid) is refused — by the
    /// migration itself, or for 0012, which did not check, by 0030.
    /// </summary>
    [Theory]
    [InlineData(12, 30, "ix_communication_logs_provider_message_id")]
    [InlineData(20, 20, "ix_customers_number_suffix")]
    [InlineData(23, 23, "ix_webhook_events_waiting")]
    [InlineData(27, 27, "ix_webhook_events_waiting_received")]
    [InlineData(38, 38, "ix_communication_attachments_unpurged")]
    [InlineData(39, 39, "ix_reminders_customer")]
    [InlineData(40, 40, "ix_consent_records_company")]
    public async Task A_migration_takes_the_index_its_header_builds_concurrently_and_an_invalid_one_is_refused(int recipeIn, int refusedBy, string index)
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            foreach (var migration in SchemaMigrator.All.TakeWhile(m => m.Version < recipeIn))
            {
                await MigrateAsync(dataSource, migration.Sql);
            }
            // The header's recipe for a large table, run as an operator would.
            var header = SchemaMigrator.All.Single(m => m.Version == recipeIn).Sql;
            var recipe = string.Join('\n', header.Split('\n').Where(l => l.StartsWith("--   ", StringComparison.Ordinal)).Select(l => l[5..]));
            Assert.StartsWith($"CREATE INDEX CONCURRENTLY {index} ON ", recipe, StringComparison.Ordinal);
            await using (var build = dataSource.CreateCommand(recipe))
            {
                await build.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }
            // As a build that failed half-way leaves it.
            await TestData.ScalarAsync<int>(dataSource, $"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{index}'::regclass RETURNING 1");
            foreach (var migration in SchemaMigrator.All.Where(m => m.Version >= recipeIn && m.Version < refusedBy))
            {
                await MigrateAsync(dataSource, migration.Sql);
            }
            var guard = SchemaMigrator.All.Single(m => m.Version == refusedBy).Sql;

            var refused = await Assert.ThrowsAsync<PostgresException>(() => MigrateAsync(dataSource, guard));
            Assert.Contains($"{index} exists but is invalid", refused.MessageText, StringComparison.Ordinal);

            await TestData.ScalarAsync<int>(dataSource, $"UPDATE pg_index SET indisvalid = true WHERE indexrelid = '{index}'::regclass RETURNING 1");
            await MigrateAsync(dataSource, guard);
            Assert.Equal(1, await TestData.ScalarAsync<long>(dataSource, $"SELECT count(*) FROM pg_indexes WHERE indexname = '{index}'"));

        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    [Fact]
    public async Task A_migration_postgresql_refuses_is_named_in_the_error_and_leaves_nothing_recorded()
    {
        var connectionString = await db.Server.CreateDatabaseAsync(migrated: false);
        try
        {
            await using var dataSource = NpgsqlDataSource.Create(connectionString);
            // Something of the same name is already there, as on a database shared with another application.
            await TestData.ScalarAsync<int>(dataSource, "CREATE TABLE companies (legacy text); SELECT 1");

            var error = await Assert.ThrowsAsync<MigrationFailedException>(() => new SchemaMigrator(dataSource, NullLogger<SchemaMigrator>.Instance).ApplyAsync(TestContext.Current.CancellationToken));

            Assert.StartsWith("migration 0001_initial.sql failed and was rolled back (the ones before it stay applied): 42P07: ", error.Message, StringComparison.Ordinal);
            Assert.Equal(0, await TestData.ScalarAsync<long>(dataSource, "SELECT count(*) FROM schema_migrations"));
        }
        finally
        {
            await db.Server.DropDatabaseAsync(connectionString);
        }
    }

    private static async Task<string> SignatureAsync(NpgsqlDataSource dataSource)
    {
        await using var command = dataSource.CreateCommand("""
            SELECT string_agg(x, E'\n' ORDER BY x) FROM (
              SELECT table_name || '.' || column_name || ':' || udt_name || ':' || coalesce(column_default, '') AS x
                FROM information_schema.columns WHERE table_schema = 'public'
              UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
              UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal) s
            """);
        return (string)(await command.ExecuteScalarAsync())!;
    }

    private async Task<List<(string Name, string Type)>> ColumnsAsync(string predicate)
    {
        var result = new List<(string, string)>();
        await using var command = db.DataSource.CreateCommand($"SELECT table_name || '.' || column_name, udt_name FROM information_schema.columns WHERE table_schema = 'public' AND {predicate}");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            result.Add((reader.GetString(0), reader.GetString(1)));
        }
        return result;
    }

    private static bool SameType(string model, string database)
    {
        static string Normalise(string t) => t.Split('(')[0].Trim() switch
        {
            var array when array.EndsWith("[]", StringComparison.Ordinal) => "_" + Normalise(array[..^2]),
            "timestamp with time zone" => "timestamptz",
            "time without time zone" => "time",
            "integer" => "int4",
            "bigint" => "int8",
            "boolean" => "bool",
            var other => other,
        };
        return Normalise(model) == Normalise(database);
    }

    /// <summary>One migration file applied as the migrator applies it: in a transaction of its own.</summary>
    private static async Task MigrateAsync(NpgsqlDataSource dataSource, string sql)
    {
        await using var connection = await dataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken);
        await using var migrate = new NpgsqlCommand(sql, connection, transaction);
        await migrate.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        await transaction.CommitAsync(TestContext.Current.CancellationToken);
    }
}
