-- Mailgun signs only its timestamp and a random token, not the event: a signature block seen once
-- (a log line, a proxy) could carry a forged event until the timestamp leaves the five-minute
-- tolerance. A token (the nonce here) is accepted once per company, with the body it first came with: the same body
-- again (a redelivery) is still accepted and deduplicated as an event; another body is refused.
-- Rows older than the tolerance serve no purpose; the worker's hourly retention deletes them.
CREATE TABLE webhook_nonces (
    company_id   uuid        NOT NULL,
    provider     text        NOT NULL,
    nonce        text        NOT NULL,
    body_sha256  bytea       NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, provider, nonce)
);
CREATE INDEX ix_webhook_nonces_seen_at ON webhook_nonces (seen_at);
