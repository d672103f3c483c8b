-- Idempotency-Key for the messages API (POST /v1/messages and /v1/messages/bulk).
--
-- A side table rather than communication_logs.idempotency_key: one request can create several
-- rows (BOTH makes an EMAIL and a WHATSAPP row, a bulk request up to 10,000), and a retry must get
-- the original answer back (same ids, 202 again), so the key maps to a hash of the request and the
-- response we gave. Claimed with INSERT ... ON CONFLICT DO NOTHING in the transaction that inserts
-- the messages, so concurrent duplicates wait on the primary key and never create a second copy.
-- communication_logs.idempotency_key stays the key of producers that insert by plain SQL.
CREATE TABLE idempotency_keys (
    company_id    uuid        NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,   -- SHA-256 of the endpoint and the request as parsed
    response      jsonb       NOT NULL,   -- the 202 body first returned
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, key)
);
-- For retention (old keys can be deleted in bulk once clients no longer retry them).
CREATE INDEX ix_idempotency_keys_created ON idempotency_keys (created_at);
