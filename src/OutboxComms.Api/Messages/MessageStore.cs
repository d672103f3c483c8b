using Npgsql;
using NpgsqlTypes;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Api.Messages;

/// <summary>
/// The send path's SQL, on Npgsql directly: accepting a bulk request of 10,000 messages costs one
/// lookup round trip and one multi-row INSERT (so the statement-level NOTIFY trigger fires once),
/// where EF would track and insert an entity per row.
/// </summary>
internal sealed class MessageStore(NpgsqlDataSource dataSource, OutboxNotifier notifier)
{
    public sealed record CustomerRef(Guid Id, string? ExternalId, bool Deleted);

    /// <summary>What the database knows about a request's customers and templates, and the ids its rows will get.</summary>
    /// <param name="TemplateChannels">Each requested template key that exists, with the channels it has a version for.</param>
    public sealed record Lookup(IReadOnlyDictionary<Guid, CustomerRef> ById, IReadOnlyDictionary<string, CustomerRef> ByExternalId, IReadOnlyDictionary<string, HashSet<string>> TemplateChannels, long[] Ids);

    /// <summary>
    /// One outbox row to insert; <paramref name="Id"/> comes from <see cref="Lookup.Ids"/>. The rows
    /// of a BOTH request carry the first one's id as <paramref name="SplitFrom"/>, as the worker's
    /// split marks its pairs: the frequency policy counts a pair as one reminder by it.
    /// </summary>
    public sealed record NewMessage(long Id, CustomerRef Customer, Channel Channel, MessageDraft Draft, long? SplitFrom = null);

    public sealed record IdempotencyClaim(string Key, byte[] RequestHash, string Response);

    public sealed record StoredResponse(byte[] RequestHash, string Response);

    // One unique-index probe per requested customer (LATERAL … LIMIT 1 keeps them probes whatever
    // the statistics say). A WHERE with OR scanned the whole table; even "company_id = $1 AND
    // id = ANY($2)" walked all of a company's customers when its statistics were stale (a company
    // that has just imported its clients).
    private const string CustomersSql = """
        SELECT c.id, c.external_id, c.deleted_at IS NOT NULL
          FROM unnest($2::uuid[]) AS k(id)
          CROSS JOIN LATERAL (SELECT * FROM customers c WHERE c.id = k.id AND c.company_id = $1 LIMIT 1) c
        UNION ALL
        SELECT c.id, c.external_id, c.deleted_at IS NOT NULL
          FROM unnest($3::text[]) AS k(external_id)
          CROSS JOIN LATERAL (SELECT * FROM customers c WHERE c.company_id = $1 AND c.external_id = k.external_id LIMIT 1) c
        """;

    private const string TemplatesSql = "SELECT DISTINCT key, channel FROM message_templates WHERE company_id = $1 AND key = ANY($2)";

    // Ids are taken from the identity sequence up front so that every row's id is known before the
    // INSERT (attachments and the idempotent response refer to them) and ascends in request order.
    // The INSERT then gives them with OVERRIDING SYSTEM VALUE (the column is GENERATED ALWAYS, 0011).
    private const string IdsSql = "SELECT nextval(pg_get_serial_sequence('communication_logs', 'id')) FROM generate_series(1, $1)";

    // The columns an API insert sets, in the order both inserts below give them.
    private const string InsertColumns = """
        company_id, customer_id, customer_external_id, type, channel, requested_channel,
        subject, content, template_key, template_data, max_retries, metadata,
        created_at, updated_at, next_attempt_at, expires_at, split_from
        """;

    // Rows in request order (ORDER BY the position): when the ids are not given, the identity
    // default numbers them in that order, and the ascending ids returned map back to the request
    // (the id array is then empty: unnest pads it with NULLs).
    private static string InsertMessagesSql(bool withIds) => $"""
        INSERT INTO communication_logs ({(withIds ? "id, " : "")}{InsertColumns}){(withIds ? " OVERRIDING SYSTEM VALUE" : "")}
        SELECT {(withIds ? "u.id, " : "")}$1, u.customer_id, u.customer_external_id, u.type, u.channel, u.requested_channel,
               u.subject, u.content, u.template_key, u.template_data::jsonb, u.max_retries, u.metadata::jsonb,
               $2, $2, coalesce(u.not_before, $2), u.expires_at, u.split_from
          FROM unnest($3::bigint[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                      $11::text[], $12::text[], $13::int[], $14::text[], $15::timestamptz[], $16::timestamptz[], $17::bigint[]) WITH ORDINALITY
               AS u(id, customer_id, customer_external_id, type, channel, requested_channel, subject, content,
                    template_key, template_data, max_retries, metadata, not_before, expires_at, split_from, position)
         ORDER BY u.position
        {(withIds ? "" : "RETURNING id")}
        """;

    private static readonly string InsertWithIdsSql = InsertMessagesSql(withIds: true);
    private static readonly string InsertReturningIdsSql = InsertMessagesSql(withIds: false);

    // One message to a customer and template that must exist (and the customer not be deleted), in
    // one statement and one round trip: nothing is inserted otherwise. The template must have a
    // version for the channel ($15: one channel, or a BOTH request's channels), except for PREFERRED,
    // which the worker resolves to whichever channel the template has.
    private static string CheckedTargetSql(string templateHasChannels) => $"""
        WITH target AS (
            SELECT c.id, c.external_id FROM customers c
             WHERE c.company_id = $1 AND c.deleted_at IS NULL
               AND c.id = coalesce($2, (SELECT x.id FROM customers x WHERE x.company_id = $1 AND x.external_id = $3))
               AND ($8::text IS NULL OR {templateHasChannels})
             LIMIT 1)
        """;

    private static readonly string InsertCheckedSql = $"""
        {CheckedTargetSql("EXISTS (SELECT 1 FROM message_templates t WHERE t.company_id = $1 AND t.key = $8 AND ($15::text = 'PREFERRED' OR t.channel = $15::text))")}
        INSERT INTO communication_logs ({InsertColumns})
        SELECT $1, target.id, target.external_id, $4, $15::text, $5, $6, $7, $8, $9::jsonb, $10, $11::jsonb,
               $12, $12, coalesce($13, $12), $14, NULL
          FROM target
        RETURNING id, channel
        """;

    // A BOTH request: a row per channel, in channel order, each marked with the first row's id
    // (split_from), so the ids are taken from the identity's sequence before the INSERT.
    private static readonly string InsertCheckedPairSql = $"""
        {CheckedTargetSql("(SELECT count(DISTINCT t.channel) FROM message_templates t WHERE t.company_id = $1 AND t.key = $8 AND t.channel = ANY($15::text[])) = cardinality($15::text[])")},
        ids AS (
            SELECT nextval(pg_get_serial_sequence('communication_logs', 'id')) AS id, ch.channel, ch.n
              FROM target, unnest($15::text[]) WITH ORDINALITY AS ch(channel, n)
             ORDER BY ch.n)
        INSERT INTO communication_logs (id, {InsertColumns}) OVERRIDING SYSTEM VALUE
        SELECT ids.id, $1, target.id, target.external_id, $4, ids.channel, $5, $6, $7, $8, $9::jsonb, $10, $11::jsonb,
               $12, $12, coalesce($13, $12), $14, min(ids.id) OVER ()
          FROM target, ids
         ORDER BY ids.n
        RETURNING id, channel
        """;

    private const string InsertAttachmentsSql = """
        INSERT INTO communication_attachments (company_id, message_id, file_name, content_type, content, url, size_bytes)
        SELECT $7, * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::bigint[])
        """;

    private const string ClaimKeySql = """
        INSERT INTO idempotency_keys (company_id, key, request_hash, response, created_at) VALUES ($1, $2, $3, $4::jsonb, $5)
        ON CONFLICT (company_id, key) DO NOTHING
        RETURNING true
        """;

    private const string StoredKeySql = "SELECT request_hash, response::text FROM idempotency_keys WHERE company_id = $1 AND key = $2";

    public async Task<Lookup> LookupAsync(Guid companyId, IReadOnlyList<MessageDraft> drafts, bool allocateIds, CancellationToken cancellationToken)
    {
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(CustomersSql)
        {
            Parameters =
            {
                Value(companyId),
                Value(drafts.Where(d => d.CustomerId is not null).Select(d => d.CustomerId!.Value).Distinct().ToArray()),
                Value(drafts.Where(d => d.CustomerExternalId is not null).Select(d => d.CustomerExternalId!).Distinct().ToArray()),
            },
        });
        var templateKeys = drafts.Where(d => d.TemplateKey is not null).Select(d => d.TemplateKey!).Distinct().ToArray();
        if (templateKeys.Length > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(TemplatesSql) { Parameters = { Value(companyId), Value(templateKeys) } });
        }
        if (allocateIds)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(IdsSql) { Parameters = { Value(drafts.Sum(d => d.Channels.Count)) } });
        }

        var byId = new Dictionary<Guid, CustomerRef>();
        var byExternalId = new Dictionary<string, CustomerRef>(StringComparer.Ordinal);
        var templateChannels = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var allocated = new List<long>();
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var customer = new CustomerRef(reader.GetGuid(0), reader.IsDBNull(1) ? null : reader.GetString(1), reader.GetBoolean(2));
            byId[customer.Id] = customer;
            if (customer.ExternalId is not null)
            {
                byExternalId[customer.ExternalId] = customer;
            }
        }
        if (templateKeys.Length > 0)
        {
            await reader.NextResultAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var key = reader.GetString(0);
                if (!templateChannels.TryGetValue(key, out var channels))
                {
                    templateChannels[key] = channels = new HashSet<string>(StringComparer.Ordinal);
                }
                channels.Add(reader.GetString(1));
            }
        }
        if (allocateIds)
        {
            await reader.NextResultAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                allocated.Add(reader.GetInt64(0));
            }
            allocated.Sort();
        }
        return new Lookup(byId, byExternalId, templateChannels, [.. allocated]);
    }

    /// <summary>
    /// Inserts the messages and their attachments in one transaction. With an idempotency claim,
    /// the key is taken first in the same transaction: when it is already taken (a concurrent twin
    /// waits here until the first commits) nothing is inserted and the stored answer is returned.
    /// </summary>
    public async Task<StoredResponse?> InsertAsync(
        Guid companyId, IReadOnlyList<NewMessage> messages, IdempotencyClaim? claim, DateTimeOffset now, CancellationToken cancellationToken)
    {
        // This process's sessions defer the insert trigger's NOTIFY (AddOutboxDatabase): commits do
        // not queue on PostgreSQL's notification lock, and the notifier wakes the workers after.
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        // Without an idempotency key the inserts need no explicit transaction: one batch is one
        // implicit transaction (one Sync), so messages and attachments commit together in one round trip.
        await using var transaction = claim is null ? null : await connection.BeginTransactionAsync(cancellationToken);
        if (claim is not null)
        {
            await using var claimKey = new NpgsqlCommand(ClaimKeySql, connection, transaction)
            {
                Parameters = { Value(companyId), Value(claim.Key), Value(claim.RequestHash), Value(claim.Response), Value(now.ToUniversalTime()) },
            };
            if (await claimKey.ExecuteScalarAsync(cancellationToken) is null)
            {
                var stored = await FindAsync(connection, companyId, claim.Key, cancellationToken);
                await transaction!.RollbackAsync(cancellationToken);
                return stored;
            }
        }

        await using var batch = new NpgsqlBatch(connection, transaction);
        batch.BatchCommands.Add(InsertCommand(withIds: true, companyId, messages, now));

        // A BOTH request's two rows each get their own copy, as the worker's own BOTH split does.
        var attachments = messages.SelectMany(m => m.Draft.Attachments.Select(a => (MessageId: m.Id, Attachment: a))).ToList();
        if (attachments.Count > 0)
        {
            var attach = new NpgsqlBatchCommand(InsertAttachmentsSql);
            attach.Parameters.Add(Array(attachments, a => a.MessageId, NpgsqlDbType.Bigint));
            attach.Parameters.Add(Array(attachments, a => a.Attachment.FileName, NpgsqlDbType.Text));
            attach.Parameters.Add(Array(attachments, a => a.Attachment.ContentType, NpgsqlDbType.Text));
            attach.Parameters.Add(Array(attachments, a => a.Attachment.Content, NpgsqlDbType.Bytea));
            attach.Parameters.Add(Array(attachments, a => a.Attachment.Url, NpgsqlDbType.Text));
            attach.Parameters.Add(Array(attachments, a => (long?)a.Attachment.Content?.LongLength, NpgsqlDbType.Bigint));
            attach.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            batch.BatchCommands.Add(attach);
        }
        await batch.ExecuteNonQueryAsync(cancellationToken);
        if (transaction is not null)
        {
            // Not the client's token: a client gone away mid-commit must not skip the wake-up of a
            // commit that landed.
            await transaction.CommitAsync(CancellationToken.None);
        }
        notifier.Notify();
        return null;
    }

    /// <summary>
    /// Inserts messages without attachments or idempotency key, letting the table number them: one
    /// statement, committed on its own. Returns the new ids in request order.
    /// </summary>
    public async Task<long[]> InsertAsync(Guid companyId, IReadOnlyList<NewMessage> messages, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var batch = new NpgsqlBatch(connection) { BatchCommands = { InsertCommand(withIds: false, companyId, messages, now) } };
        var ids = new List<long>(messages.Count);
        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                ids.Add(reader.GetInt64(0));
            }
        }
        notifier.Notify();
        ids.Sort();
        return [.. ids];
    }

    private static NpgsqlBatchCommand InsertCommand(bool withIds, Guid companyId, IReadOnlyList<NewMessage> messages, DateTimeOffset now)
    {
        var insert = new NpgsqlBatchCommand(withIds ? InsertWithIdsSql : InsertReturningIdsSql);
        insert.Parameters.Add(Value(companyId));
        insert.Parameters.Add(Value(now.ToUniversalTime()));
        insert.Parameters.Add(Array(withIds ? messages : [], m => m.Id, NpgsqlDbType.Bigint));
        insert.Parameters.Add(Array(messages, m => m.Customer.Id, NpgsqlDbType.Uuid));
        insert.Parameters.Add(Array(messages, m => m.Customer.ExternalId, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => WireName<MessageType>.Of(m.Draft.Type), NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => WireName<Channel>.Of(m.Channel), NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.RequestedChannel is { } r ? WireName<Channel>.Of(r) : null, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.Subject, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.Content, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.TemplateKey, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.TemplateData, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.MaxRetries, NpgsqlDbType.Integer));
        insert.Parameters.Add(Array(messages, m => m.Draft.Metadata, NpgsqlDbType.Text));
        insert.Parameters.Add(Array(messages, m => m.Draft.NotBefore?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        insert.Parameters.Add(Array(messages, m => m.Draft.ExpiresAt?.ToUniversalTime(), NpgsqlDbType.TimestampTz));
        insert.Parameters.Add(Array(messages, m => m.SplitFrom, NpgsqlDbType.Bigint));
        return insert;
    }

    /// <summary>
    /// Inserts one message (a row per channel) if its customer exists in the company, is not deleted,
    /// and its template (if any) exists; null when nothing was inserted. Committed before it returns;
    /// the notifier wakes the workers after.
    /// </summary>
    /// <remarks>
    /// Concurrent calls are coalesced: the calls that arrive while earlier ones are being written go
    /// to PostgreSQL together, one statement each in one batch — one round trip, one transaction,
    /// one commit and its WAL flush for all of them (a single-row transaction costs PostgreSQL far
    /// more than its row). A call waits for nothing when none is in flight. If a statement of the
    /// batch fails, the whole batch is rolled back: that call fails and the others run again
    /// together, so one bad call never fails another. A call whose client has gone away before its
    /// batch is formed is dropped, not inserted.
    /// </remarks>
    public async Task<IReadOnlyList<(long Id, Channel Channel)>?> InsertCheckedAsync(Guid companyId, MessageDraft draft, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var insert = new CheckedInsert(companyId, draft, now, cancellationToken);
        pendingInserts.Enqueue(insert);
        Interlocked.Increment(ref queuedInserts);
        StartWriters();
        // A caller that goes away drops its insert only while no batch has taken it; once taken it
        // may already be committed.
        var rows = await insert.Done.Task.WaitAsync(cancellationToken);
        return rows.Count == 0 ? null : rows;
    }

    private sealed record CheckedInsert(Guid CompanyId, MessageDraft Draft, DateTimeOffset Now, CancellationToken Abandoned)
    {
        public TaskCompletionSource<IReadOnlyList<(long Id, Channel Channel)>> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    // Batches in flight at once: while one waits for PostgreSQL the next gathers calls. At most
    // MaxCoalesced calls per batch.
    private const int MaxWriters = 2;
    private const int MaxCoalesced = 128;
    private readonly System.Collections.Concurrent.ConcurrentQueue<CheckedInsert> pendingInserts = new();
    private int writers;
    private long queuedInserts;

    /// <summary>Calls queued so far (tests wait on it).</summary>
    internal long QueuedInserts => Interlocked.Read(ref queuedInserts);

    private void StartWriters()
    {
        while (!pendingInserts.IsEmpty)
        {
            var running = Volatile.Read(ref writers);
            if (running >= MaxWriters)
            {
                return; // a running writer takes the call before it stops
            }
            if (Interlocked.CompareExchange(ref writers, running + 1, running) == running)
            {
                // The writer outlives the request that started it: it must not carry its context.
                using (ExecutionContext.SuppressFlow())
                {
                    _ = Task.Run(WriteAsync);
                }
                return;
            }
        }
    }

    private async Task WriteAsync()
    {
        try
        {
            var group = new List<CheckedInsert>(MaxCoalesced);
            while (true)
            {
                group.Clear();
                while (group.Count < MaxCoalesced && pendingInserts.TryDequeue(out var next))
                {
                    if (next.Abandoned.IsCancellationRequested)
                    {
                        next.Done.TrySetCanceled(next.Abandoned);
                        continue;
                    }
                    group.Add(next);
                }
                if (group.Count == 0)
                {
                    return;
                }
                try
                {
                    await WriteGroupAsync(group);
                }
                catch (Exception ex)
                {
                    // Nothing may leave a call waiting forever.
                    foreach (var insert in group)
                    {
                        insert.Done.TrySetException(ex);
                    }
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref writers);
            StartWriters(); // calls queued after this writer last looked
        }
    }

    private async Task WriteGroupAsync(List<CheckedInsert> group)
    {
        List<IReadOnlyList<(long Id, Channel Channel)>> results;
        try
        {
            results = await ExecuteAsync(group);
        }
        catch (StatementFailedException ex) when (group.Count > 1)
        {
            // Rolled back as a whole. The statements before the failing one answered, the rest were
            // skipped: that call fails, the others are written again together. A failure after the
            // last statement (the commit) names no call: each runs again on its own.
            if (ex.Statement < group.Count)
            {
                var failed = group[ex.Statement];
                failed.Done.TrySetException(ex.InnerException!);
                await WriteGroupAsync([.. group.Where(insert => !ReferenceEquals(insert, failed))]);
                return;
            }
            foreach (var insert in group)
            {
                await WriteGroupAsync([insert]);
            }
            return;
        }
        catch (StatementFailedException ex)
        {
            group[0].Done.TrySetException(ex.InnerException!);
            return;
        }
        catch (Exception ex)
        {
            foreach (var insert in group)
            {
                insert.Done.TrySetException(ex);
            }
            return;
        }
        // Once per committed batch, here rather than by each caller: a caller that has gone away
        // (a client's timeout) after its send was taken must not leave its committed row waiting
        // for the workers' poll.
        if (results.Any(rows => rows.Count > 0))
        {
            notifier.Notify();
        }
        for (var i = 0; i < group.Count; i++)
        {
            group[i].Done.TrySetResult(results[i]);
        }
    }

    /// <summary>The group's statements in one batch (one implicit transaction); results only once it has committed.</summary>
    private async Task<List<IReadOnlyList<(long Id, Channel Channel)>>> ExecuteAsync(List<CheckedInsert> group)
    {
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var batch = new NpgsqlBatch(connection);
        foreach (var insert in group)
        {
            batch.BatchCommands.Add(CheckedInsertCommand(insert));
        }
        var results = new List<IReadOnlyList<(long Id, Channel Channel)>>(group.Count);
        try
        {
            await using var reader = await batch.ExecuteReaderAsync();
            do
            {
                var rows = new List<(long Id, Channel Channel)>(2);
                while (await reader.ReadAsync())
                {
                    rows.Add((reader.GetInt64(0), WireName<Channel>.Parse(reader.GetString(1))));
                }
                results.Add([.. rows.OrderBy(r => r.Id)]);
            }
            while (await reader.NextResultAsync()); // the last one reads up to the commit's ReadyForQuery
        }
        catch (PostgresException ex) when (ex.SqlState is ['2', '2' or '3', ..] or ['4', '0', ..])
        {
            // A data error (class 22) or a constraint's (23) ends the batch at the statement that
            // raised it: the one after the answered ones, whose own values are at fault; so does a
            // deadlock or serialization failure (40), which one call losing and the rest written
            // again resolves. Any other (a failover's read-only 25006, a shutdown, a lock timeout)
            // is the database's, not a statement's: it fails the whole batch at once rather than
            // being blamed on one call and the rest written again, one shorter batch after another.
            throw new StatementFailedException(results.Count, ex);
        }
        return results;
    }

    private sealed class StatementFailedException(int statement, PostgresException error)
        : Exception($"statement {statement} of a coalesced batch failed: {error.MessageText}", error)
    {
        public int Statement { get; } = statement;
    }

    private static NpgsqlBatchCommand CheckedInsertCommand(CheckedInsert insert)
    {
        var draft = insert.Draft;
        var pair = draft.Channels.Count > 1;
        return new NpgsqlBatchCommand(pair ? InsertCheckedPairSql : InsertCheckedSql)
        {
            Parameters =
            {
                Value(insert.CompanyId),
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Uuid, Value = (object?)draft.CustomerId ?? DBNull.Value },
                Text(draft.CustomerExternalId),
                Text(WireName<MessageType>.Of(draft.Type)),
                Text(draft.RequestedChannel is { } requested ? WireName<Channel>.Of(requested) : null),
                Text(draft.Subject),
                Text(draft.Content),
                Text(draft.TemplateKey),
                Text(draft.TemplateData),
                Value(draft.MaxRetries),
                Text(draft.Metadata),
                Value(insert.Now.ToUniversalTime()),
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = (object?)draft.NotBefore?.ToUniversalTime() ?? DBNull.Value },
                new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = (object?)draft.ExpiresAt?.ToUniversalTime() ?? DBNull.Value },
                pair ? Value(draft.Channels.Select(WireName<Channel>.Of).ToArray()) : Text(WireName<Channel>.Of(draft.Channels[0])),
            },
        };
    }

    /// <summary>The answer already given for this idempotency key, if any.</summary>
    public async Task<StoredResponse?> FindAsync(Guid companyId, string key, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await FindAsync(connection, companyId, key, cancellationToken);
    }

    private static async Task<StoredResponse?> FindAsync(NpgsqlConnection connection, Guid companyId, string key, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(StoredKeySql, connection) { Parameters = { Value(companyId), Value(key) } };
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? new StoredResponse(reader.GetFieldValue<byte[]>(0), reader.GetString(1)) : null;
    }

    private static NpgsqlParameter<T> Value<T>(T value) => new() { TypedValue = value };

    private static NpgsqlParameter Text(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)value ?? DBNull.Value };

    private static NpgsqlParameter Array<TSource, TValue>(IEnumerable<TSource> source, Func<TSource, TValue> select, NpgsqlDbType type) =>
        new() { NpgsqlDbType = NpgsqlDbType.Array | type, Value = source.Select(select).ToArray() };
}
