using Npgsql;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Foundation;

/// <summary>The contract a business app relies on when it enqueues by plain SQL in its own transaction.</summary>
public sealed class OutboxSqlContractTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private const string InvoiceTable = "CREATE TABLE IF NOT EXISTS invoices (id serial PRIMARY KEY, number text NOT NULL, amount numeric NOT NULL)";

    private const string MinimalInsert =
        "INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content) VALUES ($1, $2, 'INVOICE', 'EMAIL', 'Invoice INV-1042', 'Please find your invoice attached.')";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_message_exists_if_and_only_if_the_business_change_commits(bool commit)
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using (var ddl = db.DataSource.CreateCommand(InvoiceTable))
        {
            await ddl.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using (var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken))
        await using (var transaction = await connection.BeginTransactionAsync(TestContext.Current.CancellationToken))
        {
            await using var invoice = new NpgsqlCommand("INSERT INTO invoices (number, amount) VALUES ($1, 11800)", connection, transaction)
            {
                Parameters = { new() { Value = $"INV-{company:N}" } },
            };
            await invoice.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            await using var message = new NpgsqlCommand(MinimalInsert, connection, transaction)
            {
                Parameters = { new() { Value = company }, new() { Value = customer } },
            };
            await message.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);

            if (commit)
            {
                await transaction.CommitAsync(TestContext.Current.CancellationToken);
            }
            else
            {
                await transaction.RollbackAsync(TestContext.Current.CancellationToken);
            }
        }

        var invoices = await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM invoices WHERE number = $1", $"INV-{company:N}");
        var pending = await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING'", company);
        var total = await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company);
        Assert.Equal(commit ? 1 : 0, invoices);
        Assert.Equal(commit ? 1 : 0, pending);
        Assert.Equal(pending, total);
    }

    [Fact]
    public async Task A_minimal_insert_gets_every_other_column_from_defaults()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using (var insert = db.DataSource.CreateCommand(MinimalInsert))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(customer);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using var context = db.CreateDbContext();
        var message = Assert.Single(context.CommunicationLogs.Where(m => m.CompanyId == company));
        Assert.Equal(DeliveryStatus.Pending, message.Status);
        Assert.Equal(MessageType.Invoice, message.Type);
        Assert.Equal(Channel.Email, message.Channel);
        Assert.Equal(0, message.RetryCount);
        Assert.Equal(3, message.MaxRetries);
        Assert.Equal("{}", message.TemplateData.RootElement.GetRawText());
        Assert.Equal("{}", message.Metadata.RootElement.GetRawText());
        Assert.True(message.Id > 0);
        Assert.InRange(message.NextAttemptAt, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.Null(message.LockedBy);
        Assert.Null(message.SentAt);
    }

    [Fact]
    public async Task A_template_message_may_name_the_customer_by_the_business_apps_own_id()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await TestData.CreateCustomerAsync(db.DataSource, company, externalId: "CLIENT-77");
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO communication_logs (company_id, customer_external_id, type, channel, template_key, template_data) VALUES ($1, 'CLIENT-77', 'COMPLIANCE_REMINDER', 'PREFERRED', 'mgt7-reminder', '{\"form\":\"MGT-7\"}')"))
        {
            insert.Parameters.AddWithValue(company);
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using var context = db.CreateDbContext();
        var message = Assert.Single(context.CommunicationLogs.Where(m => m.CompanyId == company));
        Assert.Equal(Channel.Preferred, message.Channel);
        Assert.Equal("MGT-7", message.TemplateData.RootElement.GetProperty("form").GetString());
    }

    [Theory]
    [InlineData("INSERT INTO communication_logs (company_id, customer_id, type, channel, content) VALUES ($1, $2, 'NEWSLETTER', 'EMAIL', 'x')", "communication_logs_type_check")]
    [InlineData("INSERT INTO communication_logs (company_id, customer_id, type, channel, content) VALUES ($1, $2, 'INVOICE', 'FAX', 'x')", "communication_logs_channel_check")]
    [InlineData("INSERT INTO communication_logs (company_id, customer_id, type, channel) VALUES ($1, $2, 'INVOICE', 'EMAIL')", "communication_logs_check")]
    [InlineData("INSERT INTO communication_logs (company_id, customer_id, type, channel, content, idempotency_key) VALUES ($1, $2, 'INVOICE', 'EMAIL', 'x', '') ON CONFLICT DO NOTHING", "communication_logs_idempotency_key_not_blank")]
    public async Task A_structurally_invalid_insert_is_refused_with_the_constraint_named(string sql, string constraint)
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var insert = db.DataSource.CreateCommand(sql);
        insert.Parameters.AddWithValue(company);
        insert.Parameters.AddWithValue(customer);

        var error = await Assert.ThrowsAsync<PostgresException>(() => insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        Assert.Equal(PostgresErrorCodes.CheckViolation, error.SqlState);
        Assert.Equal(constraint, error.ConstraintName);
    }

    [Fact]
    public async Task A_producer_role_granted_by_the_ops_script_enqueues_with_files_and_cannot_write_the_workers_columns()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var role = $"producer_{company:N}";
        var grants = (await File.ReadAllTextAsync(Path.Combine(DeploymentFileTests.RepositoryRoot(), "ops", "sql", "producer-role.sql"), TestContext.Current.CancellationToken))
            .Replace(":\"role\"", $"\"{role}\"", StringComparison.Ordinal);
        await TestData.ScalarAsync<int>(db.DataSource, $"CREATE ROLE \"{role}\"; {grants}; SELECT 1");
        try
        {
            await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
            await Execute($"SET ROLE \"{role}\"");

            // The README's recipe: a message and its file in one statement, retried safely.
            await Execute("""
                WITH m AS (INSERT INTO communication_logs (company_id, customer_external_id, type, channel, subject, content, idempotency_key)
                           VALUES ($1, 'CLIENT-77', 'INVOICE', 'EMAIL', 'Invoice INV-1042', 'Your invoice is attached.', 'INV-1042')
                           ON CONFLICT DO NOTHING RETURNING company_id, id)
                INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content)
                SELECT m.company_id, m.id, 'INV-1042.pdf', 'application/pdf', '\x25504446' FROM m
                """);
            foreach (var (column, value) in new[] { ("status", "'SENT'"), ("locked_until", "now() + interval '1 day'"), ("replay_count", "2147483647"), ("split_from", "1") })
            {
                var refused = await Assert.ThrowsAsync<PostgresException>(() => Execute(
                    $"INSERT INTO communication_logs (company_id, customer_external_id, type, channel, content, {column}) VALUES ($1, 'CLIENT-77', 'INVOICE', 'EMAIL', 'x', {value})"));
                Assert.Equal((PostgresErrorCodes.InsufficientPrivilege, "permission denied for table communication_logs"), (refused.SqlState, refused.MessageText));
            }
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, (await Assert.ThrowsAsync<PostgresException>(() => Execute("SELECT count(*) FROM customers"))).SqlState);
            await Execute("RESET ROLE");

            Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource,
                "SELECT count(*) FROM communication_logs m JOIN communication_attachments a ON a.company_id = m.company_id AND a.message_id = m.id WHERE m.company_id = $1 AND m.status = 'PENDING'", company));

            async Task Execute(string sql)
            {
                await using var command = new NpgsqlCommand(sql, connection);
                if (sql.Contains("$1", StringComparison.Ordinal))
                {
                    command.Parameters.AddWithValue(company);
                }
                await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
            }
        }
        finally
        {
            await TestData.ScalarAsync<int>(db.DataSource, $"DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\"; SELECT 1");
        }
    }

    [Fact]
    public async Task A_row_naming_no_company_commits_and_a_company_with_messages_cannot_be_deleted()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await Outbox.EnqueueAsync(db.DataSource, company, customer);
        // No foreign key on the company (migration 0010): the producer's transaction is not aborted; the worker fails the row.
        var orphan = await Outbox.EnqueueAsync(db.DataSource, Guid.NewGuid(), customer);
        Assert.Equal("PENDING", (await Outbox.GetAsync(db.DataSource, orphan)).Status);

        foreach (var sql in new[] { "DELETE FROM companies WHERE id = $1", "UPDATE companies SET id = gen_random_uuid() WHERE id = $1" })
        {
            await using var change = db.DataSource.CreateCommand(sql);
            change.Parameters.AddWithValue(company);
            var error = await Assert.ThrowsAsync<PostgresException>(() => change.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
            Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, error.SqlState);
            Assert.Equal("companies_keep_messages", error.ConstraintName);
        }
        Assert.Equal(1L, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM companies WHERE id = $1", company));

        var withoutMessages = await TestData.CreateCompanyAsync(db.DataSource);
        await using (var rename = db.DataSource.CreateCommand("UPDATE companies SET name = 'Renamed' WHERE id = $1"))
        {
            rename.Parameters.AddWithValue(company);
            Assert.Equal(1, await rename.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }
        await using (var delete = db.DataSource.CreateCommand("DELETE FROM companies WHERE id = $1"))
        {
            delete.Parameters.AddWithValue(withoutMessages);
            Assert.Equal(1, await delete.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }
        await using var cleanUp = db.DataSource.CreateCommand("DELETE FROM communication_logs WHERE id = $1");
        cleanUp.Parameters.AddWithValue(orphan);
        await cleanUp.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Messages_are_keyed_by_company_and_id_from_the_identity_sequence_only()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        // Which index can serve each query (on a table this small the planner would rather read it all).
        await using (var planner = new NpgsqlCommand("SET enable_seqscan = off; SET enable_bitmapscan = off", connection))
        {
            await planner.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        Task<string> PlanAsync(string sql) => PlanOfAsync(connection, sql, new NpgsqlParameter { Value = company }, new NpgsqlParameter { Value = id });

        // Migration 0011: one B-tree (company_id, id) serves the tenant's lookups and listings.
        Assert.Contains("using communication_logs_pkey", await PlanAsync("SELECT * FROM communication_logs WHERE company_id = $1 AND id = $2"), StringComparison.Ordinal);
        Assert.Contains("Backward using communication_logs_pkey", await PlanAsync("SELECT id FROM communication_logs WHERE company_id = $1 AND id < $2 + 1 ORDER BY id DESC LIMIT 50"), StringComparison.Ordinal);
        // An id given without its company is looked for under each company by that key (migration
        // 0048 dropped the BRIN index on id: every claim and outcome paid for it).
        Assert.Contains("using communication_logs_pkey", await PlanAsync("SELECT * FROM communication_logs WHERE company_id = ANY (ARRAY(SELECT c.id FROM companies c)) AND id = $2 AND $1::uuid IS NOT NULL"), StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM pg_indexes WHERE tablename = 'communication_logs' AND indexdef LIKE '%USING brin%' AND $1::uuid IS NOT NULL", company));

        // Ids come from the identity sequence only: a producer's own id is refused (GENERATED ALWAYS), and a forced twin by the key.
        const string Twin = "INSERT INTO communication_logs (id, company_id, customer_id, type, channel, content) {0} VALUES ($2, $1, $3, 'INVOICE', 'EMAIL', 'x')";
        foreach (var (overriding, state, constraint) in new[] { ("", "428C9", null), ("OVERRIDING SYSTEM VALUE", PostgresErrorCodes.UniqueViolation, "communication_logs_pkey") })
        {
            await using var twin = new NpgsqlCommand(string.Format(System.Globalization.CultureInfo.InvariantCulture, Twin, overriding), connection)
            {
                Parameters = { new() { Value = company }, new() { Value = id }, new() { Value = customer } },
            };
            var error = await Assert.ThrowsAsync<PostgresException>(() => twin.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
            Assert.Equal(state, error.SqlState); // 428C9: generated_always
            Assert.Equal(constraint, error.ConstraintName);
        }

        await using var cleanUp = new NpgsqlCommand("DELETE FROM communication_logs WHERE company_id = $1", connection) { Parameters = { new() { Value = company } } };
        await cleanUp.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Delivery_events_find_their_message_by_provider_id_through_the_hash_index()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        // A practice with 2,000 sent messages: its key range alone is no longer the cheaper way to one of them.
        await using (var sent = new NpgsqlCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status, sent_at, provider_name, provider_message_id)
            SELECT $1, $2, 'INVOICE', 'WHATSAPP', 'x', 'SENT', now(), 'WHATSAPP_CLOUD', 'wamid.' || g FROM generate_series(1, 2000) g
            """, connection) { Parameters = { new() { Value = company }, new() { Value = customer } } })
        {
            await sent.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using (var planner = new NpgsqlCommand("ANALYZE communication_logs; SET enable_seqscan = off", connection))
        {
            await planner.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        Task<string> PlanAsync(string sql, params NpgsqlParameter[] parameters) => PlanOfAsync(connection, sql, parameters);

        // Migration 0012: a hash index, searched for the id as given and in Mailgun's angle brackets (a bitmap scan of both).
        Assert.Equal("CREATE INDEX ix_communication_logs_provider_message_id ON public.communication_logs USING hash (provider_message_id) WHERE (provider_message_id IS NOT NULL)",
            await TestData.ScalarAsync<string>(db.DataSource, "SELECT indexdef FROM pg_indexes WHERE tablename = 'communication_logs' AND indexdef LIKE '%provider_message_id%' AND $1::uuid IS NOT NULL", company));
        var providerId = new NpgsqlParameter<string> { TypedValue = "wamid.1042" };
        var apply = await PlanAsync(DeliveryEventRecorder.ApplySql, new NpgsqlParameter<Guid> { TypedValue = company }, providerId,
            new NpgsqlParameter<string> { TypedValue = "DELIVERED" }, new NpgsqlParameter<DateTimeOffset> { TypedValue = DateTimeOffset.UtcNow }, new NpgsqlParameter<string> { TypedValue = "x" },
            new NpgsqlParameter<string[]> { TypedValue = ["WHATSAPP_CLOUD"] }, new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Bigint });
        Assert.Contains("Bitmap Index Scan on ix_communication_logs_provider_message_id", apply, StringComparison.Ordinal);
        Assert.Contains("Index Cond: (provider_message_id = ANY ('{wamid.1042,<wamid.1042>}'::text[]))", apply, StringComparison.Ordinal);
        Assert.Contains("ix_communication_logs_provider_message_id on communication_logs", await PlanAsync(DeliveryEventRecorder.ResponseSql,
            new NpgsqlParameter<Guid> { TypedValue = company }, providerId.Clone(), new NpgsqlParameter<DateTimeOffset> { TypedValue = DateTimeOffset.UtcNow },
            new NpgsqlParameter<string[]> { TypedValue = ["WHATSAPP_CLOUD"] }), StringComparison.Ordinal);

        await using var cleanUp = new NpgsqlCommand("DELETE FROM communication_logs WHERE company_id = $1", connection) { Parameters = { new() { Value = company } } };
        await cleanUp.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_whatsapp_marketing_choice_reads_only_the_customers_whose_number_ends_the_same_way()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        // A practice with 5,000 customers, their numbers spelled every way the match accepts.
        await using (var customers = new NpgsqlCommand("""
            INSERT INTO customers (company_id, name, whatsapp_number, phone, time_zone)
            SELECT $1, 'Client ' || g, CASE g % 3 WHEN 0 THEN '+91 98' || lpad(g::text, 8, '0') END,
                   CASE g % 3 WHEN 1 THEN '098-' || lpad(g::text, 8, '0') ELSE '0091' || '98' || lpad(g::text, 8, '0') END, 'Asia/Kolkata'
              FROM generate_series(1, 5000) g
            """, connection) { Parameters = { new() { Value = company } } })
        {
            await customers.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using (var planner = new NpgsqlCommand("ANALYZE customers", connection))
        {
            await planner.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        // Migration 0020: the lookup is an index range on the number's last 8 digits within the company.
        var plan = await PlanOfAsync(connection, ProviderOptOuts.MarketingChoiceMatchSql,
            new NpgsqlParameter<Guid> { TypedValue = company }, new NpgsqlParameter<string> { TypedValue = "919800001042" });
        Assert.Contains("Index Scan using ix_customers_number_suffix on customers", plan, StringComparison.Ordinal);
        Assert.Contains("Index Cond: ((company_id = ", plan, StringComparison.Ordinal);
        Assert.Contains("\"right\"(regexp_replace(COALESCE(whatsapp_number, phone), '\\D'::text, ''::text, 'g'::text), 8) = '00001042'::text", plan, StringComparison.Ordinal);

        await using var cleanUp = new NpgsqlCommand("DELETE FROM customers WHERE company_id = $1", connection) { Parameters = { new() { Value = company } } };
        await cleanUp.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task A_messages_attempts_are_read_in_order_from_one_key_and_a_repeated_number_is_kept()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        var id = await Outbox.EnqueueAsync(db.DataSource, company, customer);
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        // Attempt 2 twice (a worker whose lease ran out during its provider call, and the worker that took the row over), then 1.
        await using (var attempts = new NpgsqlCommand("""
            INSERT INTO communication_attempts (message_id, company_id, attempt_no, channel, outcome)
            VALUES ($1, $2, 2, 'EMAIL', 'SENT'), ($1, $2, 2, 'EMAIL', 'SENT'), ($1, $2, 1, 'EMAIL', 'TRANSIENT_FAILURE')
            """, connection) { Parameters = { new() { Value = id }, new() { Value = company } } })
        {
            Assert.Equal(3, await attempts.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));
        }
        await using (var planner = new NpgsqlCommand("SET enable_seqscan = off; SET enable_bitmapscan = off", connection))
        {
            await planner.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        // Migration 0013: the key (message_id, attempt_no, id) is the only index, and it returns a message's attempts in order.
        const string Ordered = "SELECT attempt_no FROM communication_attempts WHERE message_id = $1 AND company_id = $2 ORDER BY attempt_no";
        var plan = await PlanOfAsync(connection, Ordered, new NpgsqlParameter { Value = id }, new NpgsqlParameter { Value = company });
        Assert.StartsWith("Index Scan using communication_attempts_pkey on communication_attempts", plan, StringComparison.Ordinal);
        Assert.DoesNotContain("Sort", plan, StringComparison.Ordinal);
        var indexes = await TestData.ScalarAsync<string[]>(db.DataSource,
            "SELECT array_agg(indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'communication_attempts'::regclass AND $1::bigint IS NOT NULL", id);
        Assert.Equal(new[] { "communication_attempts_pkey" }, indexes);
        var numbers = await TestData.ScalarAsync<int[]>(db.DataSource, $"SELECT array_agg(attempt_no) FROM ({Ordered}) a", id, company);
        Assert.Equal(new[] { 1, 2, 2 }, numbers);

        await using var cleanUp = new NpgsqlCommand("DELETE FROM communication_attempts WHERE message_id = $1", connection) { Parameters = { new() { Value = id } } };
        await cleanUp.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Inserting_notifies_listening_workers_once_per_statement()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var listener = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        var notifications = 0;
        listener.Notification += (_, e) =>
        {
            if (e.Channel == "outbox_pending")
            {
                Interlocked.Increment(ref notifications);
            }
        };
        await using (var listen = new NpgsqlCommand("LISTEN outbox_pending", listener))
        {
            await listen.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using (var bulk = db.DataSource.CreateCommand(
            "INSERT INTO communication_logs (company_id, customer_id, type, channel, content) SELECT $1, $2, 'GENERAL_UPDATE', 'EMAIL', 'update ' || g FROM generate_series(1, 500) g"))
        {
            bulk.Parameters.AddWithValue(company);
            bulk.Parameters.AddWithValue(customer);
            await bulk.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        using var wait = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        wait.CancelAfter(TimeSpan.FromSeconds(5));
        await listener.WaitAsync(wait.Token);
        // Anything else queued for this connection would arrive now; a per-row trigger would have sent 500.
        await listener.WaitAsync(TimeSpan.FromMilliseconds(300), TestContext.Current.CancellationToken);
        Assert.Equal(1, notifications);
    }

    [Fact]
    public async Task The_claim_query_reads_due_rows_through_the_partial_index()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using (var planner = new NpgsqlCommand("SET enable_seqscan = off; SET enable_bitmapscan = off", connection))
        {
            await planner.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await using var explain = new NpgsqlCommand(
            "EXPLAIN SELECT id FROM communication_logs WHERE status = 'PENDING' AND next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT 100",
            connection);
        var plan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync(TestContext.Current.CancellationToken))
        {
            while (await reader.ReadAsync(TestContext.Current.CancellationToken))
            {
                plan.Add(reader.GetString(0));
            }
        }

        Assert.Contains(plan, line => line.Contains("ix_communication_logs_due", StringComparison.Ordinal));
        Assert.DoesNotContain(plan, line => line.Contains("Sort", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_batch_without_an_explicit_transaction_is_all_or_nothing()
    {
        // The worker records a batch's outcomes, and the API inserts messages with their
        // attachments, as one NpgsqlBatch without BEGIN/COMMIT: they rely on this.
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var connection = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        await using var batch = new NpgsqlBatch(connection)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(MinimalInsert) { Parameters = { new() { Value = company }, new() { Value = customer } } },
                new NpgsqlBatchCommand("INSERT INTO communication_attachments (message_id, file_name) VALUES (-1, 'orphan.pdf')"),
            },
        };

        await Assert.ThrowsAsync<PostgresException>(() => batch.ExecuteNonQueryAsync(TestContext.Current.CancellationToken));

        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1", company));
    }

    [Fact]
    public async Task A_session_that_defers_notification_commits_without_notifying()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using var listener = await db.DataSource.OpenConnectionAsync(TestContext.Current.CancellationToken);
        var notifications = 0;
        listener.Notification += (_, _) => Interlocked.Increment(ref notifications);
        await using (var listen = new NpgsqlCommand("LISTEN outbox_pending", listener))
        {
            await listen.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        // As the API's sessions are opened (AddOutboxDatabase(deferInsertNotifications: true)).
        var deferring = new NpgsqlConnectionStringBuilder(db.ConnectionString) { Options = OutboxComms.Core.Data.OutboxDatabaseExtensions.DeferNotifyOption, Pooling = false };
        await using (var api = new NpgsqlConnection(deferring.ConnectionString))
        {
            await api.OpenAsync(TestContext.Current.CancellationToken);
            await using var insert = new NpgsqlCommand(MinimalInsert, api) { Parameters = { new() { Value = company }, new() { Value = customer } } };
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await listener.WaitAsync(TimeSpan.FromMilliseconds(500), TestContext.Current.CancellationToken);
        Assert.Equal(0, notifications);

        // Only that session defers: a producer's plain insert notifies as usual.
        await using (var plain = db.DataSource.CreateCommand(MinimalInsert))
        {
            plain.Parameters.AddWithValue(company);
            plain.Parameters.AddWithValue(customer);
            await plain.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        await listener.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        Assert.Equal(1, notifications);
    }

    /// <summary>The plan PostgreSQL picks for the statement on this connection (with its settings), one line per node.</summary>
    private static async Task<string> PlanOfAsync(NpgsqlConnection connection, string sql, params NpgsqlParameter[] parameters)
    {
        await using var explain = new NpgsqlCommand("EXPLAIN " + sql, connection);
        explain.Parameters.AddRange(parameters);
        var lines = new List<string>();
        await using var reader = await explain.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            lines.Add(reader.GetString(0));
        }
        return string.Join('\n', lines);
    }
}
