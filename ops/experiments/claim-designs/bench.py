#!/usr/bin/python3
"""Claim-design benchmark driver.

  bench.py drain   DESIGN NDRIVERS REP   # fill 200k due rows, drain with NDRIVERS processes
  bench.py latency DESIGN REP            # fill 1M rows (half deferred), 200 claims of 500 + outcome

DESIGN in A, B, C85, C60 (see designs.py). Results are appended to results.jsonl.
Autovacuum is disabled on the hot tables during a run; a VACUUM after the drain is measured
separately (its CPU and WAL are reported as the deferred cleanup cost)."""
import json, multiprocessing as mp, os, random, string, subprocess, sys, time
from datetime import datetime, timedelta, timezone
import psycopg2
import designs

DIR = "/tmp/leaseexp"
DSN = "host=/tmp/leaseexp port=55433 user=postgres dbname=leaseexp"
LEASE = timedelta(minutes=2)
BATCH = 500
TICK = os.sysconf("SC_CLK_TCK")
HOT_TABLES = ("communication_logs", "communication_leases", "communication_attempts")


def fill(n, deferred, ff):
    subprocess.run(["psql", "-h", DIR, "-p", "55433", "-U", "postgres", "-X", "-q", "-d", "leaseexp",
                    "-v", "ON_ERROR_STOP=1", "-v", f"n={n}", "-v", f"deferred={deferred}", "-v", f"ff={ff}",
                    "-f", f"{DIR}/fill.sql"], check=True, stdout=subprocess.DEVNULL)


def pg_cpu():
    """CPU seconds of the postmaster (incl. reaped children) + all live children."""
    pm = int(open(f"{DIR}/data/postmaster.pid").readline())

    def stat(pid):
        s = open(f"/proc/{pid}/stat").read()
        return s[s.rindex(")") + 2:].split()  # fields from 'state' (field 3) on

    f = stat(pm)
    total = sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                f = stat(p)
                if int(f[1]) == pm:
                    total += int(f[11]) + int(f[12])
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
    return total / TICK


def arr(vals):
    out = []
    for v in vals:
        if v is None:
            out.append("NULL")
        else:
            s = v.isoformat() if isinstance(v, datetime) else str(v)
            out.append('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"


def rand_id(k=22):
    return "".join(random.choices(string.ascii_letters + string.digits, k=k))


def outcome(cur, token, rows):
    now = datetime.now(timezone.utc)
    ids, status, channel, req, nxt, retry, att, reason, err, subj, cont, tused, prov, pmid, sent, failed, cost, cur_ = ([] for _ in range(18))
    a_company, a_no, a_latency = [], [], []
    for r in rows:
        (mid, company, customer, ext, typ, ch, rch, subject, content, tkey, tdata, rc, mr, ac, exp, created, due) = r
        ids.append(mid); status.append("SENT"); channel.append("EMAIL")
        req.append("PREFERRED" if ch == "PREFERRED" else None)
        nxt.append(now); retry.append(rc); att.append(ac + 1); reason.append(None); err.append(None)
        if tkey is not None:  # rendered template: stored back, like MessageDispatcher does
            subj.append(f"Invoice INV-2026-{mid}")
            cont.append(f"Dear client, your invoice INV-2026-{mid} for INR 12,345.00 dated 2026-04-01 is ready. Amount due 12,345.00 by 2026-04-30.")
            tused.append("invoice-ready@1/EMAIL/en")
        else:
            subj.append(None); cont.append(None); tused.append(None)
        prov.append("SENDGRID"); pmid.append(rand_id()); sent.append(now); failed.append(None)
        cost.append("0.012000"); cur_.append("INR")
        a_company.append(company); a_no.append(ac + 1); a_latency.append(random.randint(80, 400))
    n = len(rows)
    complete_args = [now, token] + [arr(x) for x in (ids, status, channel, req, nxt, retry, att, reason, err, subj, cont,
                                                     tused, prov, pmid, sent, failed, cost, cur_, a_company)]
    attempt_args = [arr(ids), arr(a_company), arr(a_no), arr([now] * n), arr(["EMAIL"] * n), arr(["SENDGRID"] * n),
                    arr(["SENT"] * n), arr([None] * n), arr(a_latency)]
    # one simple-query message = one implicit transaction (like the Npgsql batch)
    cur.execute("EXECUTE complete(" + ",".join(["%s"] * 21) + "); EXECUTE attempts(" + ",".join(["%s"] * 9) + ")",
                complete_args + attempt_args)


def claim(cur, token):
    now = datetime.now(timezone.utc)
    cur.execute("EXECUTE claim(%s, %s, %s, %s)", (token, now + LEASE, now, BATCH))
    return cur.fetchall()


def driver(design, token, mode, ready, go, results, close):
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET application_name = %s", (f"drv-{token}",))
    designs.prepare(cur, design)
    ready.wait(); go.wait()
    claim_times, sizes = [], []
    rechecked_out = [0]
    t0 = time.perf_counter()
    max_claims = 200 if mode == "latency" else 10 ** 9
    while len(claim_times) < max_claims:
        t = time.perf_counter()
        rows = claim(cur, token)
        if rows and "recheck" in designs.DESIGNS[design]:
            # design L: keep the rows still PENDING in a fresh snapshot (timed as part of the claim)
            cur.execute("EXECUTE recheck(%s, %s)", (arr([r[1] for r in rows]), arr([r[0] for r in rows])))
            pending = {r[0] for r in cur.fetchall()}
            taken = len(rows)
            rows = [r for r in rows if r[0] in pending]
            rechecked_out[0] += taken - len(rows)
        claim_times.append(time.perf_counter() - t)
        sizes.append(len(rows))
        if not rows:
            if "recheck" in designs.DESIGNS[design]:
                cur.execute("SELECT pg_advisory_unlock_all()")
                if taken_any(cur, token):
                    continue
            break
        outcome(cur, token, rows)
        if "recheck" in designs.DESIGNS[design]:
            cur.execute("SELECT pg_advisory_unlock_all()")
    wall = time.perf_counter() - t0
    results.put(dict(token=token, wall=wall, claimed=sum(sizes), claims=len(sizes), rechecked_out=rechecked_out[0],
                     short=sum(1 for s in sizes[:-1] if s < BATCH), claim_times=claim_times))
    close.wait()
    conn.close()


def taken_any(cur, token):
    """Design L: an empty claim after the recheck dropped every row may still leave due rows (all
    taken by others' stale-snapshot claims): go on while any PENDING row is due."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM communication_logs WHERE status = 'PENDING' AND next_attempt_at <= now())")
    return cur.fetchone()[0]


def q(cur, sql, *a):
    cur.execute(sql, a)
    return cur.fetchall()


def table_stats(cur):
    cur.execute("SELECT pg_stat_clear_snapshot()")
    return {r[0]: dict(ins=r[1], upd=r[2], hot=r[3], dele=r[4]) for r in
            q(cur, "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = ANY(%s)",
              list(HOT_TABLES))}


def run(mode, design, ndrivers, rep):
    ff = designs.DESIGNS[design]["ff"]
    t_fill = time.time()
    if mode == "drain":
        fill(200_000, 0, ff)
    else:
        fill(1_000_000, 1, ff)
    t_fill = time.time() - t_fill
    mon = psycopg2.connect(DSN); mon.autocommit = True
    cur = mon.cursor()
    for t in HOT_TABLES:
        cur.execute(f"ALTER TABLE {t} SET (autovacuum_enabled = false)")
    time.sleep(1.0)
    st0 = table_stats(cur)
    ready, go, close = mp.Barrier(ndrivers + 1), mp.Barrier(ndrivers + 1), mp.Event()
    results = mp.Queue()
    procs = [mp.Process(target=driver, args=(design, f"w{i}-{rand_id(8)}", mode, ready, go, results, close))
             for i in range(ndrivers)]
    for p in procs:
        p.start()
    ready.wait()
    cur.execute("SELECT pg_stat_statements_reset()")
    lsn0 = q(cur, "SELECT pg_current_wal_lsn()")[0][0]
    cpu0 = pg_cpu()
    go.wait()
    res = [results.get() for _ in procs]
    cpu1 = pg_cpu()
    lsn1 = q(cur, "SELECT pg_current_wal_lsn()")[0][0]
    wal = q(cur, "SELECT pg_wal_lsn_diff(%s, %s)", lsn1, lsn0)[0][0]
    pgss = q(cur, """SELECT split_part(query, '(', 1), calls, mean_exec_time, stddev_exec_time,
                            (shared_blks_hit + shared_blks_read)::float / calls, shared_blks_dirtied::float / calls,
                            wal_bytes::float / calls, wal_fpi::float / calls, rows::float / calls
                       FROM pg_stat_statements WHERE query LIKE 'PREPARE %%' ORDER BY 1""")
    close.set()
    for p in procs:
        p.join()
    # deferred cleanup: what autovacuum would have to do for this run's garbage
    cpu2 = pg_cpu()
    lsn2 = q(cur, "SELECT pg_current_wal_lsn()")[0][0]
    tv = time.perf_counter()
    for t in HOT_TABLES:
        cur.execute(f"VACUUM {t}")
    tv = time.perf_counter() - tv
    cpu3 = pg_cpu()
    wal_vac = q(cur, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", lsn2)[0][0]
    time.sleep(1.2)
    st1 = table_stats(cur)
    check = q(cur, """SELECT (SELECT count(*) FROM communication_attempts), (SELECT count(DISTINCT message_id) FROM communication_attempts),
                             (SELECT count(*) FROM communication_logs WHERE status = 'PENDING' AND next_attempt_at <= now()),
                             (SELECT count(*) FROM communication_leases),
                             pg_relation_size('communication_logs'), pg_total_relation_size('communication_logs')""")[0]
    for t in HOT_TABLES:
        cur.execute(f"ALTER TABLE {t} RESET (autovacuum_enabled)")
    mon.close()
    claimed = sum(r["claimed"] for r in res)
    wall = max(r["wall"] for r in res)
    d = {k: {f: st1[k][f] - st0[k][f] for f in st1[k]} for k in st1}
    out = dict(mode=mode, design=design, ndrivers=ndrivers, rep=rep, ts=time.strftime("%H:%M:%S"), fill_s=round(t_fill, 1),
               claimed=claimed, wall=wall, msg_per_s=claimed / wall, cpu_s=cpu1 - cpu0, cpu_us_per_msg=(cpu1 - cpu0) / claimed * 1e6,
               wal_per_msg=float(wal) / claimed, vac_cpu_us_per_msg=(cpu3 - cpu2) / claimed * 1e6,
               vac_wal_per_msg=float(wal_vac) / claimed, vac_s=tv,
               claims=sum(r["claims"] for r in res), short_batches=sum(r["short"] for r in res),
               claim_times=sorted(t for r in res for t in r["claim_times"]),
               logs_upd=d["communication_logs"]["upd"], logs_hot=d["communication_logs"]["hot"],
               leases=d["communication_leases"],
               attempts=check[0], distinct_attempted=check[1], pending_due_left=check[2], lease_rows_left=check[3],
               heap_bytes=check[4], total_bytes=check[5],
               pgss=[dict(stmt=r[0].replace("PREPARE ", ""), calls=r[1], mean_ms=r[2], sd_ms=r[3], blks=r[4], dirtied=r[5],
                          wal_b=r[6], fpi=r[7], rows=r[8]) for r in pgss])
    with open(f"{DIR}/results.jsonl", "a") as fh:
        fh.write(json.dumps(out) + "\n")
    ct = out["claim_times"]
    pct = lambda p: ct[min(len(ct) - 1, int(p * len(ct)))] * 1000
    print(f"{mode} {design} x{ndrivers} rep{rep}: {claimed} msgs {wall:.1f}s {out['msg_per_s']:.0f}/s "
          f"cpu {out['cpu_us_per_msg']:.0f}us/msg wal {out['wal_per_msg']:.0f}B/msg vac {out['vac_cpu_us_per_msg']:.0f}us "
          f"{out['vac_wal_per_msg']:.0f}B  hot {out['logs_hot']}/{out['logs_upd']} short {out['short_batches']} "
          f"claim p50/p95/p99 {pct(.5):.1f}/{pct(.95):.1f}/{pct(.99):.1f} ms  dup={check[0]-check[1]} left={check[2]} "
          f"rechecked_out={sum(r['rechecked_out'] for r in res)}", flush=True)
    for r in out["pgss"]:
        print(f"   {r['stmt']:9s} calls {r['calls']:4d} mean {r['mean_ms']:7.2f} ms  blks {r['blks']:8.0f} dirtied {r['dirtied']:6.0f} "
              f"wal {r['wal_b']:8.0f} fpi {r['fpi']:5.0f} rows {r['rows']:.0f}", flush=True)


if __name__ == "__main__":
    mode, design = sys.argv[1], sys.argv[2]
    if mode == "drain":
        run(mode, design, int(sys.argv[3]), int(sys.argv[4]))
    else:
        run(mode, design, 1, int(sys.argv[3]))
