-- The insert trigger's condition moves from its function into a WHEN clause, which PostgreSQL
-- evaluates without calling PL/pgSQL: a session that defers notifications (the API, see 0008)
-- no longer pays a function call per INSERT statement. Producers inserting by plain SQL still
-- notify on every statement, exactly as before.
DROP TRIGGER communication_logs_notify ON communication_logs;
CREATE TRIGGER communication_logs_notify AFTER INSERT ON communication_logs
    FOR EACH STATEMENT
    WHEN (coalesce(current_setting('outboxcomms.defer_notify', true), '') <> 'on')
    EXECUTE FUNCTION outbox_notify();
