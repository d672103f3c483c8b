#!/bin/bash
# Container healthcheck (compose.yaml runs it in each service; the image has no curl):
#   healthcheck.sh api     — the API's /health/ready answers 200 (PostgreSQL reachable, schema current)
#   healthcheck.sh worker  — the dispatch loop rewrote its heartbeat file (Health__HeartbeatFile)
#                            within HEALTHCHECK_MAX_AGE seconds (default 180): it is claiming,
#                            with or without work (not while its clock check holds its claims:
#                            its clock is off PostgreSQL's and most workers' by more than
#                            Dispatch__MaxClockSkew, or far from one whose leases may be live). A batch takes at most its lease (Dispatch__LeaseDuration,
#                            2 minutes) and an idle loop claims every Dispatch__PollInterval: keep the
#                            limit above both.
set -u
case "${1:-api}" in
  api)
    exec 3<>"/dev/tcp/127.0.0.1/${HEALTHCHECK_PORT:-8080}" || exit 1
    printf 'GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    IFS= read -r -t 5 status <&3 || exit 1
    [[ "$status" == HTTP/*" 200 "* ]]
    ;;
  worker)
    file="${Health__HeartbeatFile:-/tmp/outboxcomms-worker.alive}"
    [[ -n "$(find "$file" -newermt "-${HEALTHCHECK_MAX_AGE:-180} seconds" 2>/dev/null)" ]]
    ;;
  *)
    echo "usage: healthcheck.sh api|worker" >&2
    exit 2
    ;;
esac
