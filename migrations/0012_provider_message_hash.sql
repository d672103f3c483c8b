-- The delivery webhooks' lookup by the provider's message id becomes a hash index instead of a
-- B-tree: only ever searched for equality (`= $2`, and `IN ($2, '<' || $2 || '>')` for Mailgun's
-- two spellings, served by a bitmap scan of the hash index), and written for every SENT row by the
-- worker's outcome. A provider id is random, so each B-tree insert descends to a random leaf and
-- dirties it; a hash insert reads the metapage and one bucket page, and stores a 4-byte hash code
-- instead of the ~20-60 byte id.
--
-- Measured with the worker's own statements (2026-12-06, 200,000 messages, one claimer,
-- ops/experiments/claim-designs design P, two interleaved runs each): an outcome of 500
-- 11.1-11.9 ms and 10,112 buffers with the B-tree, 9.1-9.7 ms and 9,795 buffers with the hash
-- index; PostgreSQL's CPU per message 51-55 against 45-48 µs.
--
-- On a large outbox, build the new index first without blocking writers; this migration then only
-- drops the old one:
--   CREATE INDEX CONCURRENTLY ix_communication_logs_provider_message_id ON communication_logs
--     USING hash (provider_message_id) WHERE provider_message_id IS NOT NULL;
SET LOCAL lock_timeout = '10s';
CREATE INDEX IF NOT EXISTS ix_communication_logs_provider_message_id ON communication_logs
    USING hash (provider_message_id) WHERE provider_message_id IS NOT NULL;
DROP INDEX ix_communication_logs_provider_message;
