-- A reminder on BOTH channels is one reminder: its second channel's row must not be held back by
-- the frequency policy because its twin's send was counted. 0014 matched twins by created_at only,
-- and every row of one transaction shares it: a business app that wrote two different compliance
-- reminders for one customer in one transaction (or one bulk request) had both go out on WhatsApp
-- in one period. The rows of a pair now carry the pair's id in split_from (the worker's split, and
-- since this migration the API's pairs too), and the state remembers the pair id of the message
-- whose send it counts (its own id for a message that is no pair). Rows sent before this migration
-- have none: for them created_at alone still decides, as before.
-- A nullable column without a default: no rewrite, a brief lock.
SET LOCAL lock_timeout = '10s';
ALTER TABLE reminder_frequency_state ADD COLUMN last_pair_id bigint;
