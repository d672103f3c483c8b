-- Offboarding a practice (POST /v1/companies/{id}/deactivate, then the worker's purge-company):
-- when it was deactivated. Its keys are revoked, its channels and schedules switched off, and its
-- pending messages and reminder steps cancelled at that moment; a deactivated company gets no new
-- key, and only a deactivated company can be purged. A nullable column: the lock is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE companies ADD COLUMN deactivated_at timestamptz;

-- The purge deletes a company's customers, and each one's reminders go by the foreign key's
-- cascade: a lookup by customer, which only partial indexes served (a scan of every practice's
-- reminders per customer). And a practice's consent records, read for its export in the order they
-- were recorded and deleted by the cascade from its company, had no index by company.
-- (On a large installation build them CONCURRENTLY first, outside a transaction:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_reminders_customer ON reminders (customer_id);
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_consent_records_company ON consent_records (company_id, recorded_at, id);
-- and this file then finds them; a failed CONCURRENTLY build's invalid index is refused.)
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['ix_reminders_customer', 'ix_consent_records_company'] LOOP
        IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass(name) AND NOT i.indisvalid) THEN
            RAISE EXCEPTION 'index % exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX %, build it again or leave it to this migration, then migrate', name, name;
        END IF;
    END LOOP;
END $$;
CREATE INDEX IF NOT EXISTS ix_reminders_customer ON reminders (customer_id);
CREATE INDEX IF NOT EXISTS ix_consent_records_company ON consent_records (company_id, recorded_at, id);
