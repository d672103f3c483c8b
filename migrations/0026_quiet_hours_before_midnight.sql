-- PostgreSQL's time type takes '24:00' (a natural "until midnight" for a business app writing
-- preferences by SQL); .NET's TimeOnly cannot hold it. One such preference made the worker's read of
-- its customer throw (the whole batch held until its lease ran out, then claimed and thrown again)
-- and the API's read of the customer a 500. Existing values are rewritten, keeping their meaning: a
-- start of '24:00' is '00:00'; an end of '24:00' is the last microsecond of the day, not '00:00',
-- which would turn '00:00'–'24:00' ("never contact") into an empty window. A new one is refused
-- with this constraint's name.
SET LOCAL lock_timeout = '10s';
UPDATE communication_preferences SET quiet_hours_start = '00:00' WHERE quiet_hours_start = '24:00';
UPDATE communication_preferences SET quiet_hours_end = '23:59:59.999999' WHERE quiet_hours_end = '24:00';
ALTER TABLE communication_preferences
    ADD CONSTRAINT quiet_hours_before_midnight CHECK (quiet_hours_start < '24:00' AND quiet_hours_end < '24:00');
