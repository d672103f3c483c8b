using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Ops;

namespace OutboxComms.Tests.Ops;

public sealed class PurgeCompanyCommandTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static CancellationToken Cancel => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Purging_counts_by_default_refuses_an_active_company_and_with_execute_deletes_every_row_of_a_deactivated_one_after_exporting_its_consents()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var other = await TestData.CreateCompanyAsync(db.DataSource);
        foreach (var owner in new[] { company, other })
        {
            var customer = await TestData.CreateCustomerAsync(db.DataSource, owner);
            await TestData.ScalarAsync<int>(db.DataSource, """
                WITH m AS (INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status)
                           SELECT $1, $2, 'INVOICE', 'EMAIL', 'x', 'SENT' FROM generate_series(1, 1500) RETURNING company_id, id),
                a AS (INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, outcome) SELECT id, company_id, 1, 'EMAIL', 'SENT' FROM m),
                f AS (INSERT INTO communication_attachments (company_id, message_id, file_name, content) SELECT company_id, id, 'a.pdf', '\x25' FROM m),
                r AS (INSERT INTO message_replays (company_id, message_id, replayed_at, replayed_by, previous_status) SELECT company_id, id, now(), 't', 'FAILED' FROM m),
                c AS (INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by) VALUES ($1, $2, 'EMAIL', true, 'api', 'x')),
                w AS (INSERT INTO webhook_events (company_id, provider, event_key, payload, outcome) VALUES ($1, 'twilio', 'k', '{}', 'APPLIED')),
                n AS (INSERT INTO webhook_nonces (company_id, provider, nonce, body_sha256) VALUES ($1, 'twilio', 'n', '\x00')),
                fr AS (INSERT INTO reminder_frequency_state (customer_id, type, last_sent_at) VALUES ($2, 'PAYMENT_REMINDER', now())),
                rm AS (INSERT INTO reminders (company_id, customer_id, type, reference, due_date, time_zone, due_at, grace_ends_at)
                       VALUES ($1, $2, 'PAYMENT_REMINDER', 'INV-1', current_date, 'Asia/Kolkata', now(), now()))
                INSERT INTO api_keys (company_id, name, key_prefix, key_hash) VALUES ($1, 'k', 'p', gen_random_uuid()::text::bytea) RETURNING 1
                """, owner, customer);
        }
        // Messages, attempts, files and replays 1,500 each; a customer, a consent, a report, a nonce, a key, settings.
        var before = await Rows(company);
        Assert.True(before > 4 * 1500, $"{before} rows");
        var othersBefore = await Rows(other);
        var output = new StringWriter();
        var errors = new StringWriter();
        string[] args = ["--company", company.ToString()];

        Assert.Equal(1, await PurgeCompanyCommand.RunAsync(args, db.DataSource, output, errors, Cancel));
        Assert.Contains("is active; deactivate it first", errors.ToString(), StringComparison.Ordinal);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE companies SET deactivated_at = now() WHERE id = $1 RETURNING 1", company);

        Assert.Equal(0, await PurgeCompanyCommand.RunAsync(args, db.DataSource, output, errors, Cancel));
        Assert.Matches(@"communication_logs\s+1,500", output.ToString());
        Assert.Contains("Nothing was deleted", output.ToString(), StringComparison.Ordinal);
        Assert.Equal(before, await Rows(company));

        var consents = Path.Combine(Path.GetTempPath(), $"consents-{Guid.NewGuid():N}.csv");
        try
        {
            Assert.Equal(0, await PurgeCompanyCommand.RunAsync([.. args, "--consents-to", consents, "--execute"], db.DataSource, output, errors, Cancel));
            Assert.Equal(2, (await File.ReadAllLinesAsync(consents, Cancel)).Length);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(consents)); // clients' names
            }
            // Never over an existing file: refused before anything is read.
            Assert.Equal(2, await PurgeCompanyCommand.RunAsync(["--company", other.ToString(), "--consents-to", consents, "--execute"], db.DataSource, output, errors, Cancel));
            Assert.Contains("exists already", errors.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(consents);
        }

        Assert.Equal(0, await Rows(company));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM companies WHERE id = $1", company));
        Assert.Equal(othersBefore, await Rows(other));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource,
            "SELECT count(*) FROM reminder_frequency_state f WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = f.customer_id)"));
        Assert.Equal(1, await PurgeCompanyCommand.RunAsync(args, db.DataSource, output, errors, Cancel));
        Assert.Contains($"there is no company {company}", errors.ToString(), StringComparison.Ordinal);
        Assert.Equal(2, await PurgeCompanyCommand.RunAsync(["--company", "x"], db.DataSource, output, errors, Cancel));
        Assert.Contains("--company needs a company id", errors.ToString(), StringComparison.Ordinal);
        Assert.Equal(2, await PurgeCompanyCommand.RunAsync(["--company", company.ToString(), "--exec"], db.DataSource, output, errors, Cancel));

        // Every table that names a company: in each, nothing of the purged company is left.
        async Task<long> Rows(Guid owner)
        {
            long total = 0;
            foreach (var table in await CompanyTablesAsync())
            {
                total += await TestData.ScalarAsync<long>(db.DataSource, $"SELECT count(*) FROM {table} WHERE company_id = $1", owner);
            }
            return total;
        }
    }

    [Fact]
    public async Task Attempts_and_files_of_a_message_deleted_by_hand_go_with_their_company_and_no_other()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var other = await TestData.CreateCompanyAsync(db.DataSource);
        foreach (var owner in new[] { company, other })
        {
            // A message with its attempt and file, then the message deleted by hand (as a DBA might).
            await TestData.ScalarAsync<int>(db.DataSource, """
                WITH m AS (INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, status)
                           VALUES ($1, 'CL-1', 'INVOICE', 'EMAIL', 'x', 'FAILED') RETURNING company_id, id),
                a AS (INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, outcome, error_message)
                      SELECT id, company_id, 1, 'EMAIL', 'PERMANENT_FAILURE', 'mailbox rao.client@example.in unavailable' FROM m),
                f AS (INSERT INTO communication_attachments (company_id, message_id, file_name, content) SELECT company_id, id, 'INV-1.pdf', '\x25' FROM m)
                SELECT 1 FROM m
                """, owner);
            await TestData.ScalarAsync<int>(db.DataSource, "WITH d AS (DELETE FROM communication_logs WHERE company_id = $1 RETURNING 1) SELECT count(*)::int FROM d", owner);
        }
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE companies SET deactivated_at = now() WHERE id = $1 RETURNING 1", company);
        var output = new StringWriter();

        Assert.Equal(0, await PurgeCompanyCommand.RunAsync(["--company", company.ToString(), "--execute"], db.DataSource, output, new StringWriter(), Cancel));

        Assert.Contains("Deleted 2 attempts and files whose message had been deleted before the purge.", output.ToString(), StringComparison.Ordinal);
        foreach (var table in new[] { "communication_attempts", "communication_attachments" })
        {
            Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, $"SELECT count(*) FROM {table} WHERE company_id = $1", company));
            Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, $"SELECT count(*) FROM {table} WHERE company_id = $1", other));
        }
    }

    [Fact]
    public async Task A_file_stored_without_its_company_goes_with_the_purged_companys_message_unless_another_company_has_that_id()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var other = await TestData.CreateCompanyAsync(db.DataSource);
        var mine = await TestData.ScalarAsync<long>(db.DataSource,
            "INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, status) VALUES ($1, 'CL-1', 'INVOICE', 'EMAIL', 'x', 'SENT') RETURNING id", company);
        var shared = await TestData.ScalarAsync<long>(db.DataSource,
            "INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, status) VALUES ($1, 'CL-1', 'INVOICE', 'EMAIL', 'x', 'SENT') RETURNING id", company);
        // Another company's import gave one of its rows the same id (a COPY of ids), with a file of its own.
        await TestData.ScalarAsync<long>(db.DataSource, """
            INSERT INTO communication_logs (id, company_id, customer_external_id, type, channel, content, status)
            OVERRIDING SYSTEM VALUE VALUES ($2, $1, 'CL-9', 'INVOICE', 'EMAIL', 'y', 'SENT') RETURNING id
            """, other, shared);
        // Files as a producer wrote them before migration 0031: no company.
        await TestData.ScalarAsync<int>(db.DataSource,
            "WITH f AS (INSERT INTO communication_attachments (message_id, file_name, content) VALUES ($1, 'mine.pdf', '\\x25'), ($2, 'shared.pdf', '\\x25') RETURNING 1) SELECT count(*)::int FROM f",
            mine, shared);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE companies SET deactivated_at = now() WHERE id = $1 RETURNING 1", company);

        Assert.Equal(0, await PurgeCompanyCommand.RunAsync(["--company", company.ToString(), "--execute"], db.DataSource, new StringWriter(), new StringWriter(), Cancel));

        Assert.Equal("shared.pdf", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT string_agg(file_name, ',') FROM communication_attachments WHERE message_id IN ($1, $2)", mine, shared));
        await TestData.ScalarAsync<int>(db.DataSource, "WITH d AS (DELETE FROM communication_attachments WHERE message_id = $1 RETURNING 1) SELECT count(*)::int FROM d", shared);
        await TestData.ScalarAsync<int>(db.DataSource, "WITH d AS (DELETE FROM communication_logs WHERE company_id = $1 RETURNING 1) SELECT count(*)::int FROM d", other);
    }

    [Fact]
    public async Task A_purge_stops_when_the_company_is_reactivated_while_it_runs()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await TestData.ScalarAsync<int>(db.DataSource, """
            WITH m AS (INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status)
                       SELECT $1, $2, 'INVOICE', 'EMAIL', 'x', 'SENT' FROM generate_series(1, 2500))
            UPDATE companies SET deactivated_at = now() WHERE id = $1 RETURNING 1
            """, company, customer);
        // The admin reactivates it as the first batch is deleted.
        var trigger = $"reactivate_{company:N}";
        await TestData.ScalarAsync<int>(db.DataSource, $"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE companies SET deactivated_at = NULL WHERE id = '{company}' AND deactivated_at IS NOT NULL;
                RETURN NULL;
            END $$;
            CREATE TRIGGER {trigger} AFTER DELETE ON communication_logs FOR EACH ROW WHEN (OLD.company_id = '{company}') EXECUTE FUNCTION {trigger}();
            SELECT 1
            """);
        try
        {
            var errors = new StringWriter();

            Assert.Equal(1, await PurgeCompanyCommand.RunAsync(["--company", company.ToString(), "--execute"], db.DataSource, new StringWriter(), errors, Cancel));

            Assert.Contains("was reactivated during the purge", errors.ToString(), StringComparison.Ordinal);
            Assert.Equal(1500, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
            Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM customers WHERE company_id = $1", company));
        }
        finally
        {
            await TestData.ScalarAsync<int>(db.DataSource, $"DROP TRIGGER {trigger} ON communication_logs; DROP FUNCTION {trigger}(); SELECT 1");
        }
    }

    [Fact]
    public async Task A_message_a_producer_writes_while_the_purge_runs_goes_with_its_file()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE companies SET deactivated_at = now() WHERE id = $1 RETURNING 1", company);
        // The business app writes one more invoice with its PDF as the customers are being deleted.
        var trigger = $"late_{company:N}";
        await TestData.ScalarAsync<int>(db.DataSource, $"""
            CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                WITH m AS (INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, status)
                           VALUES ('{company}', 'CL-LATE', 'INVOICE', 'EMAIL', 'late', 'FAILED') RETURNING company_id, id)
                INSERT INTO communication_attachments (company_id, message_id, file_name, content) SELECT company_id, id, 'late.pdf', '%' FROM m;
                RETURN NULL;
            END $$;
            CREATE TRIGGER {trigger} AFTER DELETE ON customers FOR EACH ROW WHEN (OLD.company_id = '{company}') EXECUTE FUNCTION {trigger}();
            SELECT 1
            """);
        try
        {
            Assert.Equal(0, await PurgeCompanyCommand.RunAsync(["--company", company.ToString(), "--execute"], db.DataSource, new StringWriter(), new StringWriter(), Cancel));
        }
        finally
        {
            await TestData.ScalarAsync<int>(db.DataSource, $"DROP TRIGGER {trigger} ON customers; DROP FUNCTION {trigger}(); SELECT 1");
        }

        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_attachments WHERE company_id = $1", company));
    }

    [Fact]
    public async Task Every_table_keyed_by_a_customer_alone_is_purged_with_the_customers()
    {
        var tables = new List<string>();
        await using (var command = db.DataSource.CreateCommand("""
            SELECT c.table_name FROM information_schema.columns c
             WHERE c.table_schema = current_schema() AND c.column_name = 'customer_id'
               AND NOT EXISTS (SELECT 1 FROM information_schema.columns o WHERE o.table_schema = c.table_schema AND o.table_name = c.table_name AND o.column_name = 'company_id')
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid = c.table_name::regclass AND k.confrelid = 'customers'::regclass AND k.confdeltype = 'c')
            """))
        await using (var reader = await command.ExecuteReaderAsync(Cancel))
        {
            while (await reader.ReadAsync(Cancel))
            {
                tables.Add(reader.GetString(0));
            }
        }

        Assert.Equal(PurgeCompanyCommand.CustomerTables.Order(), tables.Order());
    }

    [Fact]
    public async Task Every_table_that_names_a_company_is_purged_explicitly_or_by_a_cascade_from_companies()
    {
        var cascaded = new List<string>();
        await using (var command = db.DataSource.CreateCommand("""
            SELECT DISTINCT c.conrelid::regclass::text FROM pg_constraint c
             WHERE c.contype = 'f' AND c.confrelid = 'companies'::regclass AND c.confdeltype = 'c'
            """))
        await using (var reader = await command.ExecuteReaderAsync(Cancel))
        {
            while (await reader.ReadAsync(Cancel))
            {
                cascaded.Add(reader.GetString(0));
            }
        }

        var uncovered = (await CompanyTablesAsync()).Except(cascaded).Except(PurgeCompanyCommand.ExplicitTables).ToList();

        Assert.Empty(uncovered);
    }

    private async Task<List<string>> CompanyTablesAsync()
    {
        var tables = new List<string>();
        await using var command = db.DataSource.CreateCommand("""
            SELECT table_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND column_name = 'company_id' AND table_name <> 'companies'
             ORDER BY table_name
            """);
        await using var reader = await command.ExecuteReaderAsync(Cancel);
        while (await reader.ReadAsync(Cancel))
        {
            tables.Add(reader.GetString(0));
        }
        return tables;
    }
}
