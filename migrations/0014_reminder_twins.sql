-- A reminder sent on BOTH channels is one reminder: its second channel's row (the API's pair, or
-- the worker's split sibling, which now keeps its original's created_at) must not be held back by
-- the frequency policy because its twin's send was counted. The state remembers the created_at of
-- the message whose send it counts; a BOTH row created at that same instant is that message's twin.
ALTER TABLE reminder_frequency_state ADD COLUMN last_created_at timestamptz;
