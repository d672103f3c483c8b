-- A business app's own database role: it may enqueue messages (and their files) and nothing else.
-- Run as the schema's owner, naming the role (which must exist):
--   psql "$OWNER_URL" -v role=invoicing_app -f ops/sql/producer-role.sql
--
-- It may write the columns a producer sets (README, "Enqueue from your own application"), and read
-- back a new message's key for the attachments recipe (RETURNING company_id, id). The columns that
-- belong to the worker — status, the lease (locked_by, locked_until), counters (retry_count,
-- attempt_count, replay_count), the split marker and requested channel, provider ids and costs —
-- keep their defaults: a producer's typo there (a future locked_until, a status of SENT, a forged
-- split_from that passes a second reminder as a twin) is refused instead of stalling or
-- misleading the worker. It cannot read other messages, customers or settings.
GRANT USAGE ON SCHEMA public TO :"role";
GRANT INSERT (company_id, customer_id, customer_external_id, type, channel, subject, content, template_key, template_data,
              metadata, idempotency_key, next_attempt_at, expires_at, max_retries)
    ON communication_logs TO :"role";
GRANT SELECT (company_id, id) ON communication_logs TO :"role";
GRANT INSERT (company_id, message_id, file_name, content_type, content, url) ON communication_attachments TO :"role";
