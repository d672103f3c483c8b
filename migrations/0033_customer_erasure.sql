-- When a customer was erased at their request (POST /v1/customers/{id}/erase): their contact
-- details and the personal content of their messages were removed, consent evidence kept. An
-- erased customer cannot be restored. A nullable column without a default: the lock is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE customers ADD COLUMN erased_at timestamptz;
