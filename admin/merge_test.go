package admin

import (
	"testing"
	"time"
)

func TestMergeShardsSumsPerTenantAndKeepsTheWorstWait(t *testing.T) {
	dst := &Snapshot{Users: []User{{Name: "alice"}}, Databases: []Database{{Name: "acme"}, {Name: "globex"}}}
	a := &Snapshot{
		Pools:     []Pool{{Database: "globex", ClActive: 1, MaxWait: time.Second}, {Database: "acme", ClActive: 2, SvIdle: 1, MaxWait: 3 * time.Second}},
		Clients:   []Socket{{ID: 1}},
		Stats:     []Stats{{Database: "acme", Totals: Counters{Xacts: 10, XactTime: time.Second}, Averages: Counters{Xacts: 1, XactTime: 100 * time.Microsecond}}},
		Tenants:   []Tenant{{Name: "acme", Clients: 2, XactPerSec: 1, AvgWait: time.Millisecond, MaxWait: 3 * time.Second, Refused: 1}},
		Mem:       []Mem{{Name: "clients", Size: 10, Used: 1, Free: 1, MemTotal: 20}},
		Users:     []User{{Name: "alice", CurrentClientConnections: 2}},
		Databases: []Database{{Name: "acme", CurrentClientConnections: 2}},
	}
	b := &Snapshot{
		State:     State{Paused: true},
		Pools:     []Pool{{Database: "acme", ClActive: 3, ClWaiting: 4, MaxWait: 2 * time.Second}},
		Clients:   []Socket{{ID: 2}},
		Servers:   []Socket{{Server: true, ID: 9}},
		Stats:     []Stats{{Database: "acme", Totals: Counters{Xacts: 5, XactTime: time.Second}, Averages: Counters{Xacts: 3, XactTime: 500 * time.Microsecond}}},
		Tenants:   []Tenant{{Name: "acme", Clients: 3, XactPerSec: 3, AvgWait: 5 * time.Millisecond, MaxWait: time.Second, Paused: true}},
		Mem:       []Mem{{Name: "clients", Size: 10, Used: 2, Free: 0, MemTotal: 20}},
		Users:     []User{{Name: "alice", CurrentClientConnections: 3}, {Name: "ghost", CurrentClientConnections: 1}},
		Databases: []Database{{Name: "acme", CurrentClientConnections: 3}},
	}
	MergeShards(dst, []*Snapshot{a, nil, b})
	if len(dst.Pools) != 2 || dst.Pools[0].Database != "acme" || dst.Pools[1].Database != "globex" {
		t.Fatalf("pools not per tenant in name order: %+v", dst.Pools)
	}
	if p := dst.Pools[0]; p.ClActive != 5 || p.ClWaiting != 4 || p.SvIdle != 1 || p.MaxWait != 3*time.Second {
		t.Errorf("acme pool %+v", p)
	}
	if len(dst.Clients) != 2 || len(dst.Servers) != 1 {
		t.Errorf("sockets: %d clients, %d servers", len(dst.Clients), len(dst.Servers))
	}
	st := dst.Stats[0]
	if st.Totals.Xacts != 15 || st.Totals.XactTime != 2*time.Second || st.Averages.Xacts != 4 {
		t.Errorf("stats %+v", st)
	}
	// (100µs × 1 + 500µs × 3) / 4 = 400µs
	if st.Averages.XactTime != 400*time.Microsecond {
		t.Errorf("weighted avg_xact_time = %v, want 400µs", st.Averages.XactTime)
	}
	tn := dst.Tenants[0]
	if tn.Clients != 5 || tn.XactPerSec != 4 || tn.MaxWait != 3*time.Second || tn.Refused != 1 || !tn.Paused {
		t.Errorf("tenant %+v", tn)
	}
	// (1ms × 1 + 5ms × 3) / 4 = 4ms
	if tn.AvgWait != 4*time.Millisecond {
		t.Errorf("weighted avg wait = %v, want 4ms", tn.AvgWait)
	}
	if len(dst.Mem) != 1 || dst.Mem[0].Used != 3 || dst.Mem[0].MemTotal != 40 {
		t.Errorf("mem %+v", dst.Mem)
	}
	if dst.Users[0].CurrentClientConnections != 5 || len(dst.Users) != 1 {
		t.Errorf("users %+v", dst.Users)
	}
	if dst.Databases[0].CurrentClientConnections != 5 || dst.Databases[1].CurrentClientConnections != 0 {
		t.Errorf("databases %+v", dst.Databases)
	}
	if !dst.State.Paused {
		t.Error("a paused shard does not make the proxy paused")
	}
}
