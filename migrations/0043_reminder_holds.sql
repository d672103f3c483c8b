-- The reminder a worker is sending to a customer, one per customer and reminder type, across all
-- worker processes: the frequency policy ("at most one reminder of a type per period") reads when
-- the last one went out, and two processes that each claimed one of two reminders due together
-- could both read "none yet" and both send. A batch holds the customer's reminder_frequency_state
-- row from before its policy check until its outcomes are committed (held_by is its lease token,
-- held_until its lease's end), reading the last reminder time as it takes it, and marks it free in
-- the commit that records its outcomes (held_until '-infinity'); a hold whose holder died runs out
-- at held_until. A customer never reminded gets a row at the first hold: last_sent_at becomes
-- nullable (null: no reminder of that type sent yet).
-- Brief lock on reminder_frequency_state (nullable columns, no default, no rewrite).
SET LOCAL lock_timeout = '10s';
ALTER TABLE reminder_frequency_state
    ALTER COLUMN last_sent_at DROP NOT NULL,
    ADD COLUMN held_by text,
    ADD COLUMN held_until timestamptz;
