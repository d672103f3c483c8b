-- WhatsApp's user_preferences webhook (the user stopped or resumed marketing messages) names the
-- user by WhatsApp id only: the number's digits with country code. The customers it concerns are
-- found by their WhatsApp number, else phone, in any of the spellings the API or a plain SQL
-- producer may have stored (E.164, spaces and dashes, 00 for +, an Indian number without +91),
-- which no plain column lookup can match; without this index every such event read all of the
-- company's customers through two regular expressions per customer.
--
-- The index holds the last 8 digits of the number, which every one of those spellings of the same
-- number shares (any number of 8 or more digits: every mobile number WhatsApp serves), so the
-- lookup reads only the customers whose number ends the same way and applies the exact match to
-- those. Deleted customers are never matched, so they are left out.
--
-- A large customers table: build it first without blocking writers; this migration then finds it:
--   CREATE INDEX CONCURRENTLY ix_customers_number_suffix ON customers
--     (company_id, right(regexp_replace(coalesce(whatsapp_number, phone), '\D', '', 'g'), 8))
--     WHERE deleted_at IS NULL;
-- A CONCURRENTLY build that failed leaves an invalid index of that name, which the planner never
-- uses: refuse to take it for the real one.
SET LOCAL lock_timeout = '10s';
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass('ix_customers_number_suffix') AND NOT i.indisvalid) THEN
        RAISE EXCEPTION 'index ix_customers_number_suffix exists but is invalid (a CREATE INDEX CONCURRENTLY that failed): DROP INDEX ix_customers_number_suffix, build it again or leave it to this migration, then migrate';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS ix_customers_number_suffix ON customers
    (company_id, right(regexp_replace(coalesce(whatsapp_number, phone), '\D', '', 'g'), 8))
    WHERE deleted_at IS NULL;
