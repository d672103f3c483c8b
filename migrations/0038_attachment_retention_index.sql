-- Attachment retention (Attachments:RetentionDays) looks each hour for files not yet cleared,
-- oldest first. Through the primary key it walked every cleared file too, and those only ever
-- accumulate; this index holds the files not yet cleared alone, and each is left out of it once
-- cleared. (On a large installation build it CONCURRENTLY first, outside a transaction:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_communication_attachments_unpurged ON communication_attachments (id) WHERE purged_at IS NULL;
-- and this file then finds it; a failed CONCURRENTLY build's invalid index is refused.)
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_communication_attachments_unpurged') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_communication_attachments_unpurged exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_communication_attachments_unpurged, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_communication_attachments_unpurged ON communication_attachments (id) WHERE purged_at IS NULL;
