-- NOTIFY takes a database-wide lock at commit that is held until the commit record is flushed,
-- so transactions that notify cannot share a WAL flush (group commit): with 32 concurrent
-- single-row inserts that caps enqueue at a few thousand per second. A writer that wakes the
-- workers itself after committing (the API, which coalesces its notifications) sets
-- `SET LOCAL outboxcomms.defer_notify = 'on'` in its transaction and this trigger stays quiet.
-- Producers inserting by plain SQL change nothing: they still notify on every statement.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('outboxcomms.defer_notify', true), '') <> 'on' THEN
        PERFORM pg_notify('outbox_pending', '');
    END IF;
    RETURN NULL;
END;
$$;
