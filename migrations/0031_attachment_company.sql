-- An attachment names its message's company as well as its id. Attachments were matched by message
-- id alone, and ids are unique only as long as every producer leaves them to the sequence: a COPY
-- that lists ids (or an INSERT … OVERRIDING SYSTEM VALUE) can give a row another company's id, and
-- that row then went out with the other company's files (the worker's in-batch check only caught
-- two such rows in one batch). The API and the worker's BOTH split write company_id; a plain-SQL
-- producer should too (README). A row without one still matches by message id alone, as before.
-- A nullable column without a default rewrites nothing: the ACCESS EXCLUSIVE lock this takes is
-- brief, and released at this file's commit, before 0032 fills the column in.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_attachments ADD COLUMN company_id uuid;
