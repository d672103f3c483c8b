-- The reminder a worker is sending to a customer, one per customer and reminder type, across all
-- worker processes: the frequency policy ("at most one reminder of a type per period") reads when
-- the last one went out, and two processes that each claimed one of two reminders due together
-- could both read "none yet" and both send. A batch holds its entry from before its policy check
-- until its outcomes are committed (held_by is its lease token), then marks it free (held_until
-- '-infinity'; the row stays for the customer's next reminder); an entry whose holder died runs
-- out at held_until, the holder's lease end. No foreign key (a check per reservation, and a lock on
-- customers while this migration runs): purge-company deletes a customer's rows, as it does their
-- reminder_frequency_state.
-- A new table: no lock on another.
CREATE TABLE reminder_reservations (
    customer_id  uuid        NOT NULL,
    type         text        NOT NULL CHECK (type IN ('COMPLIANCE_REMINDER', 'PAYMENT_REMINDER')),
    held_by      text        NOT NULL,
    held_until   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, type)
) WITH (fillfactor = 70);   -- room on each page for the in-place (HOT) updates that take and free an entry
