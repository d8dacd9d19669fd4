#!/usr/bin/env bash
# fuzz.sh TIME: runs every fuzz target of the module for TIME each (go test -fuzz), one after another.
# Crashes are saved by go test under testdata/fuzz/ of the package: commit them as regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
fail=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz: $pkg $name ($t)"
		if ! go test -timeout 0 -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
			cat /tmp/fuzz.$$.log
			fail=1
		fi
	done
done
rm -f /tmp/fuzz.$$.log
exit $fail
