#!/usr/bin/env bash
# Runs OutboxComms: the API on http://127.0.0.1:5080 and one worker, until Ctrl-C.
#
# With no ConnectionStrings__Outbox set it runs on an embedded default: installs PostgreSQL with
# apt when missing, starts a private cluster under .data/ (git-ignored), and creates the database.
# It applies migrations, creates a development encryption key and admin key under .data/ unless
# OUTBOXCOMMS_ENCRYPTION_KEY / OUTBOXCOMMS_ADMIN_KEY are set, and stops everything it started on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. ops/lib.sh

api_url=${OUTBOXCOMMS_API_URL:-http://127.0.0.1:5080}
data="$root/.data"
mkdir -p "$data"
ensure_dotnet
command -v curl >/dev/null 2>&1 || ensure_apt_packages curl
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

pg_started=""
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo ""
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$pg_started" ]; then
    as_pg "$(postgres_bin_dir)/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null || true
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# --- database -------------------------------------------------------------------------------
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ -z "${ConnectionStrings__Outbox:-}" ]; then
  ensure_postgres
  bin=$(postgres_bin_dir)
  pg_port=${OUTBOXCOMMS_PG_PORT:-55432}
  pg_data="$data/postgres"
  pg_run="$data/postgres-run"
  mkdir -p "$pg_run"
  if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses root: the cluster belongs to the postgres user, who must reach .data/.
    chown postgres: "$pg_run"
    if ! runuser -u postgres -- test -x "$data"; then
      echo "error: the postgres user cannot reach $data; move the checkout or set ConnectionStrings__Outbox." >&2
      exit 1
    fi
  fi
  if [ ! -f "$pg_data/PG_VERSION" ]; then
    echo "==> creating a local PostgreSQL cluster in $pg_data"
    mkdir -p "$pg_data"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pg_data"
    as_pg "$bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
    echo "==> starting PostgreSQL on 127.0.0.1:$pg_port"
    as_pg "$bin/pg_ctl" -D "$pg_data" -l "$pg_run/server.log" -w -t 60 \
      -o "-p $pg_port -k \"$pg_run\" -c listen_addresses=127.0.0.1" start >/dev/null
    pg_started=1
  fi
  if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='outboxcomms'" | grep -q 1; then
    as_pg "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE outboxcomms" >/dev/null
  fi
  export ConnectionStrings__Outbox="Host=127.0.0.1;Port=$pg_port;Username=postgres;Database=outboxcomms"
fi

# --- keys -----------------------------------------------------------------------------------
new_secret() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
if [ -z "${OUTBOXCOMMS_ENCRYPTION_KEY:-}" ]; then
  [ -f "$data/encryption.key" ] || (umask 077; echo "dev1:$(new_secret)" > "$data/encryption.key")
  OUTBOXCOMMS_ENCRYPTION_KEY=$(cat "$data/encryption.key")
fi
if [ -z "${OUTBOXCOMMS_ADMIN_KEY:-}" ]; then
  [ -f "$data/admin.key" ] || (umask 077; echo "oc_admin_$(new_secret | tr '+/' '-_' | tr -d '=')" > "$data/admin.key")
  OUTBOXCOMMS_ADMIN_KEY=$(cat "$data/admin.key")
fi
export OUTBOXCOMMS_ENCRYPTION_KEY OUTBOXCOMMS_ADMIN_KEY

# --- build, migrate, run --------------------------------------------------------------------
echo "==> building"
# Quiet when it builds; the compiler's output when it does not.
if ! build_log=$(dotnet build OutboxComms.sln -c Release -nologo -v quiet 2>&1); then
  echo "$build_log" >&2
  echo "error: the build failed (above)" >&2
  exit 1
fi
api_dll="$root/src/OutboxComms.Api/bin/Release/net10.0/OutboxComms.Api.dll"
worker_dll="$root/src/OutboxComms.Worker/bin/Release/net10.0/OutboxComms.Worker.dll"

echo "==> applying migrations"
dotnet "$worker_dll" migrate

dotnet "$api_dll" --urls "$api_url" &
pids+=($!)
dotnet "$worker_dll" run &
pids+=($!)

process_name() { [ "$1" = "${pids[0]}" ] && echo "API" || echo "worker"; }
ready=""
dead=""
for _ in $(seq 1 120); do
  if curl -fsS "$api_url/health/ready" >/dev/null 2>&1; then ready=1; break; fi
  # A process that has already exited (a port in use, a bad setting) will not get ready.
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then dead=$(process_name "$pid"); dead_pid=$pid; break 2; fi
  done
  sleep 0.5
done
if [ -n "$dead" ]; then
  set +e
  wait "$dead_pid"
  status=$?
  set -e
  echo "error: the $dead exited while starting (status $status); its output above says why" >&2
  exit $(( status == 0 ? 1 : status ))
elif [ -z "$ready" ]; then
  echo "error: the API did not answer $api_url/health/ready within 60 s:" >&2
  curl -sS "$api_url/health/ready" >&2 2>&1 || true
  exit 1
fi
cat <<TXT

OutboxComms is running.
  API        $api_url
  OpenAPI    $api_url/openapi/v1.json
  Health     $api_url/health/ready
  Admin key  $OUTBOXCOMMS_ADMIN_KEY
Press Ctrl-C to stop.
TXT
# Until Ctrl-C (the trap stops everything), or until the API or the worker exits on its own: then
# say which, and exit with its status, not 0.
set +e
if (( BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1) )); then
  wait -n -p exited "${pids[@]}"
else
  wait -n "${pids[@]}"   # bash 5.0 has no -p: which one exited is found below
fi
status=$?
set -e
if [ -z "${exited:-}" ]; then
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || exited=$pid; done
fi
echo "error: the $(process_name "${exited:-}") (pid ${exited:-?}) exited with status $status; stopping the rest" >&2
exit $(( status == 0 ? 1 : status ))
