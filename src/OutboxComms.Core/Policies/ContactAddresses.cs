using System.Collections.Concurrent;
using System.Text;
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
    private static readonly ConcurrentDictionary<string, Phone?> PhoneCache = new(StringComparer.Ordinal);
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

    /// <summary>
    /// The address as a provider gets it: an internationalised domain (<c>münchen.de</c>, <c>.भारत</c>)
    /// in its ASCII form (<c>xn--mnchen-3ya.de</c>), which every provider's API and every mail server
    /// takes, while the customer record keeps it as the practice wrote it. A mailbox name in another
    /// script (DATAMAIL's Hindi addresses) stays: only a mail server that speaks SMTPUTF8 takes it,
    /// and one that does not refuses it (a bounce, with the server's reply).
    /// </summary>
    public static string ForSending(string email)
    {
        ArgumentNullException.ThrowIfNull(email);
        var at = email.LastIndexOf('@');
        if (at < 0 || Ascii.IsValid(email.AsSpan(at + 1)))
        {
            return email;
        }
        try
        {
            return string.Concat(email.AsSpan(0, at + 1), Idn.GetAscii(email[(at + 1)..]));
        }
        catch (ArgumentException)
        {
            return email;   // not a name IDNA can write in ASCII: the provider says what it makes of it
        }
    }

    private static readonly System.Globalization.IdnMapping Idn = new();

    /// <summary>E.164 (<c>+919876543210</c>) when <paramref name="value"/> is a valid number.</summary>
    public static bool TryNormalisePhone(string? value, out string e164)
    {
        var phone = Lookup(value);
        e164 = phone?.E164 ?? "";
        return phone is not null;
    }

    /// <summary>
    /// As <see cref="TryNormalisePhone"/>, for SMS: also false, with the kind of number in
    /// <paramref name="notMobile"/>, for a valid number that cannot receive SMS (an Indian landline,
    /// a toll-free or premium-rate number). WhatsApp may still run on a landline, so only SMS asks.
    /// </summary>
    public static bool TryNormaliseSmsNumber(string? value, out string e164, out string? notMobile)
    {
        var phone = Lookup(value);
        e164 = phone?.E164 ?? "";
        notMobile = phone?.NotMobile;
        return phone is { NotMobile: null };
    }

    private static Phone? Lookup(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }
        if (!PhoneCache.TryGetValue(value, out var phone))
        {
            phone = ParsePhone(value);
            // Counted on the side: ConcurrentDictionary.Count takes every lock of the dictionary.
            if (Interlocked.Increment(ref phoneCacheSize) > PhoneCacheLimit)
            {
                PhoneCache.Clear();
                Interlocked.Exchange(ref phoneCacheSize, 0);
            }
            PhoneCache.TryAdd(value, phone);
        }
        return phone;
    }

    /// <summary>A valid number: E.164, and what kind of number it is when it is certainly not one SMS reaches.</summary>
    private sealed record Phone(string E164, string? NotMobile);

    private static Phone? ParsePhone(string value)
    {
        try
        {
            var number = Phones.Parse(value, DefaultRegion);
            if (!Phones.IsValidNumber(number))
            {
                return null;
            }
            // Indian landlines and toll-free numbers take no SMS. Elsewhere some do (text-to-landline
            // in the UK and Australia, toll-free texting in North America): the provider decides.
            var india = number.CountryCode == 91;
            var notMobile = Phones.GetNumberType(number) switch
            {
                PhoneNumberType.FIXED_LINE when india => "a landline",
                PhoneNumberType.TOLL_FREE when india => "a toll-free number",
                PhoneNumberType.PREMIUM_RATE => "a premium-rate number",
                PhoneNumberType.SHARED_COST => "a shared-cost number",
                PhoneNumberType.UAN => "a universal access number",
                PhoneNumberType.VOICEMAIL => "a voicemail number",
                _ => null,   // mobile, fixed line or mobile (where the plan cannot tell), VoIP, unknown
            };
            return new Phone(Phones.Format(number, PhoneNumberFormat.E164), notMobile);
        }
        catch (NumberParseException)
        {
            return null;
        }
    }
}
