#!/usr/bin/env bash
# referee.sh [compare.sh flags]: builds tenantproxy and runs the referee's side-by-side benchmark
# (../shared/referee/compare.sh: pgbench -S through direct PostgreSQL, pgbouncer and tenantproxy in one run),
# saving the output under bench/results/ with the date, the commit and the flags.
set -euo pipefail
cd "$(dirname "$0")/.."
referee=${REFEREE:-../shared/referee/compare.sh}
command -v pgbouncer >/dev/null || { echo "bench/referee.sh: pgbouncer missing: run scripts/install-deps.sh" >&2; exit 2; }
go build -o bin/tenantproxy ./cmd/tenantproxy
mkdir -p bench/results
out=bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$(git rev-parse --short HEAD).txt
{
	echo "# $(date -u) commit $(git rev-parse --short HEAD) nproc=$(nproc)"
	echo "# TP_BIN=bin/tenantproxy bash $referee $*"
	TP_BIN=$PWD/bin/tenantproxy bash "$referee" "$@"
} 2>&1 | tee "$out"
echo "saved $out"
