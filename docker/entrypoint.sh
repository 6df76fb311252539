#!/bin/sh
# Container entrypoint. `serve` (the default command): migrate the schema first when
# IPT_FHIR_MIGRATE_ON_START is true, then exec the server, which becomes PID 1 and so receives
# SIGTERM directly (graceful shutdown). Any other ipt-fhir command runs as given (`db upgrade`,
# `db current`, `openapi`, ...); anything else is executed as is (e.g. `sh`).
set -eu

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$(printf '%s' "${IPT_FHIR_MIGRATE_ON_START:-false}" | tr '[:upper:]' '[:lower:]')" in
  true | 1 | yes | on) migrate_on_start=true ;;
  false | 0 | no | off | "") migrate_on_start=false ;;
  *) echo "entrypoint: IPT_FHIR_MIGRATE_ON_START must be true or false" >&2; exit 64 ;;
esac

case "$command" in
  serve)
    if [ "$migrate_on_start" = true ]; then
      echo "entrypoint: migrating the database schema (IPT_FHIR_MIGRATE_ON_START=true)" >&2
      ipt-fhir db upgrade
    fi
    exec ipt-fhir serve "$@"
    ;;
  db | openapi | demo-data | --help)
    exec ipt-fhir "$command" "$@"
    ;;
  *)
    exec "$command" "$@"
    ;;
esac
