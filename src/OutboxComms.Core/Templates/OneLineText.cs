using System.Text.RegularExpressions;

namespace OutboxComms.Core.Templates;

/// <summary>
/// A text that must be one line (a subject, a WhatsApp template parameter): line breaks, tabs and
/// runs of spaces become one space, and the ends are trimmed. A subject with a line break is a
/// header-injection attempt to SMTP and is handled differently by each email API; WhatsApp refuses
/// a parameter with a line break, a tab or more than four spaces in a row. The worker sends these
/// texts so, and the preview shows them so.
/// </summary>
public static partial class OneLineText
{
    public static string? Of(string? text) => text is null ? null : WhitespaceRun().Replace(text, " ").Trim();

    [GeneratedRegex(@"\s{2,}|[\r\n\t\v\f\u0085\u2028\u2029]")]
    private static partial Regex WhitespaceRun();
}
