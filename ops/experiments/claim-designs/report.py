#!/usr/bin/python3
"""Summarises results.jsonl (and stale.jsonl): mean and min-max over repetitions."""
import json, collections, os

rows = [json.loads(l) for l in open("/tmp/leaseexp/results.jsonl")]
g = collections.defaultdict(list)
for r in rows:
    g[(r["mode"], r["design"], r["ndrivers"])].append(r)
order = {"A": 0, "B": 1, "C85": 2, "C60": 3}


def mm(vals, fmt="{:.0f}"):
    m = sum(vals) / len(vals)
    return (fmt.format(m) + " (" + fmt.format(min(vals)) + "-" + fmt.format(max(vals)) + ")") if len(vals) > 1 else fmt.format(m)


def pct(ct, p):
    return ct[min(len(ct) - 1, int(p * len(ct)))] * 1000


print("DRAIN 200k due rows: mean (min-max) over reps")
print(f"{'design':6s} {'drv':3s} {'n':2s} {'msg/s':>20s} {'pg CPU us/msg':>16s} {'WAL B/msg':>10s} {'vac us/msg':>10s} {'vac WAL B':>9s} {'HOT %':>6s} {'short':>5s}  per statement: mean ms / buffers per call")
for key in sorted((k for k in g if k[0] == "drain"), key=lambda k: (k[2], order[k[1]])):
    rs = g[key]
    stm = collections.defaultdict(lambda: [[], []])
    for r in rs:
        for s in r["pgss"]:
            stm[s["stmt"]][0].append(s["mean_ms"]); stm[s["stmt"]][1].append(s["blks"])
    st = "  ".join(f"{n} {mm(v[0], '{:.1f}')} / {sum(v[1]) / len(v[1]):.0f}" for n, v in sorted(stm.items(), key=lambda x: ["claim", "complete", "attempts"].index(x[0])))
    hot = sum(r["logs_hot"] for r in rs) / max(1, sum(r["logs_upd"] for r in rs)) * 100
    print(f"{key[1]:6s} {key[2]:3d} {len(rs):2d} {mm([r['msg_per_s'] for r in rs]):>20s} {mm([r['cpu_us_per_msg'] for r in rs]):>16s} "
          f"{sum(r['wal_per_msg'] for r in rs) / len(rs):10.0f} {mm([r['vac_cpu_us_per_msg'] for r in rs], '{:.1f}'):>10s} "
          f"{sum(r['vac_wal_per_msg'] for r in rs) / len(rs):9.0f} {hot:6.1f} {sum(r['short_batches'] for r in rs):5d}  {st}")
    bad = [r for r in rs if r["attempts"] != r["distinct_attempted"] or r["pending_due_left"]]
    if bad:
        print("   !! duplicates or leftovers:", [(r["attempts"] - r["distinct_attempted"], r["pending_due_left"]) for r in bad])

print("\nLATENCY 1M rows half deferred, 200 sequential claims of 500 (+ outcome): claim ms p50/p95/p99 per rep; pgss claim mean ms, buffers/claim")
for key in sorted((k for k in g if k[0] == "latency"), key=lambda k: order[k[1]]):
    parts = []
    for r in g[key]:
        ct = r["claim_times"]
        c = [s for s in r["pgss"] if s["stmt"] == "claim"][0]
        parts.append(f"{pct(ct, .5):.1f}/{pct(ct, .95):.1f}/{pct(ct, .99):.1f} (pgss {c['mean_ms']:.1f} ms, {c['blks']:.0f} blks)")
    print(f"{key[1]:6s} " + "   ".join(parts))

if os.path.exists("/tmp/leaseexp/stale.jsonl"):
    print("\nCRASHED WORKER: K batches leased by a dead worker, live worker's claim (100 claims)")
    for l in open("/tmp/leaseexp/stale.jsonl"):
        r = json.loads(l)
        print(f"{r['design']:6s} in-flight {r['in_flight']:6d}: p50 {r['p50']:.1f} ms p95 {r['p95']:.1f} ms  pgss mean {r['mean_ms']:.1f} ms  {r['blks']:.0f} blks/claim")
