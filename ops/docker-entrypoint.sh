#!/bin/sh
# Container entry point: `api`, `worker` (migrates, then dispatches) or any worker verb.
set -e
case "${1:-api}" in
  api)    shift; exec dotnet /app/api/OutboxComms.Api.dll "$@" ;;
  worker) shift; dotnet /app/worker/OutboxComms.Worker.dll migrate; exec dotnet /app/worker/OutboxComms.Worker.dll run "$@" ;;
  *)      exec dotnet /app/worker/OutboxComms.Worker.dll "$@" ;;
esac
