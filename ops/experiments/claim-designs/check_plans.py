#!/usr/bin/python3
"""Prints the plan each design's claim gets after 6 executions (generic-plan switch), rolled back."""
import sys, psycopg2, designs
from datetime import datetime, timedelta, timezone
conn = psycopg2.connect("host=/tmp/leaseexp port=55433 user=postgres dbname=leaseexp")
cur = conn.cursor()
import os
if os.environ.get("GENERIC"): cur.execute("SET plan_cache_mode = force_generic_plan")
for d in sys.argv[1:]:
    designs.prepare(cur, d)
    now = datetime.now(timezone.utc)
    for i in range(7):
        cur.execute("EXECUTE claim(%s,%s,%s,500)", ("tok", now + timedelta(minutes=2), now)); cur.fetchall()
    cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE claim(%s,%s,%s,500)", ("tok", now + timedelta(minutes=2), now))
    print(f"== {d}"); print("\n".join(r[0] for r in cur.fetchall()))
    cur.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name='claim'"); print(cur.fetchall())
    conn.rollback()
    cur.execute("DEALLOCATE ALL"); conn.commit()
