using Npgsql;
using NpgsqlTypes;

namespace OutboxComms.Core.Preferences;

/// <summary>
/// A provider said the recipient of one of our messages opted out of its channel (Twilio 21610:
/// the customer replied STOP; Gupshup 1012: the number opted out). The customer's opt-in for that
/// channel is withdrawn and the withdrawal recorded as consent, once, in the caller's transaction
/// (the worker's completion batch, the webhook's event transaction); later messages to the channel
/// are then suppressed by the worker instead of failing one by one at the provider. A practice
/// opts the customer in again through the API (after the customer replied START, for Twilio).
/// </summary>
public static class ProviderOptOuts
{
    /// <summary>The consent record's source.</summary>
    public const string Source = "provider opt-out";

    /// <summary>One opt-out signal: the message it came with, and the provider that sent it.</summary>
    public readonly record struct Signal(Guid CompanyId, long MessageId, string Provider);

    // Per channel: the message's customer (by id, or by external id for rows a producer addressed
    // that way) and the channel the message went out on. The UPDATE's condition is re-checked on
    // the newest version of the row when another transaction changed it meanwhile (the API's
    // preference change, another worker's batch), so each withdrawal is recorded exactly once.
    private static string WithdrawSql(string channel, string column) => $"""
        WITH stopped AS (
            SELECT m.company_id, k.id AS customer_id, min(s.provider) AS provider
              FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS s(company_id, message_id, provider)
              JOIN communication_logs m ON m.company_id = s.company_id AND m.id = s.message_id AND m.channel = '{channel}'
              JOIN customers k ON k.company_id = m.company_id
                              AND k.id = coalesce(m.customer_id,
                                                  (SELECT x.id FROM customers x
                                                    WHERE x.company_id = m.company_id AND x.external_id = m.customer_external_id))
             GROUP BY m.company_id, k.id),
        withdrawn AS (
            UPDATE communication_preferences p SET {column} = false, updated_at = $4
              FROM stopped s
             WHERE p.customer_id = s.customer_id AND p.{column}
            RETURNING s.company_id, s.customer_id, s.provider)
        INSERT INTO consent_records (company_id, customer_id, channel, opted_in, source, recorded_by, recorded_at)
        SELECT company_id, customer_id, '{channel}', false, '{Source}', provider, $4 FROM withdrawn
        """;

    private static readonly string WithdrawSms = WithdrawSql("SMS", "sms_opt_in");
    private static readonly string WithdrawWhatsApp = WithdrawSql("WHATSAPP", "whatsapp_opt_in");

    /// <summary>
    /// The statements that withdraw the opt-ins the signals name (none when there are none), to run
    /// after the messages' channel is recorded. A message on another channel withdraws nothing.
    /// </summary>
    public static IEnumerable<NpgsqlBatchCommand> Commands(IReadOnlyCollection<Signal> signals, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(signals);
        if (signals.Count == 0)
        {
            yield break;
        }
        foreach (var sql in new[] { WithdrawSms, WithdrawWhatsApp })
        {
            var command = new NpgsqlBatchCommand(sql);
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = signals.Select(s => s.CompanyId).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, Value = signals.Select(s => s.MessageId).ToArray() });
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = signals.Select(s => s.Provider).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
            yield return command;
        }
    }
}
