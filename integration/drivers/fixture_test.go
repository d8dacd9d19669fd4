package drivers

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// poolModes are the pool modes every scenario runs in, each through a proxy of its own.
var poolModes = []string{"transaction", "session"}

// poolSize is the proxies' backend pool: two backends, so that one tenant's transactions interleave with
// the other tenant's on the same server connections.
const poolSize = 2

// fixture is the provisioned cluster (tenants acme and globex) behind every proxy of the package, started
// once by TestMain; nil when TP_DSN_A points the tests at a proxy of their environment.
var fixture *proxytest.Fixture

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// scratch is a directory for the package's run, removed at its end.
var scratch string

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tenantproxy-drivers-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "drivers: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	scratch = dir
	if os.Getenv("TP_DSN_A") == "" {
		f, err := proxytest.StartFixture()
		if err != nil {
			fmt.Fprintf(os.Stderr, "drivers: start the fixture: %v\n", err)
			return 1
		}
		defer f.Cluster.Stop()
		fixture = f
	}
	return m.Run()
}

// target is a tenantproxy the scenarios run against: its pool mode, and the tenants A and B with the URLs of
// their users.
type target struct {
	mode             string
	tenantA, tenantB string
	dsnA, dsnB       string
	// proxy is the package's proxy; nil for a proxy of the environment.
	proxy *proxytest.Proxy
}

// env is the environment of a scenario program for tg.
func (tg target) env() []string {
	return append(os.Environ(),
		"TP_DSN_A="+tg.dsnA, "TP_DSN_B="+tg.dsnB,
		"TP_TENANT_A="+tg.tenantA, "TP_TENANT_B="+tg.tenantB,
		"TP_MODE="+tg.mode,
	)
}

// forEachMode runs fn in a subtest per pool mode, named for the mode. With TP_DSN_A set it runs fn once
// instead, in a subtest named for TP_MODE (default "transaction").
func forEachMode(t *testing.T, fn func(t *testing.T, mode string)) {
	t.Helper()
	if os.Getenv("TP_DSN_A") != "" {
		mode := envOr("TP_MODE", "transaction")
		t.Run(mode, func(t *testing.T) { fn(t, mode) })
		return
	}
	for _, mode := range poolModes {
		t.Run(mode, func(t *testing.T) { fn(t, mode) })
	}
}

// startTarget starts a proxy of its own for t over the package's fixture, in pool mode with a pool of
// poolSize backends, so that one driver's trouble cannot spill over into another's run; in transaction
// pooling an interleaver (see startInterleaver) keeps moving the backends between tenants. When t ends, after
// the cleanups t registers later (the scenario's own), it checks that every backend went back to the idle
// pool once the clients left, logs the relay paths t took (see logRelayPaths) and shuts the proxy down.
//
// With TP_DSN_A set it returns TP_DSN_A and TP_DSN_B instead, the URLs of the users of tenants TP_TENANT_A
// and TP_TENANT_B (default acme and globex).
func startTarget(t *testing.T, mode string) target {
	t.Helper()
	if dsnA := os.Getenv("TP_DSN_A"); dsnA != "" {
		dsnB := os.Getenv("TP_DSN_B")
		if dsnB == "" {
			t.Fatal("TP_DSN_A is set but TP_DSN_B is not: set both, or neither to run the package's own proxies")
		}
		return target{
			mode:    mode,
			tenantA: envOr("TP_TENANT_A", proxytest.DefaultTenants[0]),
			tenantB: envOr("TP_TENANT_B", proxytest.DefaultTenants[1]),
			dsnA:    dsnA,
			dsnB:    dsnB,
		}
	}
	p := fixture.Start(t, func(c *config.Config) {
		c.Pool.Mode = config.PoolMode(mode)
		c.Backend.PoolSize = poolSize
	})
	a, b := fixture.Tenants[0], fixture.Tenants[1]
	tg := target{mode: mode, tenantA: a, tenantB: b, dsnA: p.TenantURL(a), dsnB: p.TenantURL(b), proxy: p}
	before := relayCounters(t, p.Registry())
	t.Cleanup(func() {
		tg.checkPoolSettles(t)
		logRelayPaths(t, before, relayCounters(t, p.Registry()))
	})
	if mode == "transaction" {
		startInterleaver(t, tg)
	}
	return tg
}

// settleTimeout bounds how long the pool may take to get its backends back once the clients left: a
// ROLLBACK or DISCARD ALL and a cancel request in flight, a few milliseconds each.
const settleTimeout = 5 * time.Second

// checkPoolSettles fails t unless, once every client has left, every backend of the pool is back idle
// within settleTimeout: a backend that stays leased or in reset is lost to every later client.
func (tg target) checkPoolSettles(t *testing.T) {
	t.Helper()
	e := tg.proxy.Engine()
	deadline := time.Now().Add(settleTimeout)
	for {
		st := e.Stats()
		if st.Clients == 0 && st.Leased == 0 && st.Dialing == 0 && st.Idle == st.Backends {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%v after the scenario's clients left, the pool has not settled: %d clients, %d backends open, "+
				"%d idle, %d leased, %d dialing (a backend neither idle nor leased is stuck in reset)",
				settleTimeout, st.Clients, st.Backends, st.Idle, st.Leased, st.Dialing)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// logRelayPaths logs how the proxy's counters of the relay paths moved between before and after: prepared
// statement cache hits, misses, replays and evictions, context switches, emulated and refused statements.
// It shows whether a scenario reached the replay paths, which depend on how the pool hands out backends.
func logRelayPaths(t *testing.T, before, after map[string]float64) {
	t.Helper()
	var b strings.Builder
	for _, k := range relayCounterNames {
		fmt.Fprintf(&b, " %s=%g", k, after[k]-before[k])
	}
	t.Logf("relay paths:%s", b.String())
}

// relayCounterNames are the keys of relayCounters, in the order they are logged.
var relayCounterNames = []string{"prepared_hit", "prepared_miss", "prepared_replay", "prepared_evict", "context_switches", "emulated", "refused"}

// relayCounters reads the counters of the relay paths from the proxy's metrics.
func relayCounters(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather the proxy's metrics: %v", err)
	}
	out := make(map[string]float64, len(relayCounterNames))
	for _, f := range families {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue()
			switch f.GetName() {
			case "tenantproxy_prepared_statements_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "event" {
						out["prepared_"+l.GetValue()] += v
					}
				}
			case "tenantproxy_context_switches_total":
				out["context_switches"] += v
			case "tenantproxy_emulated_statements_total":
				out["emulated"] += v
			case "tenantproxy_guard_refusals_total":
				out["refused"] += v
			}
		}
	}
	return out
}

// interleaveSQL is the interleaver's statement: a short transaction that holds its backend for a few
// milliseconds and counts the rows of other tenants, which must be none.
const interleaveSQL = "SELECT count(*) FROM employees, pg_sleep(0.003) WHERE tenant <> $1"

// startInterleaver runs, until t ends, a client of each of tg's tenants that take turns at running
// interleaveSQL as a prepared statement, a few milliseconds apart. In transaction pooling the pool prefers to
// give a client a backend that carries its tenant's context already, so two clients taking turns would each
// keep a backend of their own; while the interleaver holds one backend, a scenario's client gets the other,
// whatever tenant it served last, and its prepared statements are replayed there. The interleaver fails t
// if it ever sees a row of another tenant or an error.
func startInterleaver(t *testing.T, tg target) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	type client struct {
		tenant string
		conn   *pgx.Conn
	}
	var clients []client
	closeAll := func() {
		for _, c := range clients {
			c.conn.Close(ctx)
		}
		cancel()
	}
	for _, tc := range []struct{ tenant, dsn string }{{tg.tenantA, tg.dsnA}, {tg.tenantB, tg.dsnB}} {
		conn, err := pgx.Connect(ctx, tc.dsn)
		if err != nil {
			closeAll()
			t.Fatalf("interleaver: connect as a user of %s: %v", tc.tenant, err)
		}
		clients = append(clients, client{tc.tenant, conn})
	}
	// The interleaver stops between statements: a client that left during a query would leave the proxy
	// a backend to cancel and reset, which is not what the scenarios test.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(time.Duration(1+i%4) * time.Millisecond):
			}
			c := clients[i%len(clients)]
			var n int64
			if err := c.conn.QueryRow(ctx, interleaveSQL, c.tenant).Scan(&n); err != nil {
				done <- fmt.Errorf("client of %s: %w", c.tenant, err)
				return
			}
			if n != 0 {
				done <- fmt.Errorf("client of %s sees %d rows of other tenants", c.tenant, n)
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("interleaver: %v", err)
		}
		closeAll()
	})
}
