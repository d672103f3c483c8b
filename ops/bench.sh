#!/usr/bin/env bash
# Benchmarks OutboxComms (see README, "Benchmarks"): enqueue by SQL and API, dispatch throughput
# with 1/2/4 worker processes, insert → SENT latency, and a 1M-row backlog. Prints a markdown table
# and writes it, with the machine description, to bench-results/latest.md (git-ignored).
#
#   ops/bench.sh                    full run (5-15 minutes on 2 cores, depending on the host)
#   ops/bench.sh --smoke            tiny sizes (about a minute); CI runs this, never judging speed
#   ops/bench.sh --rows 50000       smaller backlog (the backlog scenario uses 5 x rows)
#   ops/bench.sh --scenario dispatch --scenario latency    only these (enqueue, api, dispatch, latency, backlog)
#   ops/bench.sh --scenario dispatch --workers 1,2 --providers noop    dispatch with 1 and 2 processes, no-op provider only
#
# Starts its own throwaway PostgreSQL cluster in a temp directory on a free port (as the postgres
# user when run as root) with durable settings: fsync, full_page_writes and synchronous_commit on.
# OUTBOXCOMMS_BENCH_SYNCHRONOUS_COMMIT=off measures the non-durable variant (the report says so).
# Autovacuum runs are logged and kept in bench-results/autovacuum.log; the whole server log in
# bench-results/server.log.
# OUTBOXCOMMS_BENCH_DATABASE=<admin connection string> uses a server of yours instead (needs CREATEDB;
# the database outbox_bench is dropped and recreated). Dispatch__* variables reach the workers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. ops/lib.sh

ensure_dotnet
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_tmp=""
pg_bin=""
cleanup() {
  if [ -n "$pg_tmp" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_tmp/data" -m fast -w stop >/dev/null 2>&1 || true
    # Every autovacuum and autoanalyze of the run, with times, beside the report.
    mkdir -p "$root/bench-results"
    grep -E "automatic (vacuum|analyze)" "$pg_tmp/server.log" > "$root/bench-results/autovacuum.log" 2>/dev/null || true
    cp "$pg_tmp/server.log" "$root/bench-results/server.log" 2>/dev/null || true
    rm -rf "$pg_tmp"
  fi
}
trap cleanup EXIT INT TERM

settings=""
if [ -z "${OUTBOXCOMMS_BENCH_DATABASE:-}" ]; then
  ensure_postgres
  ensure_apt_packages python3   # picks the cluster's free port
  pg_bin=$(postgres_bin_dir)
  pg_tmp=$(mktemp -d /tmp/outboxcomms-bench-XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres: "$pg_tmp"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sync_commit=${OUTBOXCOMMS_BENCH_SYNCHRONOUS_COMMIT:-on}
  # Durable (fsync, full_page_writes, synchronous_commit on). Sized for a benchmark: 1 GB of shared
  # buffers, and WAL room so that no checkpoint is forced in the middle of a measurement.
  server_options=(
    -c listen_addresses=127.0.0.1 -c max_connections=300
    -c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=30min
    -c fsync=on -c full_page_writes=on -c synchronous_commit="$sync_commit"
    -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top -c track_io_timing=on -c track_wal_io_timing=on -c log_autovacuum_min_duration=0
  )
  # Experiments: more server settings, e.g. OUTBOXCOMMS_BENCH_SERVER_OPTIONS="-c commit_delay=200" (named in the report).
  extra_options=${OUTBOXCOMMS_BENCH_SERVER_OPTIONS:-}
  [ -n "$extra_options" ] && server_options+=($extra_options)
  echo "==> starting a throwaway PostgreSQL ($pg_bin) on 127.0.0.1:$port in $pg_tmp"
  as_pg "$pg_bin/initdb" -D "$pg_tmp/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$pg_tmp/data" -l "$pg_tmp/server.log" -w -t 60 \
    -o "-p $port -k $pg_tmp ${server_options[*]}" start >/dev/null
  fs=$(df -T "$pg_tmp" | awk 'NR==2 {print $2}')
  settings="${extra_options:+$extra_options, }fsync=on, full_page_writes=on, synchronous_commit=$sync_commit$([ "$sync_commit" = on ] || echo ' (NOT DURABLE: a crash may lose the last commits)'), shared_buffers=1GB, max_wal_size=8GB, checkpoint_timeout=30min, max_connections=300, pg_stat_statements; data directory on $fs"
  export OUTBOXCOMMS_BENCH_DATABASE="Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres;Timeout=30;Command Timeout=0"
else
  settings="a server given by OUTBOXCOMMS_BENCH_DATABASE (its own settings)"
fi

echo "==> building (Release)"
dotnet build tests/OutboxComms.Benchmarks/OutboxComms.Benchmarks.csproj -c Release -nologo -v quiet
dotnet build src/OutboxComms.Api/OutboxComms.Api.csproj -c Release -nologo -v quiet

echo "==> running"
dotnet tests/OutboxComms.Benchmarks/bin/Release/net10.0/OutboxComms.Benchmarks.dll \
  --api-dll "$root/src/OutboxComms.Api/bin/Release/net10.0/OutboxComms.Api.dll" \
  --settings "$settings" --out "$root/bench-results/latest.md" "$@"
