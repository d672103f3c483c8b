using OutboxComms.Core.Policies;

namespace OutboxComms.Tests.Policies;

public sealed class ContactAddressesTests
{
    [Theory]
    [InlineData("98765 43210", "+919876543210")]
    [InlineData("+91 98765-43210", "+919876543210")]
    [InlineData("09876543210", "+919876543210")]
    [InlineData("+1 (212) 555-0123", "+12125550123")]
    public void Phone_numbers_are_normalised_to_E164_reading_bare_numbers_as_Indian(string input, string expected)
    {
        Assert.True(ContactAddresses.TryNormalisePhone(input, out var e164));
        Assert.Equal(expected, e164);
    }

    [Theory]
    [InlineData("12345")]
    [InlineData("not a number")]
    [InlineData("")]
    [InlineData(null)]
    public void Invalid_phone_numbers_are_refused(string? input)
    {
        Assert.False(ContactAddresses.TryNormalisePhone(input, out _));
    }

    [Theory]
    [InlineData("98765 43210", null)]
    [InlineData("+1 (212) 555-0123", null)]             // fixed line or mobile: the plan cannot tell
    [InlineData("011 2345 6789", "a landline")]          // Delhi
    [InlineData("1800 180 1111", "a toll-free number")]
    [InlineData("+44 20 7946 0958", null)]              // a London landline: BT reads texts to it aloud
    [InlineData("+1 800 555 0199", null)]               // North American toll-free numbers take texts
    public void Sms_numbers_must_be_able_to_receive_sms(string input, string? notMobile)
    {
        Assert.Equal(notMobile is null, ContactAddresses.TryNormaliseSmsNumber(input, out var e164, out var kind));
        Assert.Equal(notMobile, kind);
        Assert.StartsWith("+", e164, StringComparison.Ordinal);
        Assert.True(ContactAddresses.TryNormalisePhone(input, out _));   // still a valid number, for WhatsApp
    }

    [Theory]
    [InlineData("client@example.com", true)]
    [InlineData(" accounts@practice.co.in ", true)]
    [InlineData("no-at-sign.example.com", false)]
    [InlineData("Client <client@example.com>", false)]
    [InlineData("client@localhost", false)]
    [InlineData("", false)]
    [InlineData("info@münchen.de", true)]          // an internationalised domain
    [InlineData("accounts@rao.भारत", true)]
    [InlineData("राम@डाटामेल.भारत", true)]          // and a Hindi mailbox (DATAMAIL)
    public void Email_addresses_must_be_plain_and_valid(string input, bool valid)
    {
        Assert.Equal(valid, ContactAddresses.TryNormaliseEmail(input, out _));
    }

    [Theory]
    [InlineData("client@example.com", "client@example.com")]
    [InlineData("info@münchen.de", "info@xn--mnchen-3ya.de")]
    [InlineData("accounts@rao.भारत", "accounts@rao.xn--h2brj9c")]
    [InlineData("राम@example.भारत", "राम@example.xn--h2brj9c")]   // the mailbox stays: only a server with SMTPUTF8 takes it
    public void An_address_goes_to_a_provider_with_its_domain_in_ascii_as_dns_knows_it(string stored, string sent)
    {
        Assert.True(ContactAddresses.TryNormaliseEmail(stored, out var email));
        Assert.Equal(stored, email);   // kept as the practice wrote it
        Assert.Equal(sent, ContactAddresses.ForSending(email));
    }

    [Fact]
    public void The_companys_own_addresses_reach_the_provider_with_the_domain_in_ascii_too()
    {
        var settings = new OutboxComms.Core.Companies.CompanySettings
        {
            CompanyId = Guid.NewGuid(), EmailProvider = OutboxComms.Core.Companies.EmailProvider.SendGrid,
            FromEmail = "billing@rao.भारत", ReplyToEmail = " accounts@rao.भारत",
        };
        var secrets = new OutboxComms.Core.Security.SecretProtector(Microsoft.Extensions.Options.Options.Create(
            new OutboxComms.Core.Security.EncryptionKeyOptions { Keys = OutboxComms.Tests.Infrastructure.TestKeys.Encryption }));

        var account = OutboxComms.Core.Providers.ProviderAccount.For(settings, OutboxComms.Core.Messages.Channel.Email, secrets);

        Assert.Equal(("billing@rao.xn--h2brj9c", "accounts@rao.xn--h2brj9c"), (account.From, account.ReplyTo));
    }
}
