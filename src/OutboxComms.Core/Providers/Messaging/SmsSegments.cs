namespace OutboxComms.Core.Providers.Messaging;

/// <summary>
/// How many SMS a text goes as, which is what carriers and providers bill: a text in the GSM 03.38
/// alphabet fits 160 characters in one SMS and 153 per part when split (the extension characters
/// <c>^ { } [ ] ~ \ | €</c> and form feed take two); anything else — a ₹ sign, Hindi, an emoji — goes
/// as UCS-2, 70 UTF-16 units in one SMS and 67 per part.
/// </summary>
public static class SmsSegments
{
    private const string Basic =
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

    private const string Extension = "^{}\\[~]|€\f";

    private static readonly HashSet<char> BasicSet = [.. Basic];
    private static readonly HashSet<char> ExtensionSet = [.. Extension];

    public static int Count(string text)
    {
        var gsm = text.All(c => BasicSet.Contains(c) || ExtensionSet.Contains(c));
        var single = gsm ? 160 : 70;
        var perPart = gsm ? 153 : 67;
        // A part never ends inside a character: an extension character's escape and its code (GSM),
        // or a surrogate pair (an emoji in UCS-2), go whole into the next part when only one unit is left.
        var parts = 1;
        var used = 0;
        var total = 0;
        for (var i = 0; i < text.Length; i++)
        {
            var width = gsm
                ? ExtensionSet.Contains(text[i]) ? 2 : 1
                : char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            if (width == 2 && !gsm)
            {
                i++;
            }
            total += width;
            if (used + width > perPart)
            {
                parts++;
                used = 0;
            }
            used += width;
        }
        return total <= single ? 1 : parts;
    }
}
