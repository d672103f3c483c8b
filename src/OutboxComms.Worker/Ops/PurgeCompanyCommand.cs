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

    /// <summary>
    /// The tables holding a company's rows that no foreign key's cascade from <c>companies</c>
    /// removes, each deleted here (a test checks this list, and the customer-keyed list, against the schema).
    /// </summary>
    internal static readonly string[] ExplicitTables =
        ["communication_logs", "communication_attempts", "communication_attachments", "message_replays", "webhook_events", "webhook_nonces", "content_retention_deferred"];

    /// <summary>Tables keyed by a customer alone, with no foreign key to it: deleted with the company's customers.</summary>
    internal static readonly string[] CustomerTables = ["reminder_frequency_state"];

    // Every batch holds the company row FOR SHARE and stops when it is no longer deactivated: a
    // reactivation (which locks the row) waits for the batch under way, and the purge then stops.
    private const string Deactivated = "co AS MATERIALIZED (SELECT 1 FROM companies WHERE id = $1 AND deactivated_at IS NOT NULL FOR SHARE)";

    // Messages in batches with what hangs off them (attempts and replays by company and message,
    // files by message, as the worker reads them — one stored without its company only when no
    // other company has a message with its id, looked for under each other company by the primary
    // key), each batch its own transaction: no long locks, and
    // a purge stopped half-way is run again.
    private const string MessagesBatchSql = $$"""
        WITH {{Deactivated}},
        ids AS MATERIALIZED (SELECT id FROM communication_logs WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co) ORDER BY id LIMIT 1000),
        attempts AS (DELETE FROM communication_attempts WHERE company_id = $1 AND message_id IN (SELECT id FROM ids)),
        files AS (DELETE FROM communication_attachments f WHERE f.message_id IN (SELECT id FROM ids)
                   AND (f.company_id = $1 OR (f.company_id IS NULL
                        AND NOT EXISTS (SELECT 1 FROM communication_logs o
                                         WHERE o.company_id = ANY (ARRAY(SELECT c.id FROM companies c WHERE c.id <> $1)) AND o.id = f.message_id)))),
        replays AS (DELETE FROM message_replays WHERE company_id = $1 AND message_id IN (SELECT id FROM ids)),
        deferred AS (DELETE FROM content_retention_deferred WHERE company_id = $1 AND message_id IN (SELECT id FROM ids))
        DELETE FROM communication_logs WHERE company_id = $1 AND id IN (SELECT id FROM ids)
        """;

    // Customers in batches: their preferences, consent records and reminders (with their steps) go
    // by their foreign keys' cascades, each found through an index on the customer; their reminder
    // frequency state (with its holds), which has no foreign key, explicitly.
    private const string CustomersBatchSql = $$"""
        WITH {{Deactivated}},
        ids AS MATERIALIZED (SELECT id FROM customers WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co) ORDER BY id LIMIT 500),
        frequency AS (DELETE FROM reminder_frequency_state WHERE customer_id IN (SELECT id FROM ids))
        DELETE FROM customers WHERE company_id = $1 AND id IN (SELECT id FROM ids)
        """;

    // What hangs off the company alone, found through indexes that lead with company_id.
    private static readonly string[] CompanyRowsSql =
    [
        $"WITH {Deactivated} DELETE FROM message_replays WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co)",
        $"WITH {Deactivated} DELETE FROM webhook_events WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co)",
        $"WITH {Deactivated} DELETE FROM webhook_nonces WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co)",
        $"WITH {Deactivated} DELETE FROM content_retention_deferred WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co)",
    ];

    // Last, once the company has no message left: attempts and files whose message was deleted
    // earlier by hand (provider errors and invoices that may name the practice's clients). Nothing
    // finds them by company but a read of the whole table, once each, in one statement: an
    // offboarding is rare, and batches would read the table again each time. A file stored without
    // its company (before migration 0031) whose message is gone cannot be told apart, and stays.
    private static readonly string[] OrphansSql =
    [
        $"WITH {Deactivated} DELETE FROM communication_attempts WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co)",
        $"WITH {Deactivated} DELETE FROM communication_attachments WHERE company_id = $1 AND EXISTS (SELECT 1 FROM co)",
    ];

    private static readonly (string Table, string Sql)[] Counts =
    [
        ("communication_logs", "SELECT count(*) FROM communication_logs WHERE company_id = $1"),
        // Through the company's messages: attempts and files have no index by company.
        ("communication_attempts", "SELECT count(*) FROM communication_attempts a JOIN communication_logs m ON a.message_id = m.id AND a.company_id = m.company_id WHERE m.company_id = $1"),
        ("communication_attachments", "SELECT count(*) FROM communication_attachments f JOIN communication_logs m ON f.message_id = m.id AND (f.company_id = m.company_id OR f.company_id IS NULL) WHERE m.company_id = $1"),
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
        // --company=ID as ReplayCommand takes it; a setting override (--Section:Key=…, --ENV_NAME=…) is the host's.
        args = [.. args.SelectMany(arg => IsOwnOption(arg) ? [arg[..arg.IndexOf('=', StringComparison.Ordinal)], arg[(arg.IndexOf('=', StringComparison.Ordinal) + 1)..]] : new[] { arg })];
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--company":
                    if (i + 1 >= args.Length || !Guid.TryParse(args[++i], out var id))
                    {
                        error = "--company needs a company id (a uuid)";
                        return null;
                    }
                    company = id;
                    break;
                case "--consents-to":
                    if (i + 1 >= args.Length || args[++i] is not { Length: > 0 } path || path.StartsWith("--", StringComparison.Ordinal))
                    {
                        error = "--consents-to needs the path of a new file";
                        return null;
                    }
                    if (File.Exists(path))
                    {
                        error = $"--consents-to {path} exists already; name a new file (an earlier export is never overwritten)";
                        return null;
                    }
                    consentsTo = path;
                    break;
                case "--execute":
                    execute = true;
                    break;
                case var arg when IsSettingOverride(arg):
                    break;
                default:
                    error = $"unknown option '{args[i]}'";
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

    private static readonly string[] ValueOptions = ["--company", "--consents-to"];

    /// <summary>One of this verb's options written with "=" (--company=…): that option, not a setting override.</summary>
    internal static bool IsOwnOption(string arg) =>
        ValueOptions.Any(option => arg.StartsWith(option + "=", StringComparison.OrdinalIgnoreCase));

    /// <summary>A setting override for the host (--Section:Key=…, or an environment-style --NAME=…), as ReplayCommand reads them; not this verb's own option mistyped.</summary>
    internal static bool IsSettingOverride(string arg)
    {
        if (!WorkerCommands.IsConfiguration(arg) || IsOwnOption(arg))
        {
            return false;
        }
        var key = arg.TrimStart('-', '/')[..arg.TrimStart('-', '/').IndexOf('=', StringComparison.Ordinal)];
        if (ValueOptions.Any(option => option[2..].Equals(key, StringComparison.OrdinalIgnoreCase)))
        {
            return false;
        }
        return key.Contains(':', StringComparison.Ordinal) || key.All(c => char.IsAsciiLetterUpper(c) || char.IsAsciiDigit(c) || c == '_');
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
            // A new file (an earlier export of another practice is never overwritten), readable by
            // this user only (clients' names), on disk before anything is deleted.
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            await using var stream = new FileStream(consentsTo, options);
            long written;
            await using (var file = new StreamWriter(stream, new System.Text.UTF8Encoding(true), leaveOpen: true))
            {
                written = await ConsentExport.WriteCsvAsync(dataSource, companyId, file, cancellationToken);
            }
            stream.Flush(flushToDisk: true);
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Wrote {written} consent records to {consentsTo}."));
        }
        var messages = await InBatchesAsync(MessagesBatchSql);
        var customers = await InBatchesAsync(CustomersBatchSql);
        foreach (var sql in CompanyRowsSql)
        {
            await ExecuteAsync(sql);
        }
        // Again, last: what a SQL producer still wrote meanwhile goes with its files and attempts.
        messages += await InBatchesAsync(MessagesBatchSql);
        long orphans = 0;
        foreach (var sql in OrphansSql)
        {
            orphans += await ExecuteAsync(sql);
        }
        if (orphans > 0)
        {
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Deleted {orphans} attempts and files whose message had been deleted before the purge."));
        }
        // Then the company, and with it by their foreign keys' cascades its settings, keys,
        // templates, schedules and their runs, calendar overrides, API idempotency keys and
        // retention cursor — unless it was reactivated meanwhile.
        if (await ExecuteAsync("DELETE FROM companies WHERE id = $1 AND deactivated_at IS NOT NULL") == 0)
        {
            await errors.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"purge-company: company {companyId} was reactivated during the purge, which stopped there: {messages} messages and {customers} customers had been deleted."));
            return 1;
        }
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"Deleted company {companyId}: {messages} messages, {customers} customers and everything else of it."));
        return 0;

        async Task<long> InBatchesAsync(string sql)
        {
            long total = 0;
            while (await ExecuteAsync(sql) is > 0 and var deleted)
            {
                total += deleted;
            }
            return total;
        }

        async Task<int> ExecuteAsync(string sql)
        {
            await using var command = dataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            return await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }
}
