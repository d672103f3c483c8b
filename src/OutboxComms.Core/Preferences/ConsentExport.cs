using System.Globalization;
using Npgsql;

namespace OutboxComms.Core.Preferences;

/// <summary>
/// A company's whole consent history as CSV, oldest first: the evidence of what each client agreed
/// to or withdrew, when, and through what — which a practice must be able to show after it leaves
/// (the API's <c>GET /v1/consents/export</c>, and the worker's <c>purge-company --consents-to</c>
/// before it deletes them). Read in pages of <see cref="Page"/> by the index on (company_id,
/// recorded_at, id) (migration 0036), each page a short query whose connection goes back to the
/// pool before the page is written: a slow download holds no connection and no snapshot.
/// </summary>
public static class ConsentExport
{
    public const string Header = "recorded_at,customer_id,customer_external_id,customer_name,scope,channel,opted_in,source,recorded_by";

    internal const int Page = 5000;

    private const string Sql = """
        SELECT r.recorded_at, r.customer_id, c.external_id, c.name, r.scope, r.channel, r.opted_in, r.source, r.recorded_by, r.id
          FROM consent_records r JOIN customers c ON c.id = r.customer_id
         WHERE r.company_id = $1 AND (r.recorded_at, r.id) > ($2, $3)
         ORDER BY r.recorded_at, r.id
         LIMIT 5000
        """;

    /// <summary>Writes the header and every record of <paramref name="companyId"/>; answers how many records.</summary>
    public static async Task<long> WriteCsvAsync(NpgsqlDataSource dataSource, Guid companyId, TextWriter output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(output);
        await output.WriteAsync(Header + "\r\n");
        long rows = 0;
        var after = (At: DateTimeOffset.MinValue, Id: 0L);
        while (true)
        {
            var lines = new List<string>(Page);
            await using (var command = dataSource.CreateCommand(Sql))
            {
                command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = after.At });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = after.Id });
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
                    var recordedAt = reader.GetFieldValue<DateTimeOffset>(0);
                    lines.Add(string.Join(',',
                        recordedAt.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", CultureInfo.InvariantCulture),
                        reader.GetGuid(1).ToString(),
                        Field(Text(2)), Field(Text(3)), Field(Text(4)), Field(Text(5)),
                        reader.GetBoolean(6) ? "true" : "false",
                        Field(Text(7)), Field(Text(8))) + "\r\n");
                    after = (recordedAt, reader.GetInt64(9));
                }
            }
            foreach (var line in lines)
            {
                await output.WriteAsync(line);
            }
            rows += lines.Count;
            if (lines.Count < Page)
            {
                break;
            }
        }
        await output.FlushAsync(cancellationToken);
        return rows;
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
