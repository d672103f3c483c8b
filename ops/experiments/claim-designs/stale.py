#!/usr/bin/python3
"""Crashed-worker scenario: a 'dead' worker claims K batches and never completes them (its leases
stay valid for 2 min); then one live worker does 100 claim+outcome rounds. Measures the live
claim's client time and buffers per claim.   stale.py DESIGN K"""
import sys, time, json, psycopg2
from bench import fill, claim, outcome, DSN, designs, q

design, k = sys.argv[1], int(sys.argv[2])
fill(200_000, 0, designs.DESIGNS[design]["ff"])
dead = psycopg2.connect(DSN); dead.autocommit = True
dc = dead.cursor(); designs.prepare(dc, design)
for _ in range(k):
    claim(dc, "dead-worker")
dead.close()  # the crash: rows stay leased
live = psycopg2.connect(DSN); live.autocommit = True
c = live.cursor(); designs.prepare(c, design)
for _ in range(3):  # warm up (first scans mark dead index entries)
    outcome(c, "live", claim(c, "live"))
c.execute("SELECT pg_stat_statements_reset()")
times = []
for _ in range(100):
    t = time.perf_counter(); rows = claim(c, "live"); times.append(time.perf_counter() - t)
    outcome(c, "live", rows)
blks = q(c, "SELECT (shared_blks_hit + shared_blks_read)::float / calls, mean_exec_time FROM pg_stat_statements WHERE query LIKE 'PREPARE claim%%'")[0]
times.sort()
res = dict(design=design, k=k, in_flight=k * 500, p50=times[50] * 1000, p95=times[95] * 1000, blks=blks[0], mean_ms=blks[1])
print(json.dumps(res), flush=True)
open("/tmp/leaseexp/stale.jsonl", "a").write(json.dumps(res) + "\n")
live.close()
