-- Attempts a message spent on a provider that was down or throttling the account, which use up
-- none of its retries (Dispatch:OutageRetries bounds them). Counted on the row rather than derived
-- from attempt_count - retry_count, because a replay gives the message a fresh retry budget and
-- must give it a fresh outage budget too.
-- Adding a column with a constant default rewrites nothing; its check is added NOT VALID, since
-- validating would read the whole outbox under this lock (every existing row has the default, and
-- new and updated rows are checked). A migration waits at most 10 s for the lock, as 0009-0013 do.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_logs ADD COLUMN outage_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE communication_logs ADD CONSTRAINT communication_logs_outage_attempts_check CHECK (outage_attempts >= 0) NOT VALID;
