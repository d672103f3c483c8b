using System.Globalization;
using MimeKit;
using OutboxComms.Core.Messages;

namespace OutboxComms.Core.Providers.Email;

/// <summary>
/// How every email we send looks, whatever carries it: HTML with a plain-text alternative,
/// attachments, Reply-To, a Message-Id derived from our message id (so a resend is recognisably the
/// same message), and RFC 8058 one-click unsubscribe headers on non-transactional mail.
/// SMTP sends this MIME as is; SES sends it raw; the JSON APIs copy its parts.
/// </summary>
public static class EmailComposition
{
    /// <summary>Our id for a message, as a Message-Id (without angle brackets) in the sender's domain.</summary>
    public static string MessageId(OutboundMessage message, string fromEmail)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(fromEmail);
        var domain = fromEmail[(fromEmail.LastIndexOf('@') + 1)..];
        return string.Create(CultureInfo.InvariantCulture, $"outboxcomms.{message.CompanyId:N}.{message.MessageId}@{domain}");
    }

    /// <summary>Headers beyond From/To/Subject that every email carries, for the JSON APIs that take a header map.</summary>
    public static Dictionary<string, string> ExtraHeaders(OutboundMessage message, string fromEmail)
    {
        ArgumentNullException.ThrowIfNull(message);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["Message-ID"] = $"<{MessageId(message, fromEmail)}>",
        };
        if (message.UnsubscribeUrl is { } unsubscribe)
        {
            headers["List-Unsubscribe"] = $"<{unsubscribe.AbsoluteUri}>";
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click";
        }
        return headers;
    }

    public static MimeMessage Build(OutboundMessage message, ProviderAccount account, IReadOnlyList<LoadedAttachment> attachments)
    {
        ArgumentNullException.ThrowIfNull(message);
        ArgumentNullException.ThrowIfNull(account);
        ArgumentNullException.ThrowIfNull(attachments);
        var from = account.From ?? throw new InvalidOperationException("the company has no from address configured");
        var mime = new MimeMessage
        {
            Subject = message.Subject ?? "",
            MessageId = MessageId(message, from),
            Date = DateTimeOffset.UtcNow,
        };
        mime.From.Add(new MailboxAddress(account.FromName ?? "", from));
        mime.To.Add(new MailboxAddress(message.ToName ?? "", message.To));
        if (account.ReplyTo is { Length: > 0 } replyTo)
        {
            mime.ReplyTo.Add(MailboxAddress.Parse(replyTo));
        }
        foreach (var (name, value) in ExtraHeaders(message, from).Where(h => !h.Key.Equals("Message-ID", StringComparison.OrdinalIgnoreCase)))
        {
            mime.Headers.Add(name, value);
        }

        var body = new BodyBuilder { TextBody = message.Body, HtmlBody = message.HtmlBody };
        foreach (var attachment in attachments)
        {
            body.Attachments.Add(attachment.FileName, attachment.Content, ContentType.Parse(attachment.ContentType));
        }
        mime.Body = body.ToMessageBody();
        return mime;
    }

    /// <summary>Promotional/general mail gets one-click unsubscribe; invoices and statutory reminders do not.</summary>
    public static bool IsNonTransactional(MessageType type) => type == MessageType.GeneralUpdate;

}
