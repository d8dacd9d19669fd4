#!/usr/bin/env bash
# install-deps.sh installs what tenantproxy's test suites need on a fresh Debian 12 machine (run as root):
# the PostgreSQL 15 server and client, pgbouncer (benchmarks), and the client drivers of the driver matrix
# (integration/drivers): python3-psycopg and python3-asyncpg for Debian's /usr/bin/python3, the PostgreSQL
# JDBC driver with a Java 17 JDK, Node.js with the npm packages pg, pg-copy-streams and postgres pinned in
# integration/drivers/node/package-lock.json, and chromium (the status page test, admin/status_test.go).
#
# It is idempotent and quick when everything is present: apt-get update runs only when a Debian package is
# missing, and npm ci only when node_modules does not match package-lock.json. It reaches only Debian's
# repositories and the npm registry.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'install-deps: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
	say "must run as root (it installs Debian packages)" >&2
	exit 1
fi

installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Debian packages, by name. A JDK is wanted only when javac of version 17 or newer is missing, Node.js only
# when node or npm is missing (a machine may carry them from elsewhere).
want=(postgresql-15 postgresql-client-15 pgbouncer python3-psycopg python3-asyncpg libpostgresql-jdbc-java chromium)
javac_major() { javac -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p'; }
if ! command -v javac >/dev/null || [[ "$(javac_major)" -lt 17 ]]; then
	want+=(openjdk-17-jdk-headless)
fi
if ! command -v node >/dev/null; then
	want+=(nodejs)
fi
if ! command -v npm >/dev/null; then
	want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
	if installed "$p"; then
		say "have $p"
	else
		missing+=("$p")
	fi
done

if ((${#missing[@]} > 0)); then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
	say "all Debian packages present; skipping apt-get"
fi

# Debian starts a pgbouncer service on installation where services may start; it would hold port 6432, the
# proxy's default port, and no test uses it (benchmarks start their own), so stop the one just installed.
if [[ " ${missing[*]} " == *" pgbouncer "* ]] && command -v service >/dev/null; then
	say "stopping the Debian pgbouncer service (it would hold port 6432)"
	service pgbouncer stop >/dev/null 2>&1 || true
fi

# Node.js packages of the driver matrix, exactly as pinned by package-lock.json.
node_dir="$root/integration/drivers/node"
stamp="$node_dir/node_modules/.install-deps.sha256"
lock_sum="$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
	say "have node packages ($(cd "$node_dir" && node -e 'const p=require("./package.json").dependencies; console.log(Object.entries(p).map(([k,v])=>k+"@"+v).join(" "))'))"
else
	say "npm ci in integration/drivers/node"
	(cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
	echo "$lock_sum" >"$stamp"
fi

# Checks that the runtimes see their drivers: Debian's Python (not a pyenv shim), the JDBC jar, node.
/usr/bin/python3 -c 'import psycopg, asyncpg; print("install-deps: python3 sees psycopg", psycopg.__version__, "and asyncpg", asyncpg.__version__)'
[[ -f /usr/share/java/postgresql.jar ]] || { say "missing /usr/share/java/postgresql.jar" >&2; exit 1; }
say "have /usr/share/java/postgresql.jar -> $(readlink -f /usr/share/java/postgresql.jar)"
say "done"
