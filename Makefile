# tenantproxy — the two commands that matter on a fresh machine:
#   make demo   throwaway PostgreSQL with AgenticHR tenants behind the proxy on 127.0.0.1:6432
#   make test   every test suite (installs what a fresh machine lacks when run as root)

GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 10s
# RACE_PKGS run again under the race detector in `make test`: the unit-level packages, fast enough
# under -race (the suites that drive many proxies and servers stay out of it).
RACE_PKGS := ./config/... ./catalog/... ./policy/... ./proxy/... ./routing/... ./internal/... ./session/...

.PHONY: demo test deps vet unit build bench fuzz referee race

build:
	$(GO) build -o bin/tenantproxy ./cmd/tenantproxy

demo: build
	./bin/tenantproxy demo --config config.toml

deps:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/install-deps.sh; else echo "make deps: not root; assuming the test dependencies are installed (see scripts/install-deps.sh)"; fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)

test: deps vet
	$(GO) test -count=1 -timeout 40m $(PKGS)
	$(MAKE) race
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

# race runs the unit-level packages under the race detector.
race:
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

# fuzz runs every fuzz target briefly (FUZZTIME each); `make fuzz FUZZTIME=10m` for a long run.
fuzz:
	@bash scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./session/ ./policy/ ./proxy/...

# referee runs the side-by-side benchmark (direct / pgbouncer / tenantproxy) of ../shared/referee.
referee: build
	TP_BIN=$(CURDIR)/bin/tenantproxy bash ../shared/referee/compare.sh -k 1 -c 50

# bench-report runs the issue-10 scenarios (../shared/referee tenants.sh and idle.sh, bench/ab.sh) and writes
# bench/REPORT.md with PNG charts; raw output in bench/results/<date>-<commit>/. SCALE=full (the issue's
# exact commands) takes half an hour or more; SCALE=quick is a short smoke run into bench/results/tmp/.
# ONLY=id,id runs some scenarios; RENDER=DIR re-renders from a results folder; NOFAIR='<TP_EXTRA>' adds a
# noisy-neighbour run with the proxy's fairness off; TIMEOUT=45m bounds each command.
.PHONY: bench-report
SCALE ?= full
bench-report: build
	$(GO) run ./bench/report -scale $(SCALE) $(if $(ONLY),-only '$(ONLY)') $(if $(NOFAIR),-nofair '$(NOFAIR)') $(if $(RENDER),-render '$(RENDER)') $(if $(TIMEOUT),-timeout $(TIMEOUT))
