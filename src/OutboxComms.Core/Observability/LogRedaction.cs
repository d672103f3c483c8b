using System.Text.RegularExpressions;

namespace OutboxComms.Core.Observability;

/// <summary>
/// A customer's contact details taken out of a text bound for the logs. Error texts of failed
/// messages quote them (our own "customer's WhatsApp number '…' is not valid", Twilio's "The 'To'
/// number … is not a valid phone number", an SMTP "550 5.1.1 &lt;…&gt;: Recipient address
/// rejected"); the row keeps the full text, the logs (shipped elsewhere, kept longer, read by
/// more people) get the text with each email's local part and all but the last two digits of
/// each phone number masked.
/// </summary>
public static partial class LogRedaction
{
    public static string? Contacts(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return text;
        }
        // Our own "customer's email address 'x' is not valid": whatever the quotes hold, even what
        // the patterns below would not take for an address (meera.iyer@gmail, a short number).
        text = QuotedContact().Replace(text, match => $"{match.Groups[1].Value}'{Mask(match.Groups[2].Value)}'");
        text = EmailLocalPart().Replace(text, "***@");
        // A date and time is kept; digits after it (a number written right after the date) are not.
        return PhoneNumber().Replace(text, match => Date().Match(match.Value) is { Success: true } date
            ? date.Value + PhoneNumber().Replace(match.Value[date.Length..], number => MaskDigits(number.Value))
            : MaskDigits(match.Value));
    }

    private static string Mask(string contact) =>
        contact.Contains('@', StringComparison.Ordinal) ? "***" + contact[contact.LastIndexOf('@')..] : MaskDigits(contact);

    private static string MaskDigits(string number)
    {
        var digits = number.Count(char.IsAsciiDigit);
        var seen = 0;
        return string.Concat(number.Select(c => char.IsAsciiDigit(c) && ++seen <= digits - 2 ? '*' : c));
    }

    [GeneratedRegex(@"((?:address|number|phone) )'([^']*)'")]
    private static partial Regex QuotedContact();

    // The local part of an address whose domain has a dot: what a mail server echoes.
    [GeneratedRegex(@"[^\s<>""'@,;:()\[\]]+@(?=[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")]
    private static partial Regex EmailLocalPart();

    // Eight or more digits, written with or without a + and spaces, dashes or brackets between them:
    // a phone number, also at the end of a sentence ("…the 'To' number: +919876543210."). Provider
    // error codes (Twilio 21211, WhatsApp 131026) are shorter; dotted numbers (an IP address, a
    // decimal) and names (INV-2026-000123.pdf, a host) are left alone.
    [GeneratedRegex(@"(?<![\w.*])\+?\d(?:[ ()-]{0,2}\d){7,}(?!\w|\.\w)")]
    private static partial Regex PhoneNumber();

    // A date and time (2026-11-25 04:30) reads as a long run of digits too.
    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}")]
    private static partial Regex Date();
}
