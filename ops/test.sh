#!/usr/bin/env bash
# Runs every test. Installs what the tests need when it is missing (PostgreSQL server binaries,
# Debian's python3-aiosmtpd for the SMTP provider tests),
# restores NuGet packages, builds, runs, and prints one closing line: "N passed, N failed, N skipped".
# With OUTBOXCOMMS_BENCH_SMOKE=1 it also runs the benchmark harness at smoke size after the tests.
#
# The tests start their own throwaway PostgreSQL (see tests/OutboxComms.Tests/Infrastructure/PostgresServer.cs);
# set OUTBOXCOMMS_TEST_DATABASE to use a server of yours instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. ops/lib.sh

ensure_dotnet
ensure_postgres
ensure_smtp_test_server

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
results="$root/TestResults"
rm -rf "$results"

echo "==> restore and build"
if ! dotnet build OutboxComms.sln -c Release -nologo -v quiet; then
  # The compiler's errors are above; this line is the last a reader (or CI's log tail) sees.
  echo "build failed: no tests ran (0 passed, 0 failed, 0 skipped)"
  exit 1
fi

echo "==> tests"
status=0
dotnet test OutboxComms.sln -c Release --no-build -nologo \
  --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal" \
  --results-directory "$results" "$@" || status=$?

# The benchmark harness at smoke size, to keep it working (it never judges speed). Off by
# default: CI time is limited. OUTBOXCOMMS_BENCH_SMOKE=1 ops/test.sh turns it on.
if [ "${OUTBOXCOMMS_BENCH_SMOKE:-0}" = "1" ]; then
  echo "==> benchmark smoke run (ops/bench.sh --smoke)"
  bash ops/bench.sh --smoke || status=$?
fi

# One closing line that any reader understands, summed over every test assembly's TRX file.
python3 - "$results" <<'PY' || true
import glob, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in glob.glob(sys.argv[1] + "/**/*.trx", recursive=True):
    counters = ET.parse(path).getroot().find(".//{*}Counters")
    if counters is None:
        continue
    passed += int(counters.get("passed", 0))
    failed += int(counters.get("failed", 0)) + int(counters.get("error", 0)) + int(counters.get("timeout", 0))
    skipped += int(counters.get("notExecuted", 0))
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
