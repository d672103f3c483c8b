-- purge-company deletes a company's customers, and each one's reminders go by the foreign key's
-- cascade: a lookup by customer, which only partial indexes served (a scan of every practice's
-- reminders per customer). Built here holding the table's SHARE lock (reminder writes wait for the
-- build); a file of its own, so no other table's lock is held meanwhile. On a large installation
-- build it first, outside a transaction, and this file then finds it:
--   CREATE INDEX CONCURRENTLY ix_reminders_customer ON reminders (customer_id);
-- A CONCURRENTLY build that failed leaves an invalid index of that name: refused here.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_reminders_customer') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_reminders_customer exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_reminders_customer, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_reminders_customer ON reminders (customer_id);
