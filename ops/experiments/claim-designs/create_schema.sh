#!/bin/bash
# Creates database leaseexp: migrations in order, pg_stat_statements, lease table, minimal seed.
set -e
P="psql -h /tmp/leaseexp -p 55433 -U postgres -X -q -v ON_ERROR_STOP=1"
$P -d postgres -c "DROP DATABASE IF EXISTS leaseexp" -c "CREATE DATABASE leaseexp"
for m in 0001 0002 0003 0005 0006 0007 0008 0009 0010 0011 0012 0013 0014; do
  f=$(ls /work/main/migrations/${m}_*.sql)
  echo "applying $f"
  $P -d leaseexp -1 -f "$f"
done
$P -d leaseexp <<'SQL'
CREATE EXTENSION pg_stat_statements;
-- design B: narrow lease table
CREATE TABLE communication_leases (
    message_id   bigint      PRIMARY KEY,
    locked_by    text        NOT NULL,
    locked_until timestamptz NOT NULL
);
INSERT INTO companies (name) SELECT 'Company ' || g FROM generate_series(1, 10) g;
INSERT INTO customers (company_id, external_id, name, email, phone)
SELECT c.id, 'CLIENT-' || g, 'Customer ' || g, 'c' || g || '@example.com', '+9198000' || lpad(g::text, 5, '0')
  FROM generate_series(1, 200) g
  JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM companies) c ON c.n = g % 10;
INSERT INTO communication_preferences (customer_id) SELECT id FROM customers;
SQL
echo done
