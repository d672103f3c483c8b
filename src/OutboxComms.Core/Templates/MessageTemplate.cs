using System.Globalization;
using System.Text.Json;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Templates;

/// <summary>A company's Scriban template for one key, channel and language.</summary>
public class MessageTemplate
{
    public Guid Id { get; set; }
    public Guid CompanyId { get; set; }
    public required string Key { get; set; }
    public Channel Channel { get; set; }
    public string Language { get; set; } = "en";
    public string? Subject { get; set; }
    public required string Body { get; set; }
    public string? HtmlBody { get; set; }
    /// <summary>WhatsApp: the provider-approved template this maps to.</summary>
    public string? ProviderTemplateName { get; set; }
    public string? ProviderTemplateLanguage { get; set; }
    /// <summary>WhatsApp: ordered Scriban expressions that fill the approved template's parameters.</summary>
    public JsonDocument ParameterMapping { get; set; } = JsonDocument.Parse("[]");
    public int Version { get; set; } = 1;
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary><c>key@vN/CHANNEL/language</c>: which template text rendered a message, as recorded in <c>template_used</c>.</summary>
    /// <summary>The language sent with the provider template: the approved template's own, else this template's tag in WhatsApp's form (en-GB as en_GB).</summary>
    public string ProviderLanguage() => ProviderTemplateLanguage ?? Language.Replace('-', '_');

    public string Reference() => string.Create(CultureInfo.InvariantCulture, $"{Key}@v{Version}/{WireName<Channel>.Of(Channel)}/{Language}");

    /// <summary>
    /// The languages tried, in order, to find a customer's template: theirs, then its base language
    /// ("hi-IN", then "hi"), the company's likewise, then English. Tags match whatever their case
    /// (a business app may write "en-in" by SQL); the worker compares them case-insensitively.
    /// </summary>
    public static IEnumerable<string> LanguagesToTry(string customerLanguage, string companyLanguage) =>
        new[] { customerLanguage, BaseLanguage(customerLanguage), companyLanguage, BaseLanguage(companyLanguage), "en" }.Distinct(StringComparer.OrdinalIgnoreCase);

    private static string BaseLanguage(string tag) => tag.IndexOf('-', StringComparison.Ordinal) is > 0 and var dash ? tag[..dash] : tag;
}
