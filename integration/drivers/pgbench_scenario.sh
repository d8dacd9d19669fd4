#!/usr/bin/env bash
# pgbench_scenario.sh is the driver matrix scenario for pgbench -M prepared (see doc.go): both tenants at once,
# 4 clients each for 3 s (1 each in session pooling, see below), run a custom script of parameterized SELECT
# and UPDATE on employees as named prepared statements; a transaction that sees a row of another tenant fails
# on purpose (division by zero). It asserts that each run reports a tps line and 0 failed transactions.
#
# It reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B, TP_MODE and PGBENCH (the pgbench to run, default
# pgbench on PATH), exits 1 with a message on the first failed check and prints "ok pgbench" at the end.
set -euo pipefail

pgbench=${PGBENCH:-pgbench}
: "${TP_DSN_A:?TP_DSN_A is not set}" "${TP_DSN_B:?TP_DSN_B is not set}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL pgbench: $*" >&2
	exit 1
}

# :tenant is a parameter of the prepared statements (-D tenant=...); the ids are the fixture's first rows,
# and an UPDATE of a missing id changes nothing.
cat >"$tmp/tenant.sql" <<'EOF'
\set id random(1, 5)
BEGIN;
SELECT name, email FROM employees WHERE id = :id AND tenant = :tenant;
UPDATE employees SET email = email WHERE id = :id;
SELECT 1 / (count(*) = 0)::int AS only_own_rows FROM employees WHERE tenant <> :tenant;
END;
EOF

# In session pooling a client holds a server connection for its whole life, and pgbench closes a thread's
# connections only when all of the thread's clients are done: clients beyond the pool's size would wait for
# a server connection until the proxy's wait_timeout. One client per tenant fits any pool of two.
clients=4 threads=2
if [[ ${TP_MODE:-} == session ]]; then
	clients=1 threads=1
fi

echo "pgbench $("$pgbench" --version | awk '{print $3}'), mode ${TP_MODE:-?}, $clients clients per tenant"
run() { # run NAME TENANT DSN
	"$pgbench" -n -M prepared -f "$tmp/tenant.sql" -c "$clients" -j "$threads" -T 3 -D tenant="$2" "$3" >"$tmp/$1.log" 2>&1
}
run a "${TP_TENANT_A:-acme}" "$TP_DSN_A" &
pid_a=$!
run b "${TP_TENANT_B:-globex}" "$TP_DSN_B" &
pid_b=$!
rc_a=0 rc_b=0
wait "$pid_a" || rc_a=$?
wait "$pid_b" || rc_b=$?

for t in a b; do
	rc=rc_$t
	log=$(cat "$tmp/$t.log")
	[[ ${!rc} -eq 0 ]] || fail "tenant $t: pgbench exited ${!rc}:
$log"
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$log")
	[[ -n $tps ]] || fail "tenant $t: no tps line:
$log"
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$log")
	[[ $failed == 0 ]] || fail "tenant $t: failed transactions: '${failed:-no line}':
$log"
	done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$log")
	[[ ${done_tx:-0} -gt 0 ]] || fail "tenant $t: no transaction processed:
$log"
	echo "tenant $t: $done_tx transactions, tps $tps, 0 failed"
done
echo "ok pgbench"
