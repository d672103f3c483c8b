using System.Text.Json.Nodes;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Tests.Webhooks;

public sealed class WebhookPayloadsTests
{
    [Fact]
    public void An_ses_notification_keeps_its_event_ids_and_codes_and_loses_addresses_headers_and_subject_also_inside_the_sns_envelope()
    {
        var inner = new JsonObject
        {
            ["eventType"] = "Bounce",
            ["bounce"] = new JsonObject
            {
                ["bounceType"] = "Permanent",
                ["bouncedRecipients"] = new JsonArray(new JsonObject { ["emailAddress"] = "meera.iyer@example.com", ["diagnosticCode"] = "smtp; 550 5.1.1 <meera.iyer@example.com>: no such user" }),
                ["timestamp"] = "2026-12-07T10:00:00.000Z",
            },
            ["mail"] = new JsonObject
            {
                ["messageId"] = "0100018c-abc", ["source"] = "accounts@practice.example", ["destination"] = new JsonArray("meera.iyer@example.com"),
                ["commonHeaders"] = new JsonObject { ["subject"] = "Invoice INV-7 for Meera Iyer", ["to"] = new JsonArray("meera.iyer@example.com") },
            },
        }.ToJsonString();
        var envelope = new JsonObject { ["Type"] = "Notification", ["MessageId"] = "sns-1", ["Message"] = inner }.ToJsonString();

        var kept = WebhookPayloads.Minimise(envelope);

        Assert.DoesNotContain("meera", kept, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Invoice", kept, StringComparison.Ordinal);
        Assert.DoesNotContain("accounts@practice", kept, StringComparison.Ordinal);
        var message = JsonNode.Parse(JsonNode.Parse(kept)!["Message"]!.GetValue<string>())!;
        Assert.Equal(("Bounce", "Permanent", "0100018c-abc", "2026-12-07T10:00:00.000Z"),
            (message["eventType"]!.GetValue<string>(), message["bounce"]!["bounceType"]!.GetValue<string>(), message["mail"]!["messageId"]!.GetValue<string>(),
             message["bounce"]!["timestamp"]!.GetValue<string>()));
        Assert.Equal("smtp; 550 5.1.1 <***@example.com>: no such user", message["bounce"]!["bouncedRecipients"]![0]!["diagnosticCode"]!.GetValue<string>());
    }

    [Fact]
    public void A_whatsapp_status_keeps_its_times_and_pricing_and_loses_the_recipients_number()
    {
        const string status = """{"id":"wamid.X","status":"delivered","timestamp":"1764000500","recipient_id":"919876543210","pricing":{"billable":true,"category":"utility"}}""";

        var kept = JsonNode.Parse(WebhookPayloads.Minimise(status))!;

        Assert.Null(kept["recipient_id"]);
        Assert.Equal(("1764000500", true), (kept["timestamp"]!.GetValue<string>(), kept["pricing"]!["billable"]!.GetValue<bool>()));
    }

    [Fact]
    public void A_query_string_report_keeps_its_form_and_loses_the_recipient_and_any_number_in_other_fields()
    {
        var kept = WebhookPayloads.Minimise("?id=mb-1&recipient=919876543210&status=delivered&statusDatetime=2026-12-07T10%3A00%3A00%2B00%3A00&statusReason=call+%2B91+9876+543+210");

        Assert.Equal("?id=mb-1&status=delivered&statusDatetime=2026-12-07T10%3A00%3A00%2B00%3A00&statusReason=", kept[..kept.IndexOf("statusReason=", StringComparison.Ordinal)] + "statusReason=");
        Assert.Equal("call +** **** *** *10", Uri.UnescapeDataString(kept[(kept.IndexOf("statusReason=", StringComparison.Ordinal) + "statusReason=".Length)..]));
    }

    [Fact]
    public void A_body_a_lenient_parser_reads_but_a_strict_one_would_refuse_is_minimised_or_kept_as_a_stub_and_never_throws()
    {
        // Duplicate names (JsonDocument, which the parsers use, takes them) and a lone surrogate in a field nobody reads.
        var duplicated = WebhookPayloads.Minimise("""[{"event":"spamreport","category":"a","category":"b","email":"meera@example.com"}]""");
        Assert.Equal("""[{"event":"spamreport","category":"a","category":"b"}]""", duplicated);
        Assert.Equal("""{"id":"x","tags":[""]}""", WebhookPayloads.Minimise("""{"id":"x","tags":["\ud800"]}"""));
        Assert.Equal(WebhookPayloads.NotKept, WebhookPayloads.Minimise("{ not json"));
        Assert.Equal(WebhookPayloads.NotKept, WebhookPayloads.Minimise("plain text from +919876543210"));
    }

    [Fact]
    public void A_messagebird_update_loses_its_content_and_an_opened_email_its_ip_and_browser_while_ids_stay_whole()
    {
        var kept = WebhookPayloads.Minimise("""
            {"id":"mb-1","status":"delivered","reference":"12345678","content":{"file":{"url":"https://f.example/inv-7?sig=abc","caption":"Dear Meera Iyer, INV-7"}},
             "ip":"203.0.113.7","useragent":"Mozilla/5.0","outbox-message-id":"98765432","sg_event_id":"ZGVsaXZlcmVk"}
            """);

        Assert.DoesNotContain("Meera", kept, StringComparison.Ordinal);
        Assert.DoesNotContain("sig=", kept, StringComparison.Ordinal);
        Assert.DoesNotContain("203.0.113.7", kept, StringComparison.Ordinal);
        Assert.DoesNotContain("Mozilla", kept, StringComparison.Ordinal);
        Assert.Equal("""{"id":"mb-1","status":"delivered","reference":"12345678","outbox-message-id":"98765432","sg_event_id":"ZGVsaXZlcmVk"}""", kept);
    }

    [Theory]
    [InlineData("""{"Type":"Notification","MessageId":"sns-1","Message":"{\"eventType\":\"Bounce\",\"mail\":{\"destination\":[\"meera@example.com\"]},\"bounce\":{\"bouncedRecipients\":[{\"diagnosticCode\":\"550 <meera@example.com>\"}]}}"}""")]
    [InlineData("""[{"email":"meera@example.com","event":"bounce","reason":"550 meera@example.com unknown","sg_event_id":"sg-1","timestamp":1764000000}]""")]
    [InlineData("""{"entry":[{"changes":[{"value":{"statuses":[{"id":"wamid.X","status":"failed","recipient_id":"919876543210","errors":[{"code":131026,"title":"Receiver +91 98765 43210 incapable"}]}]}}]}]}""")]
    [InlineData("?id=mb-1&recipient=919876543210&status=delivered&statusReason=call+%2B91+9876+543+210")]
    [InlineData("?recipient=919876543210")]
    [InlineData("MessageSid=SM1&MessageStatus=undelivered&To=%2B919876543210&ErrorCode=30003&919876543210")]
    [InlineData("")]
    [InlineData("plain text from +919876543210")]
    public void Minimising_what_minimising_left_changes_nothing(string payload)
    {
        var once = WebhookPayloads.Minimise(payload);

        Assert.Equal(once, WebhookPayloads.Minimise(once));
        Assert.DoesNotContain("9876543210", once, StringComparison.Ordinal);
        Assert.DoesNotContain("meera@", once, StringComparison.Ordinal);
    }
}
