-- Dispatch support.

-- How many times a provider was really called for this message (retry_count is the retry budget,
-- which a replay resets; attempt numbers keep counting).
ALTER TABLE communication_logs ADD COLUMN attempt_count integer NOT NULL DEFAULT 0;

-- When each customer last received a reminder of each type, for the frequency policy. Kept out of
-- the hot outbox table so that it needs no extra index there.
CREATE TABLE reminder_frequency_state (
    customer_id   uuid        NOT NULL,
    type          text        NOT NULL CHECK (type IN ('COMPLIANCE_REMINDER', 'PAYMENT_REMINDER')),
    last_sent_at  timestamptz NOT NULL,
    PRIMARY KEY (customer_id, type)
);
