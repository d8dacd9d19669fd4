package app

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/session"
)

// manyTenants is a relay snapshot of n tenants; tenant i has done i queries and i/2 transactions, and
// the first `waiting` tenants have a waiting client each.
func manyTenants(n, waiting int) session.Snapshot {
	snap := session.Snapshot{Time: time.Now(), Pool: session.PoolSnapshot{Size: 20}}
	for i := 0; i < n; i++ {
		t := session.TenantSnapshot{Name: fmt.Sprintf("t%05d", i), Clients: 1, Active: 1,
			Stats: session.TenantStats{QueryCount: int64(i), XactCount: int64(i / 2), BytesSent: 100, WaitTime: time.Millisecond}}
		if i < waiting {
			t.Waiting, t.MaxWait = 1, time.Duration(i+1)*time.Second
		}
		snap.Tenants = append(snap.Tenants, t)
		snap.Pool.Waiting += t.Waiting
	}
	return snap
}

// gather registers c alone and returns its families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// byTenant returns a family's values by tenant label.
func byTenant(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "tenant" {
				v := m.GetGauge().GetValue()
				if m.Counter != nil {
					v = m.GetCounter().GetValue()
				}
				out[l.GetValue()] = v
			}
		}
	}
	return out
}

func TestTenantSeriesStayBoundedAtTenThousandTenants(t *testing.T) {
	for _, tc := range []struct {
		name            string
		tenants, k      int
		wantPerFamily   int // series of each family with an _other series
		wantOwnedFamily int // series of the limits, which have no _other
	}{
		{"10,000 tenants, K=100", 10000, 100, 101, 100},
		{"10,000 tenants, K=10", 10000, 10, 11, 10},
		{"fewer tenants than K", 5, 100, 6, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := manyTenants(tc.tenants, 0)
			c := newTenantCollector(func(context.Context) (session.Snapshot, error) { return snap, nil }, func() int { return tc.k }, zap.NewNop())
			start := time.Now()
			fams := gather(t, c)
			t.Logf("%d tenants, K=%d: one scrape took %v", tc.tenants, tc.k, time.Since(start))
			for name, f := range fams {
				switch name {
				case "tenantproxy_pool_size", "tenantproxy_pool_client_waiting_connections", "tenantproxy_tenant_metrics_scrape_seconds":
					continue
				case "tenantproxy_pools_client_max_connections", "tenantproxy_pools_server_max_connections":
					if n := len(f.GetMetric()); n != tc.wantOwnedFamily {
						t.Errorf("%s: %d series, want %d", name, n, tc.wantOwnedFamily)
					}
				default:
					if n := len(f.GetMetric()); n != tc.wantPerFamily {
						t.Errorf("%s: %d series, want %d", name, n, tc.wantPerFamily)
					}
				}
			}
			// Every query is counted exactly once: in its tenant's series or in _other.
			var want, got float64
			for _, ts := range snap.Tenants {
				want += float64(ts.Stats.QueryCount)
			}
			for _, v := range byTenant(fams["tenantproxy_stats_totals_queries_total"]) {
				got += v
			}
			if got != want {
				t.Errorf("queries over all series = %v, want %v", got, want)
			}
		})
	}
}

func TestTenantSeriesAreTheBusiestTenants(t *testing.T) {
	snap := manyTenants(1000, 3) // t00000..t00002 wait; the others rank by work done
	c := newTenantCollector(func(context.Context) (session.Snapshot, error) { return snap, nil }, func() int { return 5 }, zap.NewNop())
	fams := gather(t, c)
	got := byTenant(fams["tenantproxy_stats_totals_queries_total"])
	for _, name := range []string{"t00000", "t00001", "t00002", "t00999", "t00998", otherTenant} {
		if _, ok := got[name]; !ok {
			t.Errorf("no series for %s; have %v", name, got)
		}
	}
	if w := byTenant(fams["tenantproxy_pools_max_wait_seconds"]); w["t00002"] != 3 || w[otherTenant] != 0 {
		t.Errorf("max wait: t00002 %v s (want 3), _other %v s (want 0)", w["t00002"], w[otherTenant])
	}
	if w := byTenant(fams["tenantproxy_stats_totals_client_wait_seconds_total"]); math.Abs(w[otherTenant]-0.995) > 1e-9 {
		t.Errorf("_other client wait = %v s, want 995 tenants × 1 ms", w[otherTenant])
	}
}

func TestTenantSeriesStickWhileATenantStaysNearTheTop(t *testing.T) {
	snap := manyTenants(100, 0)
	c := newTenantCollector(func(context.Context) (session.Snapshot, error) { return snap, nil }, func() int { return 3 }, zap.NewNop())
	names := func() map[string]float64 { return byTenant(gather(t, c)["tenantproxy_stats_totals_queries_total"]) }
	if got := names(); len(got) != 4 || got["t00099"] == 0 {
		t.Fatalf("first scrape: %v", got)
	}
	// t00095 overtakes t00097 (the third): t00097 is still among the busiest 2K, so it keeps its series.
	snap.Tenants[95].Stats.QueryCount = 98
	if got := names(); len(got) != 4 || got["t00097"] == 0 {
		t.Errorf("after a small change: %v, want t00097 kept", got)
	}
	// t00010 becomes by far the busiest and t00097 falls out of the busiest 2K: the set changes.
	snap.Tenants[10].Stats.QueryCount = 1000
	for _, i := range []int{94, 95, 96} {
		snap.Tenants[i].Stats.QueryCount = 500
	}
	if got := names(); len(got) != 4 || got["t00010"] == 0 || got["t00097"] != 0 {
		t.Errorf("after t00010 overtook them all: %v, want t00010 in and t00097 out", got)
	}
}
