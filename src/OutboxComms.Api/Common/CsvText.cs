namespace OutboxComms.Api.Common;

/// <summary>
/// Comma-separated text as RFC 4180 writes it, and as spreadsheets save it: fields separated by
/// commas, records by CRLF or LF, a field in double quotes may hold commas, line breaks and
/// doubled quotes (""). Each record comes with the line it starts on (1-based). Blank lines, and
/// lines of empty cells only, are skipped.
/// </summary>
public static class CsvText
{
    public sealed record Record(int Line, IReadOnlyList<string> Fields);

    /// <summary>
    /// The records of <paramref name="text"/>, blank lines skipped, at most <paramref name="maxRecords"/>
    /// + 1 (enough to tell there are too many) of at most <paramref name="maxFields"/> fields; a quote
    /// left open or a line with more fields is a <see cref="FormatException"/> naming its line.
    /// </summary>
    public static List<Record> Parse(string text, int maxRecords = int.MaxValue - 1, int maxFields = 256)
    {
        ArgumentNullException.ThrowIfNull(text);
        var records = new List<Record>();
        var fields = new List<string>();
        var field = new System.Text.StringBuilder();
        var line = 1;
        var recordLine = 1;
        var quoted = false;
        var fieldStarted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    // A line break inside quotes: LF, CRLF (counted at its LF) or a lone CR.
                    line += c == '\n' || (c == '\r' && (i + 1 == text.Length || text[i + 1] != '\n')) ? 1 : 0;
                    field.Append(c);
                }
                continue;
            }
            switch (c)
            {
                case '"' when !fieldStarted:
                    quoted = fieldStarted = true;
                    break;
                case ',':
                    if (fields.Count == maxFields - 1)
                    {
                        throw new FormatException($"line {recordLine} has more than {maxFields} cells.");
                    }
                    fields.Add(field.ToString());
                    field.Clear();
                    fieldStarted = false;
                    break;
                case '\r' when i + 1 < text.Length && text[i + 1] == '\n':
                    break;
                case '\r' or '\n':
                    EndRecord();
                    if (records.Count > maxRecords)
                    {
                        return records;
                    }
                    line++;
                    recordLine = line;
                    break;
                default:
                    field.Append(c);
                    fieldStarted = true;
                    break;
            }
        }
        if (quoted)
        {
            throw new FormatException($"line {recordLine}: a quoted field is not closed.");
        }
        EndRecord();
        return records;

        void EndRecord()
        {
            fields.Add(field.ToString());
            // A line of nothing but blanks and commas (a spreadsheet's cleared row) is no record.
            if (fields.Exists(f => !string.IsNullOrWhiteSpace(f)))
            {
                records.Add(new Record(recordLine, [.. fields]));
            }
            fields.Clear();
            field.Clear();
            fieldStarted = false;
        }
    }
}
