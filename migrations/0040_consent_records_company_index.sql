-- A practice's consent records, read in the order they were recorded for its export
-- (GET /v1/consents/export, a page at a time) and deleted by the cascade from its company
-- (purge-company), had no index by company. Built here holding the table's SHARE lock (consent
-- writes wait for the build). On a large installation build it first, outside a transaction, and
-- this file then finds it:
--   CREATE INDEX CONCURRENTLY ix_consent_records_company ON consent_records (company_id, recorded_at, id);
-- A CONCURRENTLY build that failed leaves an invalid index of that name: refused here.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_consent_records_company') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_consent_records_company exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_consent_records_company, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_consent_records_company ON consent_records (company_id, recorded_at, id);
