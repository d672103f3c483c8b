-- Attachment retention (Attachments:RetentionDays) clears a file's bytes and link and stamps
-- purged_at, rather than deleting its row: a message replayed after its files went then fails
-- with that reason instead of going out without them. The CHECK that a row has bytes or a link
-- now also takes a purged row. NOT VALID: the new check is weaker than the old one, which every
-- row already passes, so nothing needs to be read while the brief lock is held.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_attachments ADD COLUMN purged_at timestamptz;
DO $$
DECLARE
    name text;
BEGIN
    SELECT conname INTO name FROM pg_constraint
     WHERE conrelid = 'communication_attachments'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%url IS NOT NULL%';
    IF name IS NOT NULL THEN
        EXECUTE format('ALTER TABLE communication_attachments DROP CONSTRAINT %I', name);
    END IF;
END $$;
ALTER TABLE communication_attachments ADD CONSTRAINT communication_attachments_content_check
    CHECK (content IS NOT NULL OR url IS NOT NULL OR purged_at IS NOT NULL) NOT VALID;
