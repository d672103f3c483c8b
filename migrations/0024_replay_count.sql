-- How many times the message was replayed. Providers that deduplicate by our idempotency key
-- (Resend keeps one for 24 hours and answers a repeat with the first send's answer, sending
-- nothing) must see the same key on every retry of one send (a send that timed out may have been
-- taken) but a new one when an operator replays the message. The replay's own statement counts it.
-- A constant default rewrites nothing; the lock this takes is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_logs ADD COLUMN replay_count integer NOT NULL DEFAULT 0;
