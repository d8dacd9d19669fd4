package admin

import "strings"

// The SHOW commands. Column names, order and types are pgbouncer 1.25's (src/admin.c, src/stats.c);
// columns tenantproxy adds come after pgbouncer's.

// Column lists, exported through Columns for tests and tools.
var (
	poolsCols = cols("ssiiiiiiiiiiiiiss",
		"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
		"sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
		"maxwait", "maxwait_us", "pool_mode", "load_balance_hosts")
	statsCols = cols("sNNNNNNNNNNNNNNNNNNNNNN", "database",
		"total_server_assignment_count", "total_xact_count", "total_query_count", "total_received", "total_sent",
		"total_xact_time", "total_query_time", "total_wait_time", "total_client_parse_count",
		"total_server_parse_count", "total_bind_count",
		"avg_server_assignment_count", "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
		"avg_xact_time", "avg_query_time", "avg_wait_time", "avg_client_parse_count",
		"avg_server_parse_count", "avg_bind_count")
	statsTotalsCols = cols("sNNNNNNNNNNN", "database", "server_assignment_count", "xact_count", "query_count",
		"bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time", "client_parse_count",
		"server_parse_count", "bind_count")
	statsAveragesCols = cols("sNNNNNNNNNNN", "database", "server_assignment_count", "xact_count", "query_count",
		"bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time", "avg_client_parse_count",
		"avg_server_parse_count", "avg_bind_count")
	socketCols = cols("ssssssisiTTiiississii",
		"type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
		"application_name", "prepared_statements", "id")
	databasesCols = cols("ssissiiiissiiiiii",
		"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool_size",
		"server_lifetime", "pool_mode", "load_balance_hosts", "max_connections", "current_connections",
		"max_client_connections", "current_client_connections", "paused", "disabled")
	usersCols = cols("ssssiiii", "name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections",
		"current_connections", "max_user_client_connections", "current_client_connections")
	listsCols   = cols("si", "list", "items")
	configCols  = cols("ssss", "key", "value", "default", "changeable")
	versionCols = cols("s", "version")
	stateCols   = cols("ss", "key", "value")
	memCols     = cols("siiii", "name", "size", "used", "free", "memtotal")
	tenantsCols = cols("sqqqNNqqqqqqqssss",
		"tenant", "clients", "waiting", "backends", "xact_per_sec", "query_per_sec", "avg_wait_us",
		"max_wait_us", "refused", "max_clients", "max_backends", "weight", "statement_timeout_ms",
		"suspended", "paused", "pool_mode", "migration_version")
	totalsCols = cols("sN", "name", "value")
	peersCols  = cols("isii", "peer_id", "host", "port", "pool_size")
)

// Columns returns the columns of SHOW name (lower case), or nil for an unknown name.
func Columns(name string) []Column {
	if s, ok := shows[name]; ok {
		return s.cols
	}
	return nil
}

type show struct {
	cols []Column
	// relay: the command needs the relay's sections of the snapshot.
	relay bool
	fill  func(r *result, s *Snapshot)
}

var shows map[string]show

func init() {
	shows = map[string]show{
		"pools":          {poolsCols, true, fillPools},
		"stats":          {statsCols, true, fillStats},
		"stats_totals":   {statsTotalsCols, true, fillStatsTotals},
		"stats_averages": {statsAveragesCols, true, fillStatsAverages},
		"totals":         {totalsCols, true, fillTotals},
		"clients":        {socketCols, true, func(r *result, s *Snapshot) { fillSockets(r, s.Clients) }},
		"servers":        {socketCols, true, func(r *result, s *Snapshot) { fillSockets(r, s.Servers) }},
		"mem":            {memCols, true, fillMem},
		"tenants":        {tenantsCols, true, fillTenants},
		"databases":      {databasesCols, false, fillDatabases},
		"users":          {usersCols, false, fillUsers},
		"lists":          {listsCols, false, fillLists},
		"config":         {configCols, false, fillConfig},
		"version":        {versionCols, false, func(r *result, s *Snapshot) { r.add(s.Version) }},
		"state":          {stateCols, false, fillState},
		"peers":          {peersCols, false, fillPeers},
	}
}

func fillPools(r *result, s *Snapshot) {
	for _, p := range s.Pools {
		r.add(p.Database, p.User, p.ClActive, p.ClWaiting, p.ClActiveCancelReq, p.ClWaitingCancelReq,
			p.SvActive, p.SvActiveCancel, p.SvBeingCanceled, p.SvIdle, p.SvUsed, p.SvTested, p.SvLogin,
			int64(p.MaxWait.Seconds()), usec(p.MaxWait%1e9), p.PoolMode, orNull(p.LoadBalanceHosts))
	}
}

func counterValues(c Counters) []any {
	return []any{c.ServerAssignments, c.Xacts, c.Queries, c.Received, c.Sent,
		usec(c.XactTime), usec(c.QueryTime), usec(c.WaitTime), c.ClientParses, c.ServerParses, c.Binds}
}

func fillStats(r *result, s *Snapshot) {
	for _, st := range s.Stats {
		row := append([]any{st.Database}, counterValues(st.Totals)...)
		r.add(append(row, counterValues(st.Averages)...)...)
	}
}

func fillStatsTotals(r *result, s *Snapshot) {
	for _, st := range s.Stats {
		r.add(append([]any{st.Database}, counterValues(st.Totals)...)...)
	}
}

func fillStatsAverages(r *result, s *Snapshot) {
	for _, st := range s.Stats {
		r.add(append([]any{st.Database}, counterValues(st.Averages)...)...)
	}
}

// fillTotals is SHOW TOTALS: the stats of every tenant summed, one name/value row each.
func fillTotals(r *result, s *Snapshot) {
	var tot, avg Counters
	for _, st := range s.Stats {
		addCounters(&tot, st.Totals)
		addCounters(&avg, st.Averages)
	}
	names := []string{"server_assignment_count", "xact_count", "query_count", "received", "sent",
		"xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"}
	for i, v := range counterValues(tot) {
		r.add("total_"+names[i], v)
	}
	for i, v := range counterValues(avg) {
		r.add("avg_"+names[i], v)
	}
}

func addCounters(a *Counters, b Counters) {
	a.ServerAssignments += b.ServerAssignments
	a.Xacts += b.Xacts
	a.Queries += b.Queries
	a.Received += b.Received
	a.Sent += b.Sent
	a.XactTime += b.XactTime
	a.QueryTime += b.QueryTime
	a.WaitTime += b.WaitTime
	a.ClientParses += b.ClientParses
	a.ServerParses += b.ServerParses
	a.Binds += b.Binds
}

func fillSockets(r *result, list []Socket) {
	for _, k := range list {
		typ, db := "C", k.Database
		if k.Server {
			typ = "S"
		}
		if db == "" {
			db = "(nodb)"
		}
		user := k.User
		if user == "" {
			user = "(nouser)"
		}
		r.add(typ, user, db, "none", k.State, k.Addr, k.Port, k.LocalAddr, k.LocalPort,
			timeText(k.ConnectTime), timeText(k.RequestTime), int64(k.Wait.Seconds()), usec(k.Wait%1e9),
			boolInt(k.CloseNeeded), k.Ptr, k.Link, k.RemotePID, k.TLS, k.ApplicationName, k.PreparedStatements, k.ID)
	}
}

func fillMem(r *result, s *Snapshot) {
	for _, m := range s.Mem {
		r.add(m.Name, m.Size, m.Used, m.Free, m.MemTotal)
	}
}

func fillTenants(r *result, s *Snapshot) {
	for _, t := range s.Tenants {
		r.add(t.Name, t.Clients, t.Waiting, t.Backends, t.XactPerSec, t.QueryPerSec, usec(t.AvgWait), usec(t.MaxWait),
			t.Refused, t.MaxClients, t.MaxBackends, t.Weight, t.StatementTimeout.Milliseconds(),
			yesNo(t.Suspended), yesNo(t.Paused), poolModeOf(s, t.Name), orNull(t.MigrationVersion))
	}
}

// poolModeOf is the pool mode of a tenant's pool ("" NULL when the snapshot has no pool for it).
func poolModeOf(s *Snapshot, tenant string) any {
	for _, p := range s.Pools {
		if p.Database == tenant {
			return orNull(p.PoolMode)
		}
	}
	return null{}
}

func fillDatabases(r *result, s *Snapshot) {
	for _, d := range s.Databases {
		r.add(d.Name, d.Host, d.Port, d.Database, orNull(d.ForceUser), d.PoolSize, d.MinPoolSize, d.ReservePoolSize,
			int64(d.ServerLifetime.Seconds()), orNull(d.PoolMode), null{}, d.MaxConnections, d.CurrentConnections,
			d.MaxClientConnections, d.CurrentClientConnections, boolInt(d.Paused), boolInt(d.Disabled))
	}
}

func fillUsers(r *result, s *Snapshot) {
	for _, u := range s.Users {
		// pool_size and reserve_pool_size are text, empty when the user has none of its own (pgbouncer).
		r.add(u.Name, "", "", orNull(u.PoolMode), u.MaxUserConnections, u.CurrentConnections,
			u.MaxUserClientConnections, u.CurrentClientConnections)
	}
}

func fillLists(r *result, s *Snapshot) {
	for _, l := range s.Lists {
		r.add(l.Name, l.Items)
	}
}

func fillConfig(r *result, s *Snapshot) {
	for _, c := range s.Config {
		r.add(c.Key, c.Value, c.Default, yesNo(c.Changeable))
	}
}

func fillPeers(r *result, s *Snapshot) {
	for _, p := range s.Peers {
		r.add(p.ID, p.Host, p.Port, p.PoolSize)
	}
}

func fillState(r *result, s *Snapshot) {
	r.add("active", yesNo(!s.State.Paused && !s.State.Suspended))
	r.add("paused", yesNo(s.State.Paused))
	r.add("suspended", yesNo(s.State.Suspended))
}

// fakeParams are the settings pgbouncer answers SHOW and SET of without acting on them, for drivers
// that ask.
var fakeParams = []struct{ name, value string }{
	{"client_encoding", "UTF-8"},
	{"default_transaction_isolation", "read committed"},
	{"standard_conforming_strings", "on"},
	{"datestyle", "ISO"},
	{"timezone", "GMT"},
}

func fakeParam(name string) (string, string, bool) {
	for _, p := range fakeParams {
		if strings.EqualFold(p.name, name) {
			return p.name, p.value, true
		}
	}
	return "", "", false
}

const helpText = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n" +
	"\tSHOW PEERS|LISTS|MEM|STATE\n" +
	"\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n" +
	"\tSHOW TENANTS\n" +
	"\tSET key = arg\n" +
	"\tSET <tenant>.max_clients|max_backends|weight|statement_timeout = arg\n" +
	"\tRELOAD\n" +
	"\tPAUSE [<db>]\n" +
	"\tRESUME [<db>]\n" +
	"\tDISABLE <db>\n" +
	"\tENABLE <db>\n" +
	"\tRECONNECT [<db>]\n" +
	"\tKILL [<db>]\n" +
	"\tKILL_CLIENT <client_id>\n" +
	"\tSHUTDOWN\n" +
	"\tSHUTDOWN WAIT_FOR_CLIENTS\n" +
	"\tWAIT_CLOSE [<db>]"
