using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Providers;

public sealed class EmailApiRegistrationTests
{
    [Theory]
    [InlineData(EmailProvider.SendGrid)]
    [InlineData(EmailProvider.Resend)]
    [InlineData(EmailProvider.Mailgun)]
    [InlineData(EmailProvider.AwsSes)]
    public void AddProviders_makes_each_http_email_provider_resolvable_under_its_settings_name(EmailProvider configured)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration["Encryption:Keys"] = TestKeys.Encryption;
        builder.AddProviders();
        using var host = builder.Build();
        var settings = new CompanySettings { CompanyId = Guid.NewGuid(), EmailEnabled = true, EmailProvider = configured };

        var provider = host.Services.GetRequiredService<ProviderRegistry>().Resolve(settings, Channel.Email, out var reason);

        Assert.Null(reason);
        Assert.Equal(WireName<EmailProvider>.Of(configured), provider!.Name);
    }
}
