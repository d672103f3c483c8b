-- The reminder a worker is sending to a customer, one per customer and reminder type, across all
-- worker processes: the frequency policy ("at most one reminder of a type per period") reads when
-- the last one went out, and two processes that each claimed one of two reminders due together
-- could both read "none yet" and both send. A batch holds its entry from before its policy check
-- until its outcomes are committed (held_by is its lease token); an entry whose holder died runs
-- out at held_until, the holder's lease end. Deleted with the customer.
-- A new table: no lock on another.
CREATE TABLE reminder_reservations (
    customer_id  uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    type         text        NOT NULL CHECK (type IN ('COMPLIANCE_REMINDER', 'PAYMENT_REMINDER')),
    held_by      text        NOT NULL,
    held_until   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, type)
);
