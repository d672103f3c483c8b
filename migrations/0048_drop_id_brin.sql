-- The BRIN index on communication_logs.id (migration 0011) goes. It served an id given without its
-- company only (`replay --id` without `--company`, purge-company's check of a file stored without
-- company_id, an ops person in psql), and cost every message four buffers: the claim and the
-- outcome each write a new, non-HOT version of the row, inserted into every index of the table,
-- a BRIN index included (its range map page and its summary page). Measured (2026-12-08, the
-- benchmark's warm no-op drain of 200,000 messages, pg_stat_statements): outcome 3.92M → 3.51M
-- buffers, claim 2.64M → 2.24M. Those lookups now name each company in turn, a probe of the
-- primary key (company_id, id) per company. In psql, give the company: WHERE company_id = … AND id = ….
-- A brief ACCESS EXCLUSIVE lock on the outbox, at most 10 s waited for.
SET LOCAL lock_timeout = '10s';
DROP INDEX IF EXISTS ix_communication_logs_id;
