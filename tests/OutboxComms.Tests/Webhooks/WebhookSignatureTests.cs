using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Security;
using OutboxComms.Core.Webhooks;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Webhooks;

/// <summary>Signature checks against the providers' own published examples.</summary>
public sealed class WebhookSignatureTests
{
    private static readonly SecretProtector Secrets = new(Options.Create(new EncryptionKeyOptions { Keys = TestKeys.Encryption }));

    private static WebhookRequest Request(string url, string body, Dictionary<string, string> headers, Dictionary<string, string>? form = null) =>
        new(new Uri(url), body, new Dictionary<string, string>(headers, StringComparer.OrdinalIgnoreCase), form ?? []);

    // Twilio's documented example: auth token 12345 → GvWf1cFY/Q7PnoempGyD5oXAezc=.
    private static readonly Dictionary<string, string> TwilioParams = new()
    {
        ["CallSid"] = "CA1234567890ABCDE",
        ["Caller"] = "+14158675310",
        ["Digits"] = "1234",
        ["From"] = "+14158675310",
        ["To"] = "+18005551212",
    };

    [Theory]
    [InlineData("GvWf1cFY/Q7PnoempGyD5oXAezc=", true)]
    [InlineData("HvWf1cFY/Q7PnoempGyD5oXAezc=", false)]
    [InlineData("", false)]
    public void Twilio_signature_matches_twilios_documented_example(string signature, bool valid)
    {
        var settings = new CompanySettings { SmsProvider = SmsProvider.Twilio, SmsApiKeyEncrypted = Secrets.Protect("12345", new CompanySettings().Slot(nameof(CompanySettings.SmsApiKeyEncrypted))) };
        var request = Request("https://mycompany.com/myapp.php?foo=1&bar=2", "", new() { ["X-Twilio-Signature"] = signature }, TwilioParams);

        Assert.Equal(valid, new TwilioWebhook().Verify(request, settings, Secrets) is null);
    }

    [Fact]
    public void Twilio_signature_fails_when_a_parameter_was_changed()
    {
        var settings = new CompanySettings { WhatsAppProvider = WhatsAppProvider.Twilio, WhatsAppApiKeyEncrypted = Secrets.Protect("12345", new CompanySettings().Slot(nameof(CompanySettings.WhatsAppApiKeyEncrypted))) };
        var tampered = new Dictionary<string, string>(TwilioParams) { ["Digits"] = "9999" };

        Assert.NotNull(new TwilioWebhook().Verify(Request("https://mycompany.com/myapp.php?foo=1&bar=2", "", new() { ["X-Twilio-Signature"] = "GvWf1cFY/Q7PnoempGyD5oXAezc=" }, tampered), settings, Secrets));
    }

    // Svix's documented example (Resend signs webhooks with Svix).
    [Theory]
    [InlineData("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 0, true)]
    [InlineData("v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 0, true)]
    [InlineData("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 600, false)]  // replayed ten minutes later
    [InlineData("v1,h0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 0, false)]
    public void Resend_svix_signature_matches_the_documented_example_within_the_tolerance(string signature, int secondsLater, bool valid)
    {
        var settings = new CompanySettings { EmailProvider = EmailProvider.Resend, EmailWebhookSecretEncrypted = Secrets.Protect("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", new CompanySettings().Slot(nameof(CompanySettings.EmailWebhookSecretEncrypted))) };
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1614265330 + secondsLater));
        var request = Request("https://x.example/webhooks/resend/1", """{"test": 2432232314}""", new()
        {
            ["svix-id"] = "msg_p5jXN8AQM9LWM0D4loKWxJek",
            ["svix-timestamp"] = "1614265330",
            ["svix-signature"] = signature,
        });

        Assert.Equal(valid, new ResendWebhook(time).Verify(request, settings, Secrets) is null);
    }

    [Theory]
    [InlineData("0555d704313d1d4b95bd9306de6c1398d3e3879d4cb9bcf653ef0d93bf33afaf", true)]
    [InlineData("0555d704313d1d4b95bd9306de6c1398d3e3879d4cb9bcf653ef0d93bf33afae", false)]
    public void Mailgun_signature_is_hmac_sha256_of_timestamp_and_token(string signature, bool valid)
    {
        // Vector computed independently with Python's hmac module.
        var settings = new CompanySettings { EmailProvider = EmailProvider.Mailgun, EmailWebhookSecretEncrypted = Secrets.Protect("key-7e55d003b5c27a1b2d0ab3e4fbe8d5c1", new CompanySettings().Slot(nameof(CompanySettings.EmailWebhookSecretEncrypted))) };
        var body = $$$"""{"signature":{"timestamp":"1700000000","token":"c0ffee0123456789abcdef0123456789abcdef0123456789ab","signature":"{{{signature}}}"},"event-data":{"event":"delivered"}}""";

        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1700000000 + 299)); // inside the five minutes

        Assert.Equal(valid, new MailgunWebhook(time).Verify(Request("https://x.example/", body, []), settings, Secrets) is null);
    }
}
