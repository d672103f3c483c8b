using System.Collections.Concurrent;
using System.Net.Mail;
using PhoneNumbers;

namespace OutboxComms.Core.Policies;

/// <summary>Validation and normalisation of where a message goes.</summary>
public static class ContactAddresses
{
    /// <summary>Numbers without a country code are read as Indian numbers.</summary>
    public const string DefaultRegion = "IN";

    private const int PhoneCacheLimit = 100_000;
    private static readonly PhoneNumberUtil Phones = PhoneNumberUtil.GetInstance();

    // Parsing with libphonenumber costs microseconds (regular expressions) and the worker checks the
    // same customers' numbers over and over: remember the answer (null = not valid) per input text.
    private static readonly ConcurrentDictionary<string, string?> PhoneCache = new(StringComparer.Ordinal);
    private static int phoneCacheSize;

    public static bool TryNormaliseEmail(string? value, out string email)
    {
        email = "";
        if (string.IsNullOrWhiteSpace(value))
        {
            return false;
        }
        var trimmed = value.Trim();
        if (!MailAddress.TryCreate(trimmed, out var address) || address.Address != trimmed || !address.Host.Contains('.', StringComparison.Ordinal))
        {
            return false;
        }
        email = address.Address;
        return true;
    }

    /// <summary>E.164 (<c>+919876543210</c>) when <paramref name="value"/> is a valid number.</summary>
    public static bool TryNormalisePhone(string? value, out string e164)
    {
        e164 = "";
        if (string.IsNullOrWhiteSpace(value))
        {
            return false;
        }
        if (!PhoneCache.TryGetValue(value, out var normalised))
        {
            normalised = ParsePhone(value);
            // Counted on the side: ConcurrentDictionary.Count takes every lock of the dictionary.
            if (Interlocked.Increment(ref phoneCacheSize) > PhoneCacheLimit)
            {
                PhoneCache.Clear();
                Interlocked.Exchange(ref phoneCacheSize, 0);
            }
            PhoneCache.TryAdd(value, normalised);
        }
        e164 = normalised ?? "";
        return normalised is not null;
    }

    private static string? ParsePhone(string value)
    {
        try
        {
            var number = Phones.Parse(value, DefaultRegion);
            return Phones.IsValidNumber(number) ? Phones.Format(number, PhoneNumberFormat.E164) : null;
        }
        catch (NumberParseException)
        {
            return null;
        }
    }
}
