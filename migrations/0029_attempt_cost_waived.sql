-- A send the provider said it would not charge for (a WhatsApp status: billable false, a free
-- pricing type, or a failure) has its cost set to 0; what it had been is kept here, so that a
-- later report that the message was delivered after all (and charged) can put it back.
-- A nullable column without a default rewrites nothing; the lock this takes is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_attempts ADD COLUMN waived_cost numeric(12, 6);
