-- The attempt history's primary key becomes (message_id, attempt_no, id), replacing the key on id
-- alone and the index on (message_id, attempt_no): one B-tree instead of two on a table the worker
-- inserts into for every provider call. Nothing reads an attempt by its id; the message's detail
-- (GET /v1/messages/{id}) reads its attempts by message in attempt order, which the new key serves
-- as the index did. id stays in the key (and the column stays), so an attempt recorded twice under
-- the same number (a worker whose lease ran out while its provider call was in flight) is still
-- kept rather than failing its batch's outcome.
--
-- Measured with the worker's own statements (2026-12-06, 200,000 messages, one claimer,
-- ops/experiments/claim-designs design P, two interleaved runs each): the attempts INSERT of 500
-- rows 2.05-2.11 → 1.60-1.66 ms and 2,661 → 1,730 buffers; WAL per message 2,263 → 2,206 bytes.
--
-- On a large history, build the new key's index first without blocking writers; this migration
-- then only swaps constraints:
--   CREATE UNIQUE INDEX CONCURRENTLY communication_attempts_message_key ON communication_attempts (message_id, attempt_no, id);
SET LOCAL lock_timeout = '10s';
CREATE UNIQUE INDEX IF NOT EXISTS communication_attempts_message_key ON communication_attempts (message_id, attempt_no, id);
ALTER TABLE communication_attempts DROP CONSTRAINT communication_attempts_pkey;
ALTER TABLE communication_attempts ADD CONSTRAINT communication_attempts_pkey PRIMARY KEY USING INDEX communication_attempts_message_key;
DROP INDEX ix_communication_attempts_message;
