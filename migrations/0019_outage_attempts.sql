-- Attempts a message spent on a provider that was down or throttling the account, which use up
-- none of its retries (Dispatch:OutageRetries bounds them). Counted on the row rather than derived
-- from attempt_count - retry_count, because a replay gives the message a fresh retry budget and
-- must give it a fresh outage budget too. Metadata-only: the default is a constant.
ALTER TABLE communication_logs ADD COLUMN outage_attempts integer NOT NULL DEFAULT 0 CHECK (outage_attempts >= 0);
