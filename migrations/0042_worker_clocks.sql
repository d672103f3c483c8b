-- The workers' clocks as each last measured them against PostgreSQL's (ClockSkewGuard), so that
-- a worker compares its clock with the other workers' and not only with the database's: when the
-- database host's clock is the one that is off, workers that agree with each other go on claiming.
-- A worker adds a row at each measurement that counts (every 30 s) and deletes its own rows once
-- they serve no purpose; rows of workers gone for a day are deleted by any worker.
--   skew_ms       the worker's clock minus PostgreSQL's clock_timestamp(), in milliseconds
--   round_trip_ms the measurement's round trip (it may be wrong by half of it)
--   measured_at   PostgreSQL's clock_timestamp() when written: rows of the last 75 s are the live workers
--   claims_until  set when the measurement let the worker claim: until then leases it took on that
--                 clock may still be live, so no worker far from it may claim
-- A new, small table: nothing else is locked. A least-privilege worker role needs SELECT, INSERT
-- and DELETE on it.
CREATE TABLE IF NOT EXISTS worker_clocks (
    worker_id      text             NOT NULL,
    measured_at    timestamptz      NOT NULL,
    skew_ms        double precision NOT NULL,
    round_trip_ms  double precision NOT NULL,
    claims_until   timestamptz,
    PRIMARY KEY (worker_id, measured_at)
);
