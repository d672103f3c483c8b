-- The outbox's primary key becomes (company_id, id), replacing both the key on id alone and the
-- company index on (company_id, id): one B-tree fewer on the table every status change rewrites.
--
-- Every change of a message's status is a non-HOT update (the claim moves next_attempt_at, the
-- outcome changes status; both are in the due index), so each new row version adds an entry to
-- every B-tree on the table. Measured with the worker's own statements (2026-12-02, 200,000
-- messages, one claimer, ops/experiments/claim-designs): PostgreSQL's CPU per message 86-88 µs
-- with the three B-trees, 70-78 µs with the primary key on (company_id, id) instead; a claim of
-- 500 14.3-14.7 → 11.0-12.2 ms, an outcome of 500 18.9-19.3 → 14.7-16.1 ms.
--
-- Every query of ours names the company with the id (the API is tenant-scoped; the worker's
-- outcome probes by company and id), and listings by company walk this key as they walked the
-- company index. For an id alone (an ops person in psql, `replay --id` without `--company`) a BRIN
-- index on id finds the few block ranges to read; it costs next to nothing to maintain (measured
-- within noise). The key on id alone also served the foreign key from communication_attachments,
-- which goes: attachments are written in the message's own transaction (by the API, by the
-- worker's BOTH split, or by a producer right after its INSERT … RETURNING id), and an attachment
-- that names no message is never read. Ids must therefore stay unique by the identity sequence
-- alone (attachments, the worker's batch and the BOTH split's attachment copy match by id): the
-- column becomes GENERATED ALWAYS, so an INSERT that gives an id of its own is refused unless it
-- says OVERRIDING SYSTEM VALUE (as the API does with ids it took from the sequence).
--
-- On a large outbox, build the new key's index first without blocking writers, and this migration
-- then only swaps constraints:
--   CREATE UNIQUE INDEX CONCURRENTLY communication_logs_company_id_id_key ON communication_logs (company_id, id);
SET LOCAL lock_timeout = '10s';
CREATE UNIQUE INDEX IF NOT EXISTS communication_logs_company_id_id_key ON communication_logs (company_id, id);
ALTER TABLE communication_attachments DROP CONSTRAINT communication_attachments_message_id_fkey;
ALTER TABLE communication_logs DROP CONSTRAINT communication_logs_pkey;
ALTER TABLE communication_logs ADD CONSTRAINT communication_logs_pkey PRIMARY KEY USING INDEX communication_logs_company_id_id_key;
DROP INDEX ix_communication_logs_company;
CREATE INDEX ix_communication_logs_id ON communication_logs USING brin (id);
ALTER TABLE communication_logs ALTER COLUMN id SET GENERATED ALWAYS;
