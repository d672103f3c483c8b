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
    /// An IANA zone id (<c>Asia/Kolkata</c>). Windows ids, which .NET also resolves on Linux, are
    /// refused so that every stored zone reads the same to producers in any language.
    /// </summary>
    public static bool IsIanaZone(string? value) => LocalTimes.TryFindZone(value, out var zone) && zone.HasIanaId;

    [GeneratedRegex("^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", RegexOptions.CultureInvariant)]
    private static partial Regex LanguageCode();
}
