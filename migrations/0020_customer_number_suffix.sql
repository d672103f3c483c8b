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
SET LOCAL lock_timeout = '10s';
CREATE INDEX IF NOT EXISTS ix_customers_number_suffix ON customers
    (company_id, right(regexp_replace(coalesce(whatsapp_number, phone), '\D', '', 'g'), 8))
    WHERE deleted_at IS NULL;
