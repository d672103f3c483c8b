using System.Globalization;
using Npgsql;

namespace OutboxComms.Core.Preferences;

/// <summary>
/// A company's whole consent history as CSV, oldest first: the evidence of what each client agreed
/// to or withdrew, when, and through what — which a practice must be able to show after it leaves
/// (the API's <c>GET /v1/consents/export</c>, and the worker's <c>purge-company --consents-to</c>
/// before it deletes them). One query, read as it streams through the index on (company_id,
/// recorded_at, id) (migration 0040): the records as they stood when it began, all of them. Pages
/// read one after another would each see their own moment, and miss a record committed meanwhile
/// with an earlier time (an API replica whose clock is behind, a transaction that began earlier).
/// The API spools it to a temporary file first (<see cref="SpoolAsync"/>), so a slow download holds
/// neither a connection nor a snapshot.
/// </summary>
public static class ConsentExport
{
    public const string Header = "recorded_at,customer_id,customer_external_id,customer_name,scope,channel,opted_in,source,recorded_by";

    private const string Sql = """
        SELECT r.recorded_at, r.customer_id, c.external_id, c.name, r.scope, r.channel, r.opted_in, r.source, r.recorded_by
          FROM consent_records r JOIN customers c ON c.id = r.customer_id
         WHERE r.company_id = $1
         ORDER BY r.recorded_at, r.id
        """;

    /// <summary>Writes the header and every record of <paramref name="companyId"/>; answers how many records.</summary>
    public static async Task<long> WriteCsvAsync(NpgsqlDataSource dataSource, Guid companyId, TextWriter output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(output);
        await output.WriteAsync(Header + "\r\n");
        long rows = 0;
        await using (var command = dataSource.CreateCommand(Sql))
        {
            command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
                await output.WriteAsync(string.Join(',',
                    reader.GetFieldValue<DateTimeOffset>(0).UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", CultureInfo.InvariantCulture),
                    reader.GetGuid(1).ToString(),
                    Field(Text(2)), Field(Text(3)), Field(Text(4)), Field(Text(5)),
                    reader.GetBoolean(6) ? "true" : "false",
                    Field(Text(7)), Field(Text(8))) + "\r\n");
                rows++;
            }
        }
        await output.FlushAsync(cancellationToken);
        return rows;
    }

    /// <summary>
    /// The export (UTF-8 with a BOM, so Excel reads names in any script) in a temporary file,
    /// readable by this process's user only and gone when the stream answered is closed (on Unix
    /// unlinked as soon as it is opened), positioned at its start.
    /// </summary>
    public static async Task<FileStream> SpoolAsync(NpgsqlDataSource dataSource, Guid companyId, CancellationToken cancellationToken)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.ReadWrite,
            Share = FileShare.None,
            Options = FileOptions.DeleteOnClose | FileOptions.Asynchronous,
        };
        var path = Path.Combine(Path.GetTempPath(), $"outboxcomms-consents-{Guid.NewGuid():N}.csv");
        if (!OperatingSystem.IsWindows())
        {
            // Clients' names: not for the host's other users, and not left behind by a process killed
            // before it closed the file: unlinked at once, it lives while this stream is open.
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            options.Options = FileOptions.Asynchronous;
        }
        var file = new FileStream(path, options);
        if (!OperatingSystem.IsWindows())
        {
            File.Delete(path);
        }
        try
        {
            await using (var writer = new StreamWriter(file, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true), 64 * 1024, leaveOpen: true))
            {
                await WriteCsvAsync(dataSource, companyId, writer, cancellationToken);
            }
            file.Position = 0;
            return file;
        }
        catch
        {
            await file.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// RFC 4180 quoting, and a leading apostrophe on text a spreadsheet would run as a formula
    /// (=, +, -, @, tab, carriage return): a client's name is typed by anyone.
    /// </summary>
    public static string Field(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return "";
        }
        if (value[0] is '=' or '+' or '-' or '@' or '\t' or '\r')
        {
            value = "'" + value;
        }
        return value.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : value;
    }
}
