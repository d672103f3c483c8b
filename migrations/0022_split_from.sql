-- A BOTH message becomes one row per channel (the worker adds a sibling for WhatsApp): both rows
-- now carry the id of the row that was split. A replay needs to know: a PREFERRED message that was
-- never split is sent again to the customer's channel as it is now (the practice fixed the
-- preference, then replayed), but the rows of one that was split keep their channels, or each
-- would follow the new preference and the customer would get it twice. Rows created before this
-- migration are not marked either way, so a replay keeps their channels, as before.
-- A nullable column without a default rewrites nothing and needs no index (it is read only on
-- the rows a replay updates); the lock it takes is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_logs ADD COLUMN split_from bigint;
