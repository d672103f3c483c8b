using Npgsql;
using NpgsqlTypes;

namespace OutboxComms.Core.Preferences;

/// <summary>
/// Consent changes a provider reports about the recipient of one of our messages, applied once in
/// the caller's transaction (the worker's completion batch, the webhook's event transaction):
/// an opt-out of the message's channel (Twilio 21610: the customer replied STOP; Gupshup 1012: the
/// number opted out) withdraws that opt-in, so later messages to the channel are suppressed instead
/// of failing one by one at the provider (a practice opts the customer in again through the API,
/// after the customer replied START for Twilio); a spam complaint or an unsubscribe through the
/// email provider's own link stops general updates everywhere, and WhatsApp's 131050 stops them on
/// WhatsApp. Also WhatsApp's user_preferences choices (stop or resume marketing), which name a
/// person by number rather than a message. Every path locks the customers first, in id order.
/// </summary>
public static class ProviderOptOuts
{
    /// <summary>The consent record's source for a channel opt-out.</summary>
    private const string Source = "provider opt-out";

    /// <summary>Why a customer gets no more general updates, as their consent record says.</summary>
    public enum GeneralUpdatesStop
    {
        /// <summary>They reported an email as spam: no general updates on any channel.</summary>
        Complaint,
        /// <summary>They used the email provider's own unsubscribe link (not ours): none on any channel.</summary>
        Unsubscribe,
        /// <summary>
        /// They stopped the business's marketing messages in WhatsApp (Cloud API error 131050, which
        /// fails the message): no general updates on WhatsApp; email and SMS are unaffected.
        /// </summary>
        WhatsAppMarketing,
    }

    // The consent record's source for each, and the channel it stops (null: every channel).
    private static (string Source, string? Channel) Describe(GeneralUpdatesStop reason) => reason switch
    {
        GeneralUpdatesStop.Complaint => ("spam complaint: no more general updates", null),
        GeneralUpdatesStop.Unsubscribe => ("unsubscribed through the email provider's link: no more general updates", null),
        GeneralUpdatesStop.WhatsAppMarketing => ("stopped marketing messages in WhatsApp: no more general updates on WhatsApp", "WHATSAPP"),
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };

    /// <summary>
    /// One opt-out signal: the message it came with, the provider that sent it and when the provider
    /// says it happened (a callback may arrive late: an opt-in recorded after that time stands).
    /// </summary>
    public readonly record struct Signal(Guid CompanyId, long MessageId, string Provider, DateTimeOffset SignalledAt);

    // The message's customer: by id, or by external id for rows a producer addressed that way;
    // a deleted one too. Nothing is sent to them any more, but a withdrawal of consent is kept
    // (India's DPDP Act): a client who returns, restored, must not get what they said STOP to.
    private const string StoppedSql = """
        SELECT m.company_id, k.id AS customer_id, m.channel, s.provider, s.signalled_at
          FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[]) AS s(company_id, message_id, provider, signalled_at)
          JOIN communication_logs m ON m.company_id = s.company_id AND m.id = s.message_id
          JOIN customers k ON k.company_id = m.company_id
                          AND k.id = coalesce(m.customer_id,
                                              (SELECT x.id FROM customers x
                                                WHERE x.company_id = m.company_id AND x.external_id = m.customer_external_id))
        """;

    // First the customers, in id order, as the API's preference change does (PreferenceEndpoints):
    // changes to one customer's consent queue behind that lock, and two writers never take the
    // customer and preference locks in opposite orders. NO KEY UPDATE, so inserts that reference
    // the customer (its reminders, this consent record's foreign key) are not blocked.
    private const string LockSql = $"""
        SELECT k.id FROM customers k
         WHERE k.id IN (SELECT customer_id FROM ({StoppedSql}) stopped)
         ORDER BY k.id
           FOR NO KEY UPDATE
        """;

    // Per channel. Only an opt-in still given is withdrawn (so each withdrawal is recorded once),
    // and not when the customer opted in to the channel again after the provider's signal.
    private static string WithdrawSql(string channel, string column) => $"""
        WITH stopped AS (
            SELECT company_id, customer_id, min(provider) AS provider, max(signalled_at) AS signalled_at
              FROM ({StoppedSql}) x
             WHERE channel = '{channel}'
             GROUP BY company_id, customer_id),
        withdrawn AS (
            UPDATE communication_preferences p SET {column} = false, updated_at = $5
              FROM stopped s
             WHERE p.customer_id = s.customer_id AND p.{column}
               AND NOT EXISTS (SELECT 1 FROM consent_records c
                                WHERE c.customer_id = s.customer_id AND c.scope = 'CHANNEL' AND c.channel = '{channel}'
                                  AND c.opted_in AND c.recorded_at > s.signalled_at)
            RETURNING s.company_id, s.customer_id, s.provider)
        INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
        SELECT company_id, customer_id, 'CHANNEL', '{channel}', false, '{Source}', provider, $5 FROM withdrawn
        """;

    // General updates stop, everywhere (a spam complaint, the email provider's unsubscribe link: as
    // the one-click unsubscribe does) or on one channel; invoices and statutory reminders keep
    // coming. Recorded once, and not when the customer was re-subscribed to them (on that channel,
    // or everywhere for an everywhere stop) after the provider's signal: a late complaint about an
    // old email does not undo the practice's later re-subscription. A customer without preferences
    // gets a row with the defaults and this opt-out.
    private static string StopGeneralUpdatesSql(GeneralUpdatesStop reason)
    {
        var (source, channel) = Describe(reason);
        var (column, value, stopped, stop, recordChannel) = channel is null
            ? ("general_updates_opt_out", "true", "p.general_updates_opt_out", "true", "NULL::text")
            : ("general_updates_opt_out_channels", $"ARRAY['{channel}']", $"'{channel}' = ANY (p.general_updates_opt_out_channels)",
               $"p.general_updates_opt_out_channels || '{channel}'::text", $"'{channel}'");
        return $"""
            WITH stopped AS (
                SELECT company_id, customer_id, min(provider) AS provider, max(signalled_at) AS signalled_at
                  FROM ({StoppedSql}) x
                 GROUP BY company_id, customer_id),
            stopping AS (
                INSERT INTO communication_preferences AS p (customer_id, {column}, updated_at)
                SELECT s.customer_id, {value}, $5 FROM stopped s
                 WHERE NOT EXISTS (SELECT 1 FROM consent_records c
                                    WHERE c.customer_id = s.customer_id AND c.scope = 'GENERAL_UPDATES'
                                      AND c.channel IS NOT DISTINCT FROM {recordChannel} AND c.opted_in AND c.recorded_at > s.signalled_at)
                ON CONFLICT (customer_id) DO UPDATE SET {column} = {stop}, updated_at = excluded.updated_at
                 WHERE NOT {stopped}
                RETURNING p.customer_id)
            INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
            SELECT s.company_id, s.customer_id, 'GENERAL_UPDATES', {recordChannel}, false, '{source.Replace("'", "''", StringComparison.Ordinal)}', s.provider, $5
              FROM stopping t JOIN stopped s ON s.customer_id = t.customer_id
            """;
    }

    private static readonly Dictionary<GeneralUpdatesStop, string> StopSql =
        Enum.GetValues<GeneralUpdatesStop>().ToDictionary(r => r, StopGeneralUpdatesSql);
    private static readonly string WithdrawSms = WithdrawSql("SMS", "sms_opt_in");
    private static readonly string WithdrawWhatsApp = WithdrawSql("WHATSAPP", "whatsapp_opt_in");

    // The company's customers a WhatsApp id ($2: the number's digits with country code) names:
    // their WhatsApp number (or phone, as dispatch falls back to it) stored in E.164, as the API
    // stores it, or as a plain SQL producer may have written it (spaces, dashes, 00 for +, an
    // Indian number without +91). Only the customers whose number ends in the same 8 digits are
    // read, from ix_customers_number_suffix (migration 0020; the expression is the index's, to the
    // letter). Locked in id order, as everywhere else; the change then applies to exactly the
    // customers locked here. Internal so a test can check its plan.
    internal const string MarketingChoiceMatchSql = """
        SELECT k.id FROM customers k
         CROSS JOIN LATERAL (SELECT coalesce(k.whatsapp_number, k.phone) ~ '^\s*(\+|00)' AS international,
                                    regexp_replace(regexp_replace(coalesce(k.whatsapp_number, k.phone), '^\s*(\+|00)', ''), '\D', '', 'g') AS digits) n
         WHERE k.company_id = $1 AND k.deleted_at IS NULL
           AND right(regexp_replace(coalesce(k.whatsapp_number, k.phone), '\D', '', 'g'), 8) = right($2, 8)
           AND (n.digits = $2 OR (NOT n.international AND '91' || ltrim(n.digits, '0') = $2))
         ORDER BY k.id
           FOR NO KEY UPDATE
        """;

    private const string MarketingStoppedSource = "stopped marketing messages in WhatsApp";
    private const string MarketingResumedSource = "resumed marketing messages in WhatsApp";

    // The user's own choice in WhatsApp: stop adds WHATSAPP to the channels general updates are
    // stopped on, resume takes it out; each change recorded once. Not when the practice changed
    // their WhatsApp general updates after the choice. Consent records are stamped when received,
    // so this compares only with the practice's records (recorded by an API key, never by
    // WhatsApp): among WhatsApp's own signals — choices and 131050 failures — the later received
    // wins. $2 are the customers locked, $3 is when the user chose, $4 when it is recorded.
    private static string MarketingChoiceSql(bool stopped) => $"""
        WITH eligible AS (
            SELECT m.id AS customer_id FROM unnest($2::uuid[]) AS m(id)
             WHERE NOT EXISTS (SELECT 1 FROM consent_records c
                                WHERE c.customer_id = m.id AND c.scope = 'GENERAL_UPDATES' AND c.channel = 'WHATSAPP' AND c.recorded_at > $3
                                  AND c.recorded_by NOT IN ('WHATSAPP', 'WHATSAPP_BUSINESS_API'))),
        changed AS ({(stopped
            ? """
              INSERT INTO communication_preferences AS p (customer_id, general_updates_opt_out_channels, updated_at)
              SELECT customer_id, ARRAY['WHATSAPP'], $4 FROM eligible
              ON CONFLICT (customer_id) DO UPDATE SET general_updates_opt_out_channels = p.general_updates_opt_out_channels || 'WHATSAPP'::text, updated_at = excluded.updated_at
               WHERE NOT 'WHATSAPP' = ANY (p.general_updates_opt_out_channels)
              RETURNING p.customer_id
              """
            : """
              UPDATE communication_preferences p SET general_updates_opt_out_channels = array_remove(p.general_updates_opt_out_channels, 'WHATSAPP'), updated_at = $4
                FROM eligible e
               WHERE p.customer_id = e.customer_id AND 'WHATSAPP' = ANY (p.general_updates_opt_out_channels)
              RETURNING p.customer_id
              """)})
        INSERT INTO consent_records (company_id, customer_id, scope, channel, opted_in, source, recorded_by, recorded_at)
        SELECT $1, customer_id, 'GENERAL_UPDATES', 'WHATSAPP', {(stopped ? "false" : "true")},
               '{(stopped ? MarketingStoppedSource : MarketingResumedSource)}', 'WHATSAPP', $4
          FROM changed
        """;

    private static readonly string MarketingStopSql = MarketingChoiceSql(stopped: true);
    private static readonly string MarketingResumeSql = MarketingChoiceSql(stopped: false);

    /// <summary>
    /// A WhatsApp user stopped or resumed the business's marketing messages in WhatsApp (the Cloud
    /// API's user_preferences webhook, which names them by WhatsApp id only): their general updates
    /// on WhatsApp stop or resume, in the caller's transaction. Answers how many of the company's
    /// customers have that number (0: none, and nothing changes) and how many of them it changed
    /// (0 when every one already had that choice, or the practice decided for them later).
    /// </summary>
    public static async Task<(int Matched, int Changed)> ApplyWhatsAppMarketingChoiceAsync(
        NpgsqlTransaction transaction, Guid companyId, string whatsAppId, bool stopped, DateTimeOffset chosenAt, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var matched = new List<Guid>();
        await using (var lockCustomers = new NpgsqlCommand(MarketingChoiceMatchSql, transaction.Connection, transaction))
        {
            lockCustomers.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
            lockCustomers.Parameters.Add(new NpgsqlParameter<string> { TypedValue = whatsAppId });
            await using var reader = await lockCustomers.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                matched.Add(reader.GetGuid(0));
            }
        }
        if (matched.Count == 0)
        {
            return (0, 0);
        }
        await using var apply = new NpgsqlCommand(stopped ? MarketingStopSql : MarketingResumeSql, transaction.Connection, transaction);
        apply.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
        apply.Parameters.Add(new NpgsqlParameter<Guid[]> { TypedValue = [.. matched] });
        apply.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = chosenAt.ToUniversalTime() });
        apply.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
        // One consent record per customer changed.
        var changed = await apply.ExecuteNonQueryAsync(cancellationToken);
        return (matched.Count, changed);
    }

    /// <summary>
    /// Withdraws the opt-ins the signals name, in the caller's transaction, after the messages'
    /// channel is recorded; <paramref name="now"/> is when it is recorded. A message on another
    /// channel withdraws nothing; no signals, no round trip.
    /// </summary>
    public static Task WithdrawAsync(NpgsqlTransaction transaction, IReadOnlyCollection<Signal> signals, DateTimeOffset now, CancellationToken cancellationToken) =>
        RunAsync(transaction, now, [(WithdrawSms, signals), (WithdrawWhatsApp, signals)], cancellationToken);

    /// <summary>
    /// The recipient of these messages reported one as spam, unsubscribed through the email
    /// provider's own link or stopped marketing messages in WhatsApp: they get no more general
    /// updates (everywhere, or on WhatsApp), recorded once, in the caller's transaction.
    /// </summary>
    public static Task StopGeneralUpdatesAsync(NpgsqlTransaction transaction, IReadOnlyCollection<Signal> signals, GeneralUpdatesStop reason, DateTimeOffset now, CancellationToken cancellationToken) =>
        RunAsync(transaction, now, [(StopSql[reason], signals)], cancellationToken);

    /// <summary>
    /// What one batch of sends reported, in the worker's completion transaction: channel opt-outs
    /// (Twilio 21610) and WhatsApp marketing stops (131050), with every customer concerned locked
    /// first in one id-ordered statement, so two batches never lock the same customers in opposite orders.
    /// </summary>
    public static Task ApplySendSignalsAsync(NpgsqlTransaction transaction, IReadOnlyCollection<Signal> optedOut, IReadOnlyCollection<Signal> marketingStopped, DateTimeOffset now, CancellationToken cancellationToken) =>
        RunAsync(transaction, now, [(WithdrawSms, optedOut), (WithdrawWhatsApp, optedOut), (StopSql[GeneralUpdatesStop.WhatsAppMarketing], marketingStopped)], cancellationToken);

    /// <summary>Locks the customers of all the signals at once, in id order, then runs each statement over its own signals.</summary>
    private static async Task RunAsync(NpgsqlTransaction transaction, DateTimeOffset now, (string Sql, IReadOnlyCollection<Signal> Signals)[] statements, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        var all = statements.SelectMany(s => s.Signals).Distinct().ToList();
        if (all.Count == 0)
        {
            return;
        }
        await using var batch = new NpgsqlBatch(transaction.Connection, transaction);
        batch.BatchCommands.Add(Command(LockSql, all));
        foreach (var (sql, signals) in statements.Where(s => s.Signals.Count > 0))
        {
            var command = Command(sql, signals);
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
            batch.BatchCommands.Add(command);
        }
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A statement over <see cref="StoppedSql"/>: $1..$4 are the signals' columns.</summary>
    private static NpgsqlBatchCommand Command(string sql, IReadOnlyCollection<Signal> signals) => new(sql)
    {
        Parameters =
        {
            new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = signals.Select(s => s.CompanyId).ToArray() },
            new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = signals.Select(s => s.MessageId).ToArray() },
            new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = signals.Select(s => s.Provider).ToArray() },
            new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, Value = signals.Select(s => s.SignalledAt.ToUniversalTime()).ToArray() },
        },
    };
}
