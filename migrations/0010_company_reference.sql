-- The outbox row's company is no longer checked by a foreign key on every inserted row.
--
-- A foreign key is checked row by row: for every row inserted, PostgreSQL runs a query that finds
-- the company and locks it (FOR KEY SHARE). That was a quarter to a third of PostgreSQL's work per
-- row of a multi-row insert (the bulk API, and business apps inserting many rows per statement):
-- 4 clients inserting 1,000 rows per statement, 142-166 against 185-230 statements/s without it;
-- the bulk API, PostgreSQL's CPU per row 14-18 against 11 µs. A statement-level check over a
-- transition table was measured too and saved little (it copies every inserted row).
--
-- A row naming a company that does not exist is now treated as a row naming a customer that does
-- not exist has always been (no foreign key there either, see 0001): the producer's business
-- transaction commits, and the worker marks the row FAILED with the reason ("company … does not
-- exist"). Rows inserted through the API always name the caller's own company.
--
-- The other half of the foreign key is kept: a company that still has messages cannot be deleted
-- (nor its id changed), so no message loses its company after the fact. (A message inserted while
-- its company is being deleted, in two concurrent transactions, can still end up without one; the
-- worker fails it with the reason above.)
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_logs DROP CONSTRAINT communication_logs_company_id_fkey;

CREATE FUNCTION companies_keep_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM communication_logs WHERE company_id = OLD.id) THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('company %s still has messages in communication_logs', OLD.id),
            TABLE = 'companies',
            CONSTRAINT = 'companies_keep_messages';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
CREATE TRIGGER companies_keep_messages BEFORE DELETE ON companies
    FOR EACH ROW EXECUTE FUNCTION companies_keep_messages();
CREATE TRIGGER companies_keep_messages_id BEFORE UPDATE OF id ON companies
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION companies_keep_messages();
