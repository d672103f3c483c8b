-- A delivery event can arrive before the worker has recorded the provider's id on its message: a
-- batch's outcomes are written together, seconds after the sends (up to the lease with a slow
-- provider), and WhatsApp's "failed" for an undeliverable number or Twilio's "undelivered" often
-- comes within a second or two. Such an event is stored as UNKNOWN_MESSAGE; the worker now applies
-- it when it records the id. These columns keep what applying it needs beyond its status: the
-- provider's error text, and the consent signal it carries (OPTED_OUT, or the general-updates stop:
-- COMPLAINT, UNSUBSCRIBE, WHATSAPP_MARKETING). The partial index finds such events by provider id;
-- it holds only events that matched no message.
--
-- A large webhook_events table: build the index first without blocking webhooks; this migration
-- then finds it:
--   CREATE INDEX CONCURRENTLY ix_webhook_events_waiting ON webhook_events (provider_message_id)
--     WHERE outcome = 'UNKNOWN_MESSAGE';
-- A CONCURRENTLY build that failed leaves an invalid index of that name: refuse to take it.
SET LOCAL lock_timeout = '10s';
ALTER TABLE webhook_events ADD COLUMN error text, ADD COLUMN signal text;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_webhook_events_waiting') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_webhook_events_waiting exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_webhook_events_waiting, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_webhook_events_waiting ON webhook_events (provider_message_id) WHERE outcome = 'UNKNOWN_MESSAGE';
