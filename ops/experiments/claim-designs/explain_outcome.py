#!/usr/bin/python3
"""auto_explain one claim + outcome of a design (plans go to server.log)."""
import sys, psycopg2, designs
from bench import DSN, claim, outcome
conn = psycopg2.connect(DSN); conn.autocommit = True; cur = conn.cursor()
designs.prepare(cur, sys.argv[1])
cur.execute("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on")
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 1):
    outcome(cur, "tok", claim(cur, "tok"))
