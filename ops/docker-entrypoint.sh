#!/bin/sh
# Container entry point: `api`, `worker` (migrates, then dispatches) or any worker verb.
set -e
case "${1:-api}" in
  api)    shift; exec dotnet /app/api/OutboxComms.Api.dll "$@" ;;
  worker) shift
          # The dispatch loop's heartbeat, for `healthcheck.sh worker`.
          export Health__HeartbeatFile="${Health__HeartbeatFile:-/tmp/outboxcomms-worker.alive}"
          rm -f "$Health__HeartbeatFile"   # a restarted container keeps /tmp: the last run's beat must not count
          # Migrates first unless told not to (an upgrade that wants the old API and workers
          # replaced before a migration runs: set it to false and run `migrate` yourself).
          if [ "${OUTBOXCOMMS_MIGRATE_AT_START:-true}" != "false" ]; then dotnet /app/worker/OutboxComms.Worker.dll migrate; fi
          exec dotnet /app/worker/OutboxComms.Worker.dll run "$@" ;;
  *)      exec dotnet /app/worker/OutboxComms.Worker.dll "$@" ;;
esac
