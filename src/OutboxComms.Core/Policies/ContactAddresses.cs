using System.Net.Mail;
using PhoneNumbers;

namespace OutboxComms.Core.Policies;

/// <summary>Validation and normalisation of where a message goes.</summary>
public static class ContactAddresses
{
    /// <summary>Numbers without a country code are read as Indian numbers.</summary>
    public const string DefaultRegion = "IN";

    private static readonly PhoneNumberUtil Phones = PhoneNumberUtil.GetInstance();

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
        try
        {
            var number = Phones.Parse(value, DefaultRegion);
            if (!Phones.IsValidNumber(number))
            {
                return false;
            }
            e164 = Phones.Format(number, PhoneNumberFormat.E164);
            return true;
        }
        catch (NumberParseException)
        {
            return false;
        }
    }
}
