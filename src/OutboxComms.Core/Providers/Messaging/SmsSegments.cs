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
        if (text.Length == 0)
        {
            return 1;
        }
        var septets = 0;
        foreach (var c in text)
        {
            if (BasicSet.Contains(c))
            {
                septets++;
            }
            else if (ExtensionSet.Contains(c))
            {
                septets += 2;
            }
            else
            {
                return Parts(text.Length, 70, 67);
            }
        }
        return Parts(septets, 160, 153);
    }

    private static int Parts(int units, int single, int perPart) => units <= single ? 1 : (units + perPart - 1) / perPart;
}
