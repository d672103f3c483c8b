using System.Globalization;
using Npgsql;
using OutboxComms.Core.Preferences;

namespace OutboxComms.Worker.Ops;

/// <summary>
/// <c>OutboxComms.Worker purge-company</c>: the last step of offboarding a practice. Deletes every row
/// of a company that was deactivated (<c>POST /v1/companies/{id}/deactivate</c>): messages and their
/// attempts, files and replays, provider reports, customers with their preferences and consent
/// records, templates, reminders, schedules, keys and settings, then the company. A dry run (counts
/// per table) unless <c>--execute</c>; <c>--consents-to FILE</c> first writes the consent records as
/// CSV, the evidence the practice may have to show for years.
/// </summary>
public static class PurgeCompanyCommand
{
    public const string Usage = """
          purge-company --company ID [--consents-to FILE] [--execute]
                              count (dry run) or, with --execute, delete every row of a deactivated
                              company; --consents-to first writes its consent records as CSV (a new file)
        """;

    /// <summary>The tables whose rows go with the company and are not removed by a foreign key's cascade when its row is deleted (a test checks this list against the schema).</summary>
    internal static readonly string[] ExplicitTables =
        ["communication_logs", "communication_attempts", "communication_attachments", "message_replays", "webhook_events", "webhook_nonces", "content_retention_deferred"];

    // Messages in batches with what hangs off them (attempts and replays by company and message,
    // files by message, as the worker reads them), each batch its own transaction: no long locks,
    // and a purge stopped half-way is run again.
    private const string MessagesBatchSql = """
        WITH ids AS MATERIALIZED (SELECT id FROM communication_logs WHERE company_id = $1 ORDER BY id LIMIT 1000),
        attempts AS (DELETE FROM communication_attempts WHERE company_id = $1 AND message_id IN (SELECT id FROM ids)),
        files AS (DELETE FROM communication_attachments WHERE message_id IN (SELECT id FROM ids) AND (company_id IS NULL OR company_id = $1)),
        replays AS (DELETE FROM message_replays WHERE company_id = $1 AND message_id IN (SELECT id FROM ids)),
        deferred AS (DELETE FROM content_retention_deferred WHERE company_id = $1 AND message_id IN (SELECT id FROM ids))
        DELETE FROM communication_logs WHERE company_id = $1 AND id IN (SELECT id FROM ids)
        """;

    private static readonly (string Table, string Sql)[] Counts =
    [
        ("communication_logs", "SELECT count(*) FROM communication_logs WHERE company_id = $1"),
        ("communication_attempts", "SELECT count(*) FROM communication_attempts WHERE company_id = $1"),
        ("communication_attachments", "SELECT count(*) FROM communication_attachments WHERE company_id = $1"),
        ("message_replays", "SELECT count(*) FROM message_replays WHERE company_id = $1"),
        ("webhook_events", "SELECT count(*) FROM webhook_events WHERE company_id = $1"),
        ("customers", "SELECT count(*) FROM customers WHERE company_id = $1"),
        ("consent_records", "SELECT count(*) FROM consent_records WHERE company_id = $1"),
        ("message_templates", "SELECT count(*) FROM message_templates WHERE company_id = $1"),
        ("reminders", "SELECT count(*) FROM reminders WHERE company_id = $1"),
        ("company_schedules", "SELECT count(*) FROM company_schedules WHERE company_id = $1"),
        ("api_keys", "SELECT count(*) FROM api_keys WHERE company_id = $1"),
    ];

    /// <summary>The verb's options, or the usage error to print (exit code 2) before anything connects.</summary>
    public static (Guid Company, string? ConsentsTo, bool Execute)? Parse(string[] args, out string? error)
    {
        ArgumentNullException.ThrowIfNull(args);
        Guid? company = null;
        string? consentsTo = null;
        var execute = false;
        error = null;
        for (var i = 0; i < args.Length; i++)
        {
            string? Value() => i + 1 < args.Length ? args[++i] : null;
            switch (args[i])
            {
                case "--company" when Guid.TryParse(Value(), out var id):
                    company = id;
                    break;
                case "--consents-to" when Value() is { Length: > 0 } path:
                    consentsTo = path;
                    break;
                case "--execute":
                    execute = true;
                    break;
                case var arg when WorkerCommands.IsConfiguration(arg) && arg.TrimStart('-', '/').Contains(':', StringComparison.Ordinal):
                    break;
                default:
                    error = args[i] is "--company" or "--consents-to" ? $"{args[i]} needs a value (--company: a company id)" : $"unknown option '{args[i]}'";
                    return null;
            }
        }
        if (company is null)
        {
            error = "--company is required";
            return null;
        }
        return (company.Value, consentsTo, execute);
    }

    public static async Task<int> RunAsync(string[] args, NpgsqlDataSource dataSource, TextWriter output, TextWriter errors, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(errors);
        if (Parse(args, out var error) is not var (companyId, consentsTo, execute))
        {
            await errors.WriteLineAsync($"purge-company: {error}.\n{Usage}");
            return 2;
        }
        await using (var check = dataSource.CreateCommand("""
            SELECT c.deactivated_at,
                   EXISTS (SELECT 1 FROM communication_logs m WHERE m.company_id = c.id AND m.status = 'PENDING' AND m.locked_until > now())
              FROM companies c WHERE c.id = $1
            """))
        {
            check.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            await using var reader = await check.ExecuteReaderAsync(cancellationToken);
            if (!await reader.ReadAsync(cancellationToken))
            {
                await errors.WriteLineAsync($"purge-company: there is no company {companyId}.");
                return 1;
            }
            if (reader.IsDBNull(0))
            {
                await errors.WriteLineAsync($"purge-company: company {companyId} is active; deactivate it first (POST /v1/companies/{companyId}/deactivate, with the admin key).");
                return 1;
            }
            if (reader.GetBoolean(1))
            {
                await errors.WriteLineAsync($"purge-company: a worker is sending a message of company {companyId} right now; run this again in a few minutes.");
                return 1;
            }
        }
        foreach (var (table, sql) in Counts)
        {
            await using var count = dataSource.CreateCommand(sql);
            count.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            var rows = (long)(await count.ExecuteScalarAsync(cancellationToken))!;
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{table,-26} {rows,12:N0}"));
        }
        if (!execute)
        {
            await output.WriteLineAsync($"Nothing was deleted: add --execute to delete company {companyId} and all of the above.");
            return 0;
        }
        if (consentsTo is not null)
        {
            // A new file: an earlier export of another practice is never overwritten.
            await using var file = new StreamWriter(new FileStream(consentsTo, FileMode.CreateNew, FileAccess.Write), new System.Text.UTF8Encoding(true));
            var written = await ConsentExport.WriteCsvAsync(dataSource, companyId, file, cancellationToken);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Wrote {written} consent records to {consentsTo}."));
        }
        long messages = 0;
        while (true)
        {
            await using var batch = dataSource.CreateCommand(MessagesBatchSql);
            batch.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            var deleted = await batch.ExecuteNonQueryAsync(cancellationToken);
            messages += deleted;
            if (deleted == 0)
            {
                break;
            }
        }
        // What is left of the explicit tables (rows whose message was already gone), then the
        // company: every other table goes by its foreign key's cascade.
        await using (var rest = dataSource.CreateBatch())
        {
            foreach (var table in ExplicitTables)
            {
                rest.BatchCommands.Add(new NpgsqlBatchCommand($"DELETE FROM {table} WHERE company_id = $1") { Parameters = { new NpgsqlParameter<Guid> { TypedValue = companyId } } });
            }
            rest.BatchCommands.Add(new NpgsqlBatchCommand("DELETE FROM companies WHERE id = $1 AND deactivated_at IS NOT NULL") { Parameters = { new NpgsqlParameter<Guid> { TypedValue = companyId } } });
            await rest.ExecuteNonQueryAsync(cancellationToken);
        }
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Deleted company {companyId}: {messages} messages and everything else of it."));
        return 0;
    }
}
