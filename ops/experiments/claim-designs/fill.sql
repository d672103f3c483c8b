-- Adapted from /tmp/fill.sql. psql variables: n (rows), deferred (0 = all due, 1 = ~half deferred), ff (fillfactor).
TRUNCATE communication_logs, communication_attempts, communication_leases CASCADE;
ALTER TABLE communication_logs SET (fillfactor = :ff);
WITH c AS (SELECT row_number() over () - 1 AS n, company_id, id FROM customers)
INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content, template_key, template_data, next_attempt_at, created_at, status_reason)
SELECT c.company_id, c.id, 'INVOICE',
       CASE WHEN i % 10 < 4 THEN 'EMAIL' ELSE 'PREFERRED' END,
       CASE WHEN i % 10 < 4 THEN 'Invoice INV-2026-' || i END,
       CASE WHEN i % 10 < 4 THEN 'Dear client, your invoice INV-2026-' || i || ' for INR 12,345.00 is attached. Please pay by 30 April 2026.' END,
       CASE WHEN i % 10 >= 4 THEN 'invoice-ready' END,
       CASE WHEN i % 10 >= 4 THEN ('{"number":"INV-2026-' || i || '","date":"2026-04-01","amount":"12,345.00","due_date":"2026-04-30","lines":[{"service":"ROC annual filing (AOC-4, MGT-7)","amount":"6,000.00"},{"service":"Board meeting minutes","amount":"2,500.00"},{"service":"GST on services","amount":"1,530.00"}]}')::jsonb ELSE '{}'::jsonb END,
       CASE WHEN :deferred = 1 AND (i * 2654435761 & 65535) < 32768 THEN now() + make_interval(hours => 1 + (i % 8)::int, mins => (i % 60)::int) ELSE now() - interval '3600 s' + make_interval(secs => 3600.0 * i / :n) END,
       now() - interval '3600 s' + make_interval(secs => 3600.0 * i / :n),
       CASE WHEN :deferred = 1 AND (i * 2654435761 & 65535) < 32768 THEN 'quiet hours 21:00-09:00 (Asia/Kolkata); deferred until their end' END
  FROM generate_series(0, :n - 1) i JOIN c ON c.n = i % 200;
VACUUM ANALYZE communication_logs;
VACUUM ANALYZE communication_attempts;
VACUUM ANALYZE communication_leases;
CHECKPOINT;
SELECT count(*) AS rows, count(*) FILTER (WHERE next_attempt_at <= now()) AS due, pg_size_pretty(pg_relation_size('communication_logs')) AS heap, round(avg(pg_column_size(l.*))) AS avg_row FROM communication_logs l;
