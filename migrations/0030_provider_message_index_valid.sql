-- Migration 0012 took a pre-built ix_communication_logs_provider_message_id (its header's CREATE
-- INDEX CONCURRENTLY recipe) without checking that the build had finished: one that failed half-way
-- leaves an invalid index, which PostgreSQL keeps up to date on every write but never reads, and
-- 0012 then dropped the B-tree it replaced, so every delivery webhook's lookup by provider id would
-- read the whole outbox. (0020, 0023 and 0027 refuse such an index themselves.) Nothing changes
-- when the index is valid; when it is not, this refuses, saying how to rebuild it without blocking.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_communication_logs_provider_message_id') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_communication_logs_provider_message_id exists but is invalid (a CREATE INDEX CONCURRENTLY that failed before migration 0012): REINDEX INDEX CONCURRENTLY ix_communication_logs_provider_message_id, then migrate';
    END IF;
END $$;
