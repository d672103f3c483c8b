-- Retention of message content (PUT /v1/settings/retention): a practice may have the worker clear
-- the personal content of its messages some days after they settled — subject, body, template
-- data, error texts, the producer's metadata and the files — keeping each row (its status, times,
-- provider, cost and idempotency key: a producer's ON CONFLICT retry still finds it). Off unless a
-- company sets it: some practices must keep their correspondence for years.
-- Both new columns are nullable without a default, so nothing is rewritten and the lock is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_logs ADD COLUMN content_redacted_at timestamptz;
-- A message whose content is gone can never be sent again (a replay refuses it; so does this, for
-- an UPDATE by hand). NOT VALID: every existing row has no redaction, so nothing needs reading.
ALTER TABLE communication_logs ADD CONSTRAINT communication_logs_redacted_not_pending
    CHECK (content_redacted_at IS NULL OR status <> 'PENDING') NOT VALID;
ALTER TABLE company_settings ADD COLUMN content_retention_days integer
    CONSTRAINT company_settings_content_retention_days_check CHECK (content_retention_days BETWEEN 7 AND 36500);

-- How far the retention job has walked each company's messages, by id (the outbox's key is
-- (company_id, id); there is no index on updated_at, and one would slow every status change).
-- A walk passes only the rows its snapshot sees: one committed later with a lower id (a long
-- business transaction) would be left behind, so each company is walked again from the start
-- once a week (walk_started_at).
CREATE TABLE content_retention_cursors (
    company_id       uuid        PRIMARY KEY REFERENCES companies (id) ON DELETE CASCADE,
    last_id          bigint      NOT NULL DEFAULT 0,
    walk_started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Messages the walk passed that were old enough but not yet settled (scheduled far ahead, or
-- changed lately): looked at again each run until they can be cleared.
CREATE TABLE content_retention_deferred (
    company_id  uuid   NOT NULL,
    message_id  bigint NOT NULL,
    PRIMARY KEY (company_id, message_id)
);
