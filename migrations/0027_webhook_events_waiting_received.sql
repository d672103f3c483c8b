-- Delivery events that matched no message (UNKNOWN_MESSAGE) by arrival: every worker's sweep looks
-- each minute for the last hour's that now match a recorded message (one the recording batch did
-- not apply). Such events are kept for the webhook retention (90 days by default), and providers
-- whose webhooks are account-wide (SendGrid, Mailgun, SES) report mail we never sent, so without
-- this index the sweep would read all of them, or every event of the hour, each minute.
--
-- A large webhook_events table: build the index first without blocking webhooks; this migration
-- then finds it:
--   CREATE INDEX CONCURRENTLY ix_webhook_events_waiting_received ON webhook_events (received_at)
--     WHERE outcome = 'UNKNOWN_MESSAGE';
-- A CONCURRENTLY build that failed leaves an invalid index of that name: refuse to take it.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_webhook_events_waiting_received') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_webhook_events_waiting_received exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_webhook_events_waiting_received, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_webhook_events_waiting_received ON webhook_events (received_at) WHERE outcome = 'UNKNOWN_MESSAGE';
