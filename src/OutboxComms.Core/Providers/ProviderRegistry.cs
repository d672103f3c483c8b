using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers;

/// <summary>
/// Finds the client for a company's configured provider on a channel. Only providers registered in
/// DI exist; a later registration with the same name and channel replaces an earlier one.
/// </summary>
public sealed class ProviderRegistry
{
    private readonly Dictionary<(Channel, string), IMessageProvider> providers = [];

    public ProviderRegistry(IEnumerable<IMessageProvider> registered)
    {
        ArgumentNullException.ThrowIfNull(registered);
        foreach (var provider in registered)
        {
            foreach (var channel in provider.Channels)
            {
                providers[(channel, provider.Name)] = provider;
            }
        }
    }

    public bool IsAvailable(Channel channel, string providerName) => providers.ContainsKey((channel, providerName));

    public IMessageProvider? Find(Channel channel, string providerName) => providers.GetValueOrDefault((channel, providerName));

    /// <summary>Whether the company switched the channel on, and which provider it chose for it.</summary>
    public static (bool Enabled, string? Provider) Configured(CompanySettings? settings, Channel channel) => settings is null ? (false, null) : channel switch
    {
        Channel.Email => (settings.EmailEnabled, settings.EmailProvider is { } e ? WireName<EmailProvider>.Of(e) : null),
        Channel.WhatsApp => (settings.WhatsAppEnabled, settings.WhatsAppProvider is { } w ? WireName<WhatsAppProvider>.Of(w) : null),
        Channel.Sms => (settings.SmsEnabled, settings.SmsProvider is { } s ? WireName<SmsProvider>.Of(s) : null),
        _ => (false, null),
    };

    /// <summary>
    /// The provider for <paramref name="channel"/>, or the reason (in a practice's words) why the
    /// company cannot send on it.
    /// </summary>
    public IMessageProvider? Resolve(CompanySettings? settings, Channel channel, out string? reason)
    {
        reason = null;
        var (enabled, name) = Configured(settings, channel);
        var channelName = WireName<Channel>.Of(channel);
        if (channel is Channel.Voice)
        {
            reason = "the VOICE channel has no provider";
        }
        else if (!enabled)
        {
            reason = $"the company has not enabled {channelName}";
        }
        else if (name is null)
        {
            reason = $"the company has no {channelName} provider configured";
        }
        else if (providers.TryGetValue((channel, name), out var provider))
        {
            return provider;
        }
        else
        {
            reason = $"the {channelName} provider {name} is not available in this build";
        }
        return null;
    }
}
