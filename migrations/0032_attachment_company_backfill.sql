-- Names the company of every attachment written before 0031 whose message id belongs to one
-- company only (an id two companies share is left without one: it matches by id alone, as before).
-- A file of its own, so that 0031's ACCESS EXCLUSIVE lock is not held meanwhile: this UPDATE takes
-- row locks only, so the workers' reads, the API and producers' inserts go on while it reads the
-- outbox once (a full scan: the only index on id alone is BRIN) and writes a new version of each
-- attachment row (its stored bytes are not copied: TOASTed values keep their place).
UPDATE communication_attachments a SET company_id = m.company_id
  FROM (SELECT id, min(company_id::text)::uuid AS company_id FROM communication_logs
         WHERE id IN (SELECT message_id FROM communication_attachments WHERE company_id IS NULL)
         GROUP BY id HAVING count(DISTINCT company_id) = 1) m
 WHERE m.id = a.message_id AND a.company_id IS NULL;
