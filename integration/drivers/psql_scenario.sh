#!/usr/bin/env bash
# psql_scenario.sh is the driver matrix scenario for psql (see doc.go): psql variables and \gset, explicit
# transactions of tenant A interleaved with tenant B's (a second psql started from A's session between A's
# transactions), an error inside a transaction with ON_ERROR_STOP off then ROLLBACK, \copy in and out, and a
# cancel the way psql sends one: SIGINT to a psql waiting for pg_sleep(10). psql 15 has no protocol-level
# prepared statements (\bind came with 16); its queries are simple-protocol Query messages.
#
# It reads TP_DSN_A, TP_DSN_B, TP_TENANT_A, TP_TENANT_B, TP_MODE and PSQL (the psql to run, default psql on
# PATH), exits 1 with a message on the first failed check and prints "ok psql" at the end.
set -euo pipefail

psql=${PSQL:-psql}
: "${TP_DSN_A:?TP_DSN_A is not set}" "${TP_DSN_B:?TP_DSN_B is not set}"
tenant_a=${TP_TENANT_A:-acme}
tenant_b=${TP_TENANT_B:-globex}
mark="psql-$$-$(date +%s%N)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "FAIL psql: $*" >&2
	exit 1
}

# check emits psql lines that run QUERY (which must yield one boolean column named ok) and, unless it is
# true, print "FAIL psql: MESSAGE" and quit; MESSAGE may use psql variables (:name).
check() {
	printf '%s \\gset\n\\if :ok\n\\else\n\\echo FAIL psql: %s\n\\q\n\\endif\n' "$1" "$2"
}

# own_tenant emits the checks that the session sees rows of the tenant in variable :tenant only.
own_tenant() {
	check "SELECT string_agg(DISTINCT tenant, ',') = :'tenant' AS ok FROM employees" "tenant :tenant sees rows of other tenants"
	check "SELECT count(*) = 0 AS ok FROM employees WHERE tenant <> :'tenant'" "tenant :tenant counts rows of other tenants"
}

# create_read_update emits an insert of an employee named :name, read back, updated and read again; it
# leaves the id in :id.
create_read_update() {
	cat <<'EOF'
INSERT INTO employees (name, email) VALUES (:'name', :'name' || '@example.com') RETURNING id, tenant AS got_tenant \gset
EOF
	check "SELECT :'got_tenant' = :'tenant' AS ok" "insert :name got tenant :got_tenant"
	check "SELECT name = :'name' AND email = :'name' || '@example.com' AND tenant = :'tenant' AS ok FROM employees WHERE id = :id" "select id :id"
	cat <<'EOF'
UPDATE employees SET email = 'new-' || email WHERE id = :id;
EOF
	check "SELECT :ROW_COUNT = 1 AS ok" "update id :id changed :ROW_COUNT rows"
	check "SELECT email = 'new-' || :'name' || '@example.com' AS ok FROM employees WHERE id = :id" "select id :id after update"
}

# Tenant B's transaction, run by a second psql between tenant A's transactions.
{
	echo "BEGIN;"
	create_read_update
	check "SELECT count(*) = 0 AS ok FROM employees WHERE name LIKE :'mark_a' || '%'" "tenant :tenant sees rows of tenant A"
	echo "DELETE FROM employees WHERE id = :id;"
	check "SELECT :ROW_COUNT = 1 AS ok" "delete id :id"
	own_tenant
	echo "COMMIT;"
	echo '\echo b-round-done'
} >"$tmp/b.sql"
cat >"$tmp/b.sh" <<EOF
#!/usr/bin/env bash
# Runs tenant B's transaction for round \$1; prints true when it passed, its output goes to b.log.
out=\$("$psql" -X -q -v ON_ERROR_STOP=1 -v tenant="$tenant_b" -v mark_a="$mark-a-" -v name="$mark-b-\$1" \\
	-f "$tmp/b.sql" "\$TP_DSN_B" 2>&1)
echo "\$out" >>"$tmp/b.log"
[[ \$out == *b-round-done* && \$out != *FAIL* ]] && echo true || echo false
EOF

# Tenant A's session.
{
	own_tenant
	for round in 1 2 3; do
		echo "\\set name '$mark-a-$round'"
		echo "BEGIN;"
		create_read_update
		own_tenant
		echo "COMMIT;"
		echo "\\set b_ok \`bash $tmp/b.sh $round\`"
		printf '\\if :b_ok\n\\else\n\\echo FAIL psql: tenant B round %s failed:\n\\! cat %s\n\\q\n\\endif\n' "$round" "$tmp/b.log"
	done
	check "SELECT count(*) = 3 AS ok FROM employees WHERE name LIKE :'mark' || '-a-%'" "tenant A's three rows are not all there"
	echo "BEGIN;"
	echo "DELETE FROM employees WHERE name LIKE :'mark' || '-a-%';"
	check "SELECT :ROW_COUNT = 3 AS ok" "delete of tenant A's rows deleted :ROW_COUNT"
	echo "COMMIT;"

	# An error inside a transaction with ON_ERROR_STOP off: the script goes on, ROLLBACK, the session works.
	cat <<'EOF'
\set ON_ERROR_STOP off
BEGIN;
SELECT 1 / 0;
\set ON_ERROR_STOP on
ROLLBACK;
EOF
	check "SELECT :'LAST_ERROR_SQLSTATE' = '22012' AS ok" "1/0 raised SQLSTATE :LAST_ERROR_SQLSTATE"
	own_tenant

	# \copy in and out.
	echo "\\copy employees (name, email) FROM '$tmp/copy.tsv'"
	check "SELECT count(*) = 50 AS ok FROM employees WHERE name LIKE :'mark' || '-copy-%' AND tenant = :'tenant'" "copied rows not all there"
	echo "\\copy (SELECT name, tenant FROM employees WHERE name LIKE '$mark-copy-%') TO '$tmp/out.tsv'"
	own_tenant
	echo "DELETE FROM employees WHERE name LIKE :'mark' || '%';"
	check "SELECT :ROW_COUNT = 50 AS ok" "delete of copied rows deleted :ROW_COUNT"
	echo '\echo a-done'
} >"$tmp/a.sql"
for i in $(seq 0 49); do
	printf '%s-copy-%d\tcopy%d@example.com\n' "$mark" "$i" "$i"
done >"$tmp/copy.tsv"

echo "psql $("$psql" --version | awk '{print $3}'), mode ${TP_MODE:-?}"
cleanup() {
	"$psql" -X -q -c "DELETE FROM employees WHERE name LIKE '$mark%'" "$TP_DSN_A" >/dev/null 2>&1 || true
	"$psql" -X -q -c "DELETE FROM employees WHERE name LIKE '$mark%'" "$TP_DSN_B" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

set +e
out=$("$psql" -X -q -v ON_ERROR_STOP=1 -v tenant="$tenant_a" -v mark="$mark" -f "$tmp/a.sql" "$TP_DSN_A" 2>&1)
rc=$?
set -e
if [[ $rc -ne 0 || $out == *FAIL* || $out != *a-done* ]]; then
	fail "tenant A's session (exit $rc):
$out"
fi
lines=$(wc -l <"$tmp/out.tsv")
[[ $lines -eq 50 ]] || fail "\\copy ... TO wrote $lines rows, want 50"
if grep -qv $'\t'"$tenant_a"'$' "$tmp/out.tsv"; then
	fail "\\copy ... TO returned another tenant's rows"
fi

# A cancel: SIGINT makes psql send a CancelRequest for its running query; the error must be SQLSTATE 57014
# within 5 s. psql ends a non-interactive run after a cancel, so a new session checks that the server (or
# the proxy's backend) is usable.
start=$(date +%s%N)
"$psql" -X -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "SELECT pg_sleep(10)" "$TP_DSN_A" >"$tmp/cancel.log" 2>&1 &
pid=$!
sleep 0.5
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
took=$((($(date +%s%N) - start) / 1000000))
grep -q "57014" "$tmp/cancel.log" || fail "cancelled pg_sleep(10) (exit $rc) did not report SQLSTATE 57014:
$(cat "$tmp/cancel.log")"
((took < 5000)) || fail "cancelled pg_sleep(10) returned after ${took}ms"
n=$("$psql" -X -At -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM employees WHERE tenant <> '$tenant_a'" "$TP_DSN_A")
[[ $n == 0 ]] || fail "query after cancel: $n rows of other tenants"

echo "ok psql"
