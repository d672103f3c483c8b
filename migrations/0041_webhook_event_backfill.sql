-- Provider reports stored before they were minimised (5f1bd20) hold the recipient's address or
-- number, the subject and the mail headers; event keys stored before then name WhatsApp numbers
-- (marketing choices) and MessageBird SMS recipients whole. The workers' WebhookEventBackfill
-- minimises each report stored up to now, masks its error text, and hashes such keys with the
-- keyed hash new events carry, walking by id from this row (one worker at a time: it is locked
-- while a batch runs). For a day after this migration (walk_until) the walk also takes rows stored
-- since: an API process of a build before 5f1bd20, still running during the upgrade, stores reports
-- whole. Rows stored later were minimised when they arrived.
-- A new table and one row; webhook_events is only read (its largest id).
CREATE TABLE webhook_event_backfill (
    only_row     boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    upto_id      bigint      NOT NULL,
    done_id      bigint      NOT NULL DEFAULT 0,
    walk_until   timestamptz NOT NULL DEFAULT now() + interval '1 day',
    finished_at  timestamptz
);
INSERT INTO webhook_event_backfill (upto_id) SELECT coalesce(max(id), 0) FROM webhook_events;
