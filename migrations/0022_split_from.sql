-- A BOTH message becomes one row per channel: the sibling the worker adds for WhatsApp now names
-- the row it was split from. A replay needs to know: a PREFERRED message that was never split is
-- sent again to the customer's channel as it is now (the practice fixed the preference, then
-- replayed), but the two rows of one that was split keep their channels, or both would follow the
-- new preference and the customer would get it twice.
-- A nullable column without a default rewrites nothing; the index holds siblings only.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_logs ADD COLUMN split_from bigint;
CREATE INDEX ix_communication_logs_split_from ON communication_logs (company_id, split_from) WHERE split_from IS NOT NULL;
