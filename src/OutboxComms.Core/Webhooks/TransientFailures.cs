using System.Collections.Frozen;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// The failure codes a delivery webhook reports after the provider took a message that say the
/// failure is temporary: the account's or the provider's condition (a rate limit, a spam limit, an
/// empty wallet, an outage), not this message's or its recipient's. The send path treats the same
/// codes as temporary when the provider answers them at once (WhatsAppCloudProvider, TwilioProvider,
/// GupshupProvider); reported later, the message is sent again (DeliveryEventRecorder). Most are the
/// account's condition (<see cref="AccountWide"/>): the message waits it out as a send-time outage
/// does, on the outage budget (Dispatch:OutageRetries, backing off to Dispatch:OutageMaxDelay) and
/// using up no retry; the others use up one retry after the retry backoff. Any other code stays final.
/// </summary>
public static class TransientFailures
{
    /// <summary>
    /// Meta's (the Cloud API's; Gupshup passes them through): 2 and 131016 service unavailable,
    /// 4, 80007 and 130429 rate and throughput limits, 131042 the account's payment problem, 131048
    /// the number's spam rate limit — all the account's — and 131056 too many messages to this
    /// recipient, the message's own.
    /// </summary>
    public static readonly FrozenSet<string> WhatsApp = FrozenSet.Create(StringComparer.Ordinal,
        "2", "4", "80007", "130429", "131016", "131042", "131048", "131056");

    /// <summary>
    /// Gupshup's own 1003 (wallet balance low), and Meta's, passed through. Not 4001: Gupshup's
    /// table says "stop sending messages and contact Gupshup", which no resend should ignore.
    /// </summary>
    public static readonly FrozenSet<string> Gupshup = FrozenSet.Create(StringComparer.Ordinal, ["1003", .. WhatsApp]);

    /// <summary>Twilio's: 30001 the sender's queue overflowed, 63018 WhatsApp's rate limit for the sender.</summary>
    public static readonly FrozenSet<string> Twilio = FrozenSet.Create(StringComparer.Ordinal, "30001", "63018");

    /// <summary>The codes above that are the account's or the provider's condition rather than one message's: all but Meta's 131056.</summary>
    public static bool AccountWide(string code) => code != "131056";
}
