-- Offboarding a practice (POST /v1/companies/{id}/deactivate, then the worker's purge-company):
-- when it was deactivated. Its keys are revoked, its channels and schedules switched off, and its
-- pending messages and reminder steps cancelled at that moment; a deactivated company gets no new
-- key, and only a deactivated company can be purged. A nullable column: the lock is brief.
SET LOCAL lock_timeout = '10s';
ALTER TABLE companies ADD COLUMN deactivated_at timestamptz;
