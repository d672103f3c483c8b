using System.Text.RegularExpressions;
using OutboxComms.Core.Policies;

namespace OutboxComms.Api.Common;

/// <summary>Field formats shared by several areas of the API.</summary>
public static partial class FieldRules
{
    public const string LanguageHint = "a language code such as 'en', 'hi' or 'en-IN'";

    /// <summary>
    /// A language tag as templates are stored under (<c>en</c>, <c>hi</c>, <c>en-IN</c>). The worker
    /// matches a customer's language to a template's exactly, so both sides use this one rule.
    /// </summary>
    public static bool IsLanguageCode(string? value) => value is not null && LanguageCode().IsMatch(value);

    /// <summary>
    /// A language code as stored: a region in upper case, a script in title case (en-in → en-IN,
    /// zh-hant → zh-Hant). Tags are matched whatever their case; stored one way, "en-IN" and
    /// "en-in" are one template, not two of which the worker would always pick the same one.
    /// </summary>
    public static string NormaliseLanguage(string code) => code.Split('-') switch
    {
        [var language, { Length: 2 } region] when region.All(char.IsAsciiLetter) => $"{language}-{region.ToUpperInvariant()}",
        [var language, { Length: 4 } script] when script.All(char.IsAsciiLetter) => $"{language}-{char.ToUpperInvariant(script[0])}{script[1..].ToLowerInvariant()}",
        _ => code,
    };

    /// <summary>
    /// An IANA zone id (<c>Asia/Kolkata</c>). Windows ids, which .NET also resolves on Linux, are
    /// refused so that every stored zone reads the same to producers in any language.
    /// </summary>
    public static bool IsIanaZone(string? value) => LocalTimes.TryFindZone(value, out var zone) && zone.HasIanaId;

    [GeneratedRegex("^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", RegexOptions.CultureInvariant)]
    private static partial Regex LanguageCode();
}
