-- Attachment retention (Attachments:RetentionDays) looks each hour for files not yet cleared,
-- oldest first. Through the primary key it walked every cleared file too, and those only ever
-- accumulate; this index holds the files not yet cleared alone, and each leaves it once cleared.
-- Built here holding the table's SHARE lock (new files wait for the build). On a large
-- installation build it first, outside a transaction, and this file then finds it:
--   CREATE INDEX CONCURRENTLY ix_communication_attachments_unpurged ON communication_attachments (id) WHERE purged_at IS NULL;
-- A CONCURRENTLY build that failed leaves an invalid index of that name, which the planner never
-- uses: refuse to take it for the real one.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_communication_attachments_unpurged') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_communication_attachments_unpurged exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_communication_attachments_unpurged, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_communication_attachments_unpurged ON communication_attachments (id) WHERE purged_at IS NULL;
