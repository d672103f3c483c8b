namespace OutboxComms.Core.Messages;

/// <summary>
/// The SQL that clears a message's personal content, shared by the customer's erasure and the
/// company's content retention, so both remove the same things. Parameters: <c>$1</c> the company,
/// <c>$4</c> the time of the redaction; the message row's alias is <c>m</c>.
/// </summary>
public static class MessageRedaction
{
    /// <summary>
    /// SET items: subject, body, template data and error text go, and the producer's metadata except
    /// the scheduler's own keys (which name only our ids); <c>content_redacted_at</c> is stamped, so
    /// the message is never sent again (migration 0035). A body becomes empty rather than null: a
    /// row needs a body or a template key.
    /// </summary>
    public const string ContentSet = """
        subject = NULL, content = CASE WHEN m.content IS NULL THEN NULL ELSE '' END, template_data = '{}', error_message = NULL,
        metadata = CASE WHEN jsonb_typeof(m.metadata) = 'object'
                        THEN (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{}') FROM jsonb_each(m.metadata) e
                               WHERE e.key IN ('reminderId', 'reminderStepId', 'scheduleKey', 'occurrence'))
                        ELSE '{}' END,
        content_redacted_at = $4
        """;

    /// <summary>
    /// CTEs clearing the error texts (which may quote an address or the provider's echo of the body)
    /// of the attempts and replays of the messages whose ids the CTE <paramref name="ids"/> lists,
    /// as <c>attempts</c> and <c>replays</c>, each returning a row per row changed.
    /// </summary>
    public static string RelatedRows(string ids) => $"""
        attempts AS (
            UPDATE communication_attempts a SET error_message = NULL
             WHERE a.company_id = $1 AND a.message_id IN (SELECT id FROM {ids}) AND a.error_message IS NOT NULL RETURNING 1),
        replays AS (
            UPDATE message_replays r SET previous_error = NULL
             WHERE r.company_id = $1 AND r.message_id IN (SELECT id FROM {ids}) AND r.previous_error IS NOT NULL RETURNING 1)
        """;
}
