-- Two things the workers' clock rows (0042, ClockSkewGuard) could not say:
--   host              which host's clock the worker runs on (the kernel's boot id, else the machine
--                     name): its clock is its host's, so the live workers of one host cast one vote
--                     between them, and a restarted process's previous row does not vote for it.
--                     Null on rows of a build before 0044: each such worker counts as a host of its own.
--   database_step_ms  set on the row of the measurement at which a worker saw PostgreSQL's clock step
--                     (by this much, forward positive) and carried its own earlier rows across the step;
--                     every later row of that worker is on the database's clock as it is after the step.
--                     While such a mark is recent, rows of workers without one may be on either side of it.
-- Nullable columns without a default on a small table: no rewrite; a brief lock, at most 10 s waited for.
SET LOCAL lock_timeout = '10s';
ALTER TABLE worker_clocks
    ADD COLUMN host text,
    ADD COLUMN database_step_ms double precision;
