-- An attachment names its message's company as well as its id. Attachments were matched by message
-- id alone, and ids are unique only as long as every producer leaves them to the sequence: a COPY
-- that lists ids (or an INSERT … OVERRIDING SYSTEM VALUE) can give a row another company's id, and
-- that row then went out with the other company's files (the worker's in-batch check only caught
-- two such rows in one batch). The API and the worker's BOTH split write company_id; a plain-SQL
-- producer should too (README). A row without one still matches by message id alone, as before.
-- The column is nullable without a default (no rewrite); the backfill names the company of every
-- attachment whose message id belongs to one company only, reading the outbox once.
SET LOCAL lock_timeout = '10s';
ALTER TABLE communication_attachments ADD COLUMN company_id uuid;
UPDATE communication_attachments a SET company_id = m.company_id
  FROM (SELECT id, min(company_id::text)::uuid AS company_id FROM communication_logs
         WHERE id IN (SELECT message_id FROM communication_attachments)
         GROUP BY id HAVING count(DISTINCT company_id) = 1) m
 WHERE m.id = a.message_id;
