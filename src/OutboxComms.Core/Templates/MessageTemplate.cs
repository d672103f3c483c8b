using System.Text.Json;
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
}
