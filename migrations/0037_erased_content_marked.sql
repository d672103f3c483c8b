-- Messages of customers erased before migration 0035 had their content cleared but no
-- content_redacted_at, so they showed none and a replay would have sent an empty body. Marked now,
-- at the erasure's time. Row locks only (no table lock held while it reads); a pending row (a SQL
-- producer's, written after the erasure) is left for the worker, which finds no customer to send to.
UPDATE communication_logs m
   SET content_redacted_at = c.erased_at
  FROM customers c
 WHERE c.erased_at IS NOT NULL AND m.company_id = c.company_id AND m.customer_id = c.id
   AND m.content_redacted_at IS NULL AND m.status <> 'PENDING'
   -- Only rows the erasure left cleared (a SQL producer's row for the erased id written later, or
   -- committed after it, was not: left to content retention).
   AND m.subject IS NULL AND coalesce(m.content, '') = '' AND m.template_data = '{}'::jsonb AND m.error_message IS NULL;
