-- What each provider send cost (the provider's price, else the company's rate card for its channel),
-- beside the message's total in communication_logs.cost: a replayed message was sent more than
-- once, perhaps on other channels, and the attempt history shows what each send cost. Attempts
-- recorded before this migration have none. Nullable columns without a default rewrite nothing;
-- the lock this takes is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_attempts ADD COLUMN cost numeric(12, 6), ADD COLUMN cost_currency text;
