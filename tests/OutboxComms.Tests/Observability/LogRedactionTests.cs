using OutboxComms.Core.Observability;

namespace OutboxComms.Tests.Observability;

public sealed class LogRedactionTests
{
    [Theory]
    [InlineData("customer's WhatsApp number '+91 98765 432101' is not valid", "customer's WhatsApp number '+** ***** ****01' is not valid")]
    [InlineData("Twilio 21211: The 'To' number +919876543210 is not a valid phone number.", "Twilio 21211: The 'To' number +**********10 is not a valid phone number.")]
    [InlineData("550 5.1.1 <meera.iyer@example.co.in>: Recipient address rejected", "550 5.1.1 <***@example.co.in>: Recipient address rejected")]
    [InlineData("customer's email address 'meera.iyer@gmail' is not valid", "customer's email address '***@gmail' is not valid")]
    [InlineData("customer's WhatsApp number '98765' is not valid", "customer's WhatsApp number '***65' is not valid")]
    [InlineData("connect 192.168.100.200 failed; balance 12345.50", "connect 192.168.100.200 failed; balance 12345.50")]
    [InlineData("WhatsApp 131026: message undeliverable", "WhatsApp 131026: message undeliverable")]
    [InlineData("retry 2 of 3 at 2026-11-25 04:30:00Z", "retry 2 of 3 at 2026-11-25 04:30:00Z")]
    [InlineData("call (022) 2345-6789 or 98765-43210", "call (***) ****-**89 or *****-***10")]
    [InlineData("TWILIO 21408: Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +919876543210.", "TWILIO 21408: Permission to send an SMS has not been enabled for the region indicated by the 'To' number: +**********10.")]
    [InlineData("sent 2026-11-25 98765 43210 refused; paid 12345678.90.", "sent 2026-11-25 ***** ***10 refused; paid 12345678.90.")]
    [InlineData("SMTP: attachment INV-2026-000123.pdf could not be fetched from https://files.example/20261125123456.pdf", "SMTP: attachment INV-2026-000123.pdf could not be fetched from https://files.example/20261125123456.pdf")]
    [InlineData(null, null)]
    public void Contact_details_are_masked_and_the_rest_is_kept(string? text, string? logged) =>
        Assert.Equal(logged, LogRedaction.Contacts(text));
}
