package admin

import (
	"sort"
	"time"
)

// MergeShards puts the relay sections that each relay thread filled for its own clients and backends
// (each shard a Snapshot with only Pools, Clients, Servers, Stats, Tenants, Mem, the Users' and
// Databases' counts and State.Paused set) into dst, for a relay that runs several loops:
//
//   - Clients, Servers and Mem are concatenated (Mem rows of one name summed);
//   - Pools, Stats and Tenants are summed per tenant, in tenant-name order; waits take the maximum, and
//     average times are weighted by the transactions or queries behind them;
//   - the current_* counts of dst.Users and dst.Databases are summed by name;
//   - State.Paused is set when any shard is paused.
func MergeShards(dst *Snapshot, shards []*Snapshot) {
	pools := map[string]*Pool{}
	stats := map[string]*Stats{}
	tenants := map[string]*Tenant{}
	mem := map[string]*Mem{}
	var memOrder []string
	users := map[string]*User{}
	for i := range dst.Users {
		users[dst.Users[i].Name] = &dst.Users[i]
	}
	dbs := map[string]*Database{}
	for i := range dst.Databases {
		dbs[dst.Databases[i].Name] = &dst.Databases[i]
	}
	for _, s := range shards {
		if s == nil {
			continue
		}
		dst.State.Paused = dst.State.Paused || s.State.Paused
		dst.Clients = append(dst.Clients, s.Clients...)
		dst.Servers = append(dst.Servers, s.Servers...)
		for _, m := range s.Mem {
			if a := mem[m.Name]; a != nil {
				a.Used += m.Used
				a.Free += m.Free
				a.MemTotal += m.MemTotal
			} else {
				c := m
				mem[m.Name] = &c
				memOrder = append(memOrder, m.Name)
			}
		}
		for _, p := range s.Pools {
			a := pools[p.Database]
			if a == nil {
				c := p
				pools[p.Database] = &c
				continue
			}
			a.ClActive += p.ClActive
			a.ClWaiting += p.ClWaiting
			a.ClActiveCancelReq += p.ClActiveCancelReq
			a.ClWaitingCancelReq += p.ClWaitingCancelReq
			a.SvActive += p.SvActive
			a.SvActiveCancel += p.SvActiveCancel
			a.SvBeingCanceled += p.SvBeingCanceled
			a.SvIdle += p.SvIdle
			a.SvUsed += p.SvUsed
			a.SvTested += p.SvTested
			a.SvLogin += p.SvLogin
			a.MaxWait = max(a.MaxWait, p.MaxWait)
		}
		for _, st := range s.Stats {
			a := stats[st.Database]
			if a == nil {
				c := st
				stats[st.Database] = &c
				continue
			}
			mergeAverages(&a.Averages, st.Averages)
			addCounters(&a.Totals, st.Totals)
		}
		for _, t := range s.Tenants {
			a := tenants[t.Name]
			if a == nil {
				c := t
				tenants[t.Name] = &c
				continue
			}
			a.AvgWait = weighted(a.AvgWait, a.XactPerSec, t.AvgWait, t.XactPerSec)
			a.Clients += t.Clients
			a.Waiting += t.Waiting
			a.Backends += t.Backends
			a.XactPerSec += t.XactPerSec
			a.QueryPerSec += t.QueryPerSec
			a.MaxWait = max(a.MaxWait, t.MaxWait)
			a.Refused += t.Refused
			a.Suspended = a.Suspended || t.Suspended
			a.Paused = a.Paused || t.Paused
		}
		for _, u := range s.Users {
			if a := users[u.Name]; a != nil {
				a.CurrentConnections += u.CurrentConnections
				a.CurrentClientConnections += u.CurrentClientConnections
			}
		}
		for _, d := range s.Databases {
			if a := dbs[d.Name]; a != nil {
				a.CurrentConnections += d.CurrentConnections
				a.CurrentClientConnections += d.CurrentClientConnections
				a.Paused = a.Paused || d.Paused
			}
		}
	}
	dst.Pools, dst.Stats, dst.Tenants, dst.Mem = nil, nil, nil, nil
	for _, name := range sortedKeys(pools) {
		dst.Pools = append(dst.Pools, *pools[name])
	}
	for _, name := range sortedKeys(stats) {
		dst.Stats = append(dst.Stats, *stats[name])
	}
	for _, name := range sortedKeys(tenants) {
		dst.Tenants = append(dst.Tenants, *tenants[name])
	}
	for _, name := range memOrder {
		dst.Mem = append(dst.Mem, *mem[name])
	}
}

// mergeAverages adds b's per-second figures to a and weights the per-transaction and per-query times.
func mergeAverages(a *Counters, b Counters) {
	a.XactTime = weighted(a.XactTime, float64(a.Xacts), b.XactTime, float64(b.Xacts))
	a.QueryTime = weighted(a.QueryTime, float64(a.Queries), b.QueryTime, float64(b.Queries))
	a.ServerAssignments += b.ServerAssignments
	a.Xacts += b.Xacts
	a.Queries += b.Queries
	a.Received += b.Received
	a.Sent += b.Sent
	a.WaitTime += b.WaitTime // per second: a sum
	a.ClientParses += b.ClientParses
	a.ServerParses += b.ServerParses
	a.Binds += b.Binds
}

func weighted(a time.Duration, wa float64, b time.Duration, wb float64) time.Duration {
	if wa+wb == 0 {
		return max(a, b)
	}
	return time.Duration((float64(a)*wa + float64(b)*wb) / (wa + wb))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
