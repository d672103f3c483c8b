-- Who replayed which message, when, and what it was before: a replay puts a message back to
-- PENDING and clears its error, and the next outcome overwrites its status reason, so without
-- this an operator could not tell later who sent 5,000 bounced messages again, or why a message
-- that failed before any provider call (no address, a template error, no consent) had failed.
-- One row per message per replay, written by the replay's own statement.
CREATE TABLE message_replays (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id       uuid NOT NULL,
    message_id       bigint NOT NULL,
    replayed_at      timestamptz NOT NULL,
    replayed_by      text NOT NULL,
    previous_status  text NOT NULL,
    previous_error   text
);
CREATE INDEX ix_message_replays_message ON message_replays (company_id, message_id);
