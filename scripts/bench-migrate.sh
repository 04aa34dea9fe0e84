#!/usr/bin/env bash
# Migration benchmark: teamvirt vs raw QMP (scripts/bench-migrate-raw.py) on
# the same test guest, then 8 teaming pairs. Prints a report (ratios, no
# thresholds). Needs QEMU; builds the test guest if needed.
#   scripts/bench-migrate.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p teamvirt-runtime --bench migrate -- "${1:-3}"
