-- The insert trigger's condition moves from its function into a WHEN clause, which PostgreSQL
-- evaluates without calling PL/pgSQL: a session that defers notifications (the API, see 0008)
-- no longer pays a function call per INSERT statement. Producers inserting by plain SQL still
-- notify on every statement, exactly as before.
-- Replacing a trigger takes a brief exclusive lock on the table; rather than queue producers
-- behind a long-running query that holds it up, give up after 10 s (migrate can be run again).
SET LOCAL lock_timeout = '10s';
DROP TRIGGER communication_logs_notify ON communication_logs;
CREATE TRIGGER communication_logs_notify AFTER INSERT ON communication_logs
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('outboxcomms.defer_notify', true), '') <> 'on')
    EXECUTE FUNCTION outbox_notify();
