#!/usr/bin/env bash
# ab.sh: an A/B benchmark that survives a noisy machine. The referee (compare.sh) runs each target once,
# and on a shared 2-core VM one run can swing by 10%; ab.sh starts every target once against one
# throwaway cluster, then runs pgbench -S through them in turn for several rounds (rotating the order),
# and reports per target the median tps and the median CPU the proxy process spent per transaction
# (user+system, from /proc) and the whole machine spent per transaction (all CPUs; pgbench and
# PostgreSQL included): when the cores are saturated these decide the throughput.
#
# usage: bench/ab.sh [-k TENANTS] [-c CLIENTS] [-T SECONDS] [-r ROUNDS] [-m simple|extended] TARGET...
#   TARGET: direct | pgbouncer | [LABEL=]PATH-TO-A-TENANTPROXY-BINARY
# e.g.    bench/ab.sh -r 5 pgbouncer bin/tenantproxy
#         bench/ab.sh -r 5 old=/tmp/tp-old new=bin/tenantproxy
# env:    POOL backend connections (default 20, as the referee)
set -euo pipefail
K=1 C=50 T=10 R=5 MODE=simple
while getopts k:c:T:r:m: o; do case $o in
  k) K=$OPTARG ;; c) C=$OPTARG ;; T) T=$OPTARG ;; r) R=$OPTARG ;; m) MODE=$OPTARG ;;
  *) sed -n '2,13p' "$0"; exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n '2,13p' "$0"; exit 2; }
POOL=${POOL:-20}
pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -1)")
[ -x "$pgbin/pgbench" ] || pgbin=$(dirname "$(command -v pgbench)")
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/ab.XXXXXX); chmod 755 "$work"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  [ -f "$work/pgbouncer.pid" ] && kill "$(cat "$work/pgbouncer.pid")" 2>/dev/null
  [ -d "$work/pg/data" ] && as "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

PG=$(free_port)
mkdir -p "$work/pg"; [ "$(id -u)" = 0 ] && chown postgres: "$work/pg" "$work"
as "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1
cat >>"$work/pg/data/postgresql.conf" <<EOF
port = $PG
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/pg'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
as "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w start >/dev/null
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG" -U postgres "$@"; }
psql -d postgres -c "CREATE DATABASE bench"
psql -d bench -c "CREATE ROLE tp_pool LOGIN NOINHERIT"
tenants=()
for i in $(seq 1 "$K"); do
  t=t$i; tenants+=("$t")
  psql -d bench -c "CREATE SCHEMA $t; CREATE ROLE tenant_$t NOLOGIN; GRANT tenant_$t TO tp_pool;"
  PGOPTIONS="-c search_path=$t" "$pgbin/pgbench" -h 127.0.0.1 -p "$PG" -U postgres -i -q -s 1 bench >/dev/null 2>&1
  psql -d bench -c "GRANT USAGE ON SCHEMA $t TO tenant_$t; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA $t TO tenant_$t;"
done

declare -A port pid kind
labels=()
for arg in "$@"; do
  case $arg in
  direct) labels+=(direct); kind[direct]=direct; port[direct]=$PG ;;
  pgbouncer)
    command -v pgbouncer >/dev/null || { echo "ab.sh: pgbouncer is not installed (scripts/install-deps.sh)" >&2; exit 2; }
    p=$(free_port)
    {
      echo "[databases]"
      for t in "${tenants[@]}"; do echo "$t = host=127.0.0.1 port=$PG dbname=bench user=postgres connect_query='SET search_path TO $t'"; done
      echo "[pgbouncer]"; echo "listen_addr = 127.0.0.1"; echo "listen_port = $p"; echo "unix_socket_dir ="
      echo "auth_type = trust"; echo "auth_file = $work/userlist.txt"; echo "pool_mode = transaction"
      echo "default_pool_size = $POOL"; echo "max_user_connections = $POOL"; echo "max_client_conn = 20000"
      echo "logfile = $work/pgbouncer.log"; echo "pidfile = $work/pgbouncer.pid"
    } >"$work/pgbouncer.ini"
    echo '"postgres" ""' >"$work/userlist.txt"
    [ "$(id -u)" = 0 ] && chown postgres: "$work/pgbouncer.ini" "$work/userlist.txt"
    as pgbouncer -d "$work/pgbouncer.ini"
    for _ in $(seq 1 50); do [ -s "$work/pgbouncer.pid" ] && break; sleep 0.1; done
    labels+=(pgbouncer); kind[pgbouncer]=pgbouncer; port[pgbouncer]=$p; pid[pgbouncer]=$(cat "$work/pgbouncer.pid")
    ;;
  *)
    label=${arg%%=*} bin=${arg#*=}; [ "$label" = "$arg" ] && label=$(basename "$bin")
    [ -x "$bin" ] || { echo "ab.sh: $bin is not an executable" >&2; exit 2; }
    p=$(free_port)
    {
      echo "[listen]"; echo "addr = \"127.0.0.1:$p\""
      echo "[backend]"; echo "host = \"127.0.0.1\""; echo "port = $PG"; echo "database = \"bench\""
      echo "user = \"tp_pool\""; echo "pool_size = $POOL"
      echo "[pool]"; echo "mode = \"transaction\""
      echo "[auth]"; echo "method = \"trust\""
      echo "[tenancy]"; echo "resolve = [\"user\"]"; echo "role = \"tenant_{tenant}\""
      echo "search_path = [\"{schema}\", \"public\"]"; echo "setting = \"tenantproxy.tenant\""
      echo "require_hardening = false"
      for t in "${tenants[@]}"; do echo "[[tenants]]"; echo "name = \"$t\""; done
      echo "[[users]]"; echo "name = \"bench\""; printf 'tenants = ['; printf '"%s",' "${tenants[@]}" | sed 's/,$//'; echo "]"
      echo "[log]"; echo "level = \"warn\""
    } >"$work/$label.toml"
    "$bin" serve --config "$work/$label.toml" >"$work/$label.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$p" && break; sleep 0.1; done
    labels+=("$label"); kind[$label]=tenantproxy; port[$label]=$p; pid[$label]=$!
    ;;
  esac
done

ticks() { [ -n "${pid[$1]:-}" ] && awk '{print $14 + $15}' "/proc/${pid[$1]}/stat" || echo 0; }
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; } # all CPUs, ticks not idle
hz=$(getconf CLK_TCK)
run() { # run LABEL: pgbench through the target, one process per tenant; prints "tps proxy_us_per_txn all_us_per_txn"
  local l=$1 per=$(( (C + K - 1) / K )) files=() before after tps=0 b0 b1
  before=$(ticks "$l") b0=$(busy)
  for t in "${tenants[@]}"; do
    local f=$work/out.$l.$t
    case ${kind[$l]} in
      direct) PGOPTIONS="-c search_path=$t" "$pgbin/pgbench" -h 127.0.0.1 -p "$PG" -U postgres -n -S -M "$MODE" -c "$per" -j 1 -T "$T" bench >"$f" 2>&1 & ;;
      pgbouncer) "$pgbin/pgbench" -h 127.0.0.1 -p "${port[$l]}" -U postgres -n -S -M "$MODE" -c "$per" -j 1 -T "$T" "$t" >"$f" 2>&1 & ;;
      tenantproxy) "$pgbin/pgbench" -h 127.0.0.1 -p "${port[$l]}" -U "bench@$t" -n -S -M "$MODE" -c "$per" -j 1 -T "$T" "$t" >"$f" 2>&1 & ;;
    esac
    files+=("$f")
  done
  wait $(jobs -p | grep -v -x -F "$(printf '%s\n' "${pids[@]:-0}")") 2>/dev/null || true
  after=$(ticks "$l") b1=$(busy)
  for f in "${files[@]}"; do
    v=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$f" | tail -1)
    [ -n "$v" ] || { echo "ab.sh: $l failed: $(tail -1 "$f")" >&2; v=0; }
    tps=$(echo "$tps + $v" | bc -l)
  done
  echo "$tps $(echo "if ($tps > 0) ($after - $before) * 1000000 / $hz / ($tps * $T) else 0" | bc -l)" \
    "$(echo "if ($tps > 0) ($b1 - $b0) * 1000000 / $hz / ($tps * $T) else 0" | bc -l)"
}

echo "# ab.sh -k $K -c $C -T $T -r $R -m $MODE: ${labels[*]} (nproc=$(nproc), pool=$POOL)"
declare -A res
n=${#labels[@]}
for r in $(seq 1 "$R"); do
  line="round $r:"
  for i in $(seq 0 $((n - 1))); do
    l=${labels[$(( (i + r - 1) % n ))]}
    out=$(run "$l"); res[$l]+="$out"$'\n'
    line+=$(printf ' %s=%.0f' "$l" "${out%% *}")
  done
  echo "$line"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for l in "${labels[@]}"; do
  mt=$(printf '%s' "${res[$l]}" | awk '{print $1}' | median)
  mc=$(printf '%s' "${res[$l]}" | awk '{print $2}' | median)
  ma=$(printf '%s' "${res[$l]}" | awk '{print $3}' | median)
  printf '%-14s median tps=%.0f  machine cpu=%.2f us/txn' "$l" "$mt" "$ma"
  [ "${kind[$l]}" = direct ] || printf '  proxy cpu=%.2f us/txn' "$mc"
  echo
  eval "M_${l//[^a-zA-Z0-9_]/_}=$mt"
done
if [ -n "${kind[pgbouncer]:-}" ]; then
  for l in "${labels[@]}"; do
    [ "${kind[$l]}" = tenantproxy ] || continue
    a=$(eval echo "\$M_${l//[^a-zA-Z0-9_]/_}")
    printf 'ratio of medians %s/pgbouncer: %.3f\n' "$l" "$(echo "$a / $M_pgbouncer" | bc -l)"
  done
fi
