using System.Text;
using Microsoft.Net.Http.Headers;
using Microsoft.AspNetCore.Http.HttpResults;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Api.Preferences;
using OutboxComms.Core.Data;

namespace OutboxComms.Api.Customers;

public static partial class CustomerEndpoints
{
    /// <summary>The columns a client list may have, as the JSON import names its fields; the first two are required.</summary>
    private static readonly string[] CustomerColumns = ["externalId", "name", "email", "phone", "whatsAppNumber", "preferredLanguage", "timeZone"];

    /// <summary>
    /// The preferences a client list may set, as <c>PUT …/preferences</c> names them. Unlike a
    /// customer's field, an empty cell leaves the preference as it is: a blank opt-in is no consent
    /// given or withdrawn.
    /// </summary>
    private static readonly string[] PreferenceColumns =
        ["emailOptIn", "whatsAppOptIn", "smsOptIn", "invoiceDeliveryChannel", "complianceReminderChannel", "paymentReminderChannel", "generalUpdatesChannel", "consentSource",
         "reminderFrequency", "reminderCron", "quietHoursStart", "quietHoursEnd"];

    private static readonly string[] CsvColumns = [.. CustomerColumns, .. PreferenceColumns];

    /// <summary>
    /// The same import from a CSV file, as a spreadsheet saves a client list ("CSV UTF-8"): a header
    /// line naming the columns (any order and case; <c>externalId</c> and <c>name</c> required), then
    /// one customer a line. A column the file has replaces that field (an empty cell clears it, as
    /// PUT would); a column it does not have leaves an existing customer's field as it is. Problems
    /// are named by the file's line number (<c>lines[3].email</c>; the header is line 1).
    /// </summary>
    internal static async Task<Results<Ok<ImportResponse>, ValidationProblem, ProblemHttpResult>> ImportCsv(
        HttpRequest request, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
            || !(type.MediaType.Equals("text/csv", StringComparison.OrdinalIgnoreCase) || type.MediaType.Equals("text/plain", StringComparison.OrdinalIgnoreCase))
            || (type.Charset.HasValue && !type.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase)))
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "A CSV file in UTF-8 is expected",
                detail: "Send the client list as Content-Type: text/csv (UTF-8: Excel's \"CSV UTF-8\"); the same list as JSON goes to POST /v1/customers/import.");
        }
        var validation = new Validation();
        List<CsvText.Record> records;
        try
        {
            // Strict UTF-8 whether or not the file starts with a BOM (which is skipped): with BOM
            // detection on, StreamReader would switch to a lenient decoder and store U+FFFD for a
            // Windows-1252 "ü" after a BOM.
            using var reader = new StreamReader(request.Body, new UTF8Encoding(encoderShouldEmitUTF8Identifier: true, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: false);
            records = CsvText.Parse(await reader.ReadToEndAsync(cancellationToken), MaxImport + 1, maxFields: 2 * CsvColumns.Length);
        }
        catch (DecoderFallbackException)
        {
            return validation.Add("file", "The file is not UTF-8 text: save it as \"CSV UTF-8\".").Problem();
        }
        catch (FormatException ex)
        {
            return validation.Add("file", $"Not a well-formed CSV file: {ex.Message}").Problem();
        }
        if (records.Count == 0)
        {
            return validation.Add("file", $"The file is empty: its first line names the columns ({string.Join(',', CsvColumns)}).").Problem();
        }
        var header = records[0].Fields;
        var columns = new Dictionary<string, int>(StringComparer.Ordinal);
        // Excel writes a comma for each column of the sheet's used range, named or not: a blank
        // header cell is no column, as long as no line has anything under it.
        var unnamed = new List<int>();
        for (var c = 0; c < header.Count; c++)
        {
            if (string.IsNullOrWhiteSpace(header[c]))
            {
                unnamed.Add(c);
                continue;
            }
            var known = CsvColumns.FirstOrDefault(k => string.Equals(k, header[c].Trim(), StringComparison.OrdinalIgnoreCase));
            if (known is null)
            {
                validation.Add("header", $"'{header[c]}' is not a column of a client list; the columns are {string.Join(", ", CsvColumns)}.");
            }
            else if (!columns.TryAdd(known, c))
            {
                validation.Add("header", $"{known} is named twice.");
            }
        }
        foreach (var required in CustomerColumns[..2].Where(r => !columns.ContainsKey(r)))
        {
            validation.Add("header", $"The column {required} is required.");
        }
        if (records.Count - 1 > MaxImport)
        {
            validation.Add("file", $"The file has more than {MaxImport} customers: send it in parts of at most {MaxImport} lines after the header.");
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }
        var items = new List<ImportCustomerRequest?>();
        var lines = new List<int>();
        foreach (var record in records.Skip(1))
        {
            if (record.Fields.Count != header.Count)
            {
                validation.Add($"lines[{record.Line}]", $"line {record.Line} has {record.Fields.Count} cells and the header {header.Count} (a comma in a name needs the name in double quotes).");
                continue;
            }
            foreach (var c in unnamed.Where(c => !string.IsNullOrWhiteSpace(record.Fields[c])))
            {
                validation.Add($"lines[{record.Line}]", $"line {record.Line} has '{record.Fields[c].Trim()}' in column {c + 1}, which the header leaves unnamed: name the column or clear the cell.");
            }
            string? Cell(string column) => columns.TryGetValue(column, out var at) && record.Fields[at].Trim() is { Length: > 0 } text ? text : null;
            var name = Cell("name");
            if (name is not null && name.All(c => c == '?' || char.IsWhiteSpace(c)))
            {
                // Excel's plain "CSV" writes each letter its code page lacks (Devanagari, ₹) as '?'.
                validation.Add($"lines[{record.Line}].name", $"name is only question marks ('{name}'): the spreadsheet was saved as plain CSV, which loses letters outside its code page; save it as \"CSV UTF-8\".");
            }
            PreferenceEndpoints.PreferencesRequest? preferences = null;
            if (PreferenceColumns.Any(c => Cell(c) is not null))
            {
                preferences = new PreferenceEndpoints.PreferencesRequest
                {
                    EmailOptIn = Flag("emailOptIn"), WhatsAppOptIn = Flag("whatsAppOptIn"), SmsOptIn = Flag("smsOptIn"),
                    InvoiceDeliveryChannel = Cell("invoiceDeliveryChannel")?.ToUpperInvariant(),
                    ComplianceReminderChannel = Cell("complianceReminderChannel")?.ToUpperInvariant(),
                    PaymentReminderChannel = Cell("paymentReminderChannel")?.ToUpperInvariant(),
                    GeneralUpdatesChannel = Cell("generalUpdatesChannel")?.ToUpperInvariant(),
                    ConsentSource = Cell("consentSource"),
                    ReminderFrequency = Cell("reminderFrequency")?.ToUpperInvariant(),
                    ReminderCron = Cell("reminderCron"),
                };
                // Both cells or neither; "none" in both clears the window. Empty leaves it as it is.
                var (start, end) = (Cell("quietHoursStart"), Cell("quietHoursEnd"));
                if (start is not null || end is not null)
                {
                    const string Both = "give both times (HH:mm), \"none\" to clear the quiet hours, or leave both cells empty to keep them";
                    if ((start is null || IsNone(start)) && (end is null || IsNone(end)))
                    {
                        preferences = preferences with { QuietHours = null };
                    }
                    else if (IsNone(start) || IsNone(end))
                    {
                        validation.Add($"lines[{record.Line}].{(IsNone(start) ? "quietHoursEnd" : "quietHoursStart")}", $"\"none\" clears the quiet hours and takes no time beside it: {Both}.");
                    }
                    else if (start is null || end is null)
                    {
                        var missing = start is null ? "quietHoursStart" : "quietHoursEnd";
                        validation.Add($"lines[{record.Line}].{missing}", $"{missing} is needed with {(missing == "quietHoursStart" ? "quietHoursEnd" : "quietHoursStart")}: {Both}.");
                    }
                    else
                    {
                        // Both cells are checked, each named by its column.
                        var (from, to) = (Time("quietHoursStart", start), Time("quietHoursEnd", end));
                        if (from is not null && from == to)
                        {
                            validation.Add($"lines[{record.Line}].quietHoursEnd", $"quietHoursEnd must differ from quietHoursStart ({from}); \"none\" in both clears the quiet hours.");
                        }
                        else if (from is not null && to is not null)
                        {
                            preferences = preferences with { QuietHours = new PreferenceEndpoints.QuietHoursWindow(from, to) };
                        }
                    }
                }
            }
            items.Add(new ImportCustomerRequest(Cell("externalId"), name, Cell("email"), Cell("phone"), Cell("whatsAppNumber"), Cell("preferredLanguage"), Cell("timeZone"), preferences));
            lines.Add(record.Line);

            // Excel writes 9:00 and 22:00:00 as readily as 22:00; the API takes HH:mm.
            string? Time(string column, string text)
            {
                // Seconds only as Excel writes whole minutes (22:00:00): a window is to the minute.
                if (TimeOnly.TryParseExact(text, ["HH:mm", "H:mm", "HH:mm:ss", "H:mm:ss"], System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out var time)
                    && time.Second == 0)
                {
                    return time.ToString("HH:mm", System.Globalization.CultureInfo.InvariantCulture);
                }
                validation.Add($"lines[{record.Line}].{column}", $"{column} is a time of day as HH:mm (e.g. 22:00), or \"none\"; '{text}' is not.");
                return null;
            }

            // Excel writes TRUE and FALSE; people type yes and no.
            bool? Flag(string column)
            {
                switch (Cell(column)?.ToUpperInvariant())
                {
                    case null: return null;
                    case "TRUE" or "YES" or "Y" or "1": return true;
                    case "FALSE" or "NO" or "N" or "0": return false;
                    default:
                        validation.Add($"lines[{record.Line}].{column}", $"{column} is TRUE or FALSE (yes or no), or empty to leave it as it is; '{Cell(column)}' is neither.");
                        return null;
                }
            }
        }
        static bool IsNone(string? text) => string.Equals(text, "none", StringComparison.OrdinalIgnoreCase);

        if (items.Count == 0)
        {
            return (validation.IsValid ? validation.Add("file", "The file has a header but no customers.") : validation).Problem();
        }
        return await ImportAsync(items, i => $"lines[{lines[i]}]", tenant, db, time, cancellationToken, validation, columns.Keys.ToHashSet(StringComparer.Ordinal));
    }
}
