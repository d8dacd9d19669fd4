package admin

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// fakeSource is a Source with a fixed snapshot that records the commands it is asked to carry out.
type fakeSource struct {
	mu      sync.Mutex
	snap    Snapshot
	cmds    []Command
	fail    error
	snapErr error
}

func (f *fakeSource) Snapshot(context.Context) (*Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.snapErr != nil {
		return nil, f.snapErr
	}
	s := f.snap
	return &s, nil
}

func (f *fakeSource) Control(_ context.Context, c Command) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, c)
	return f.fail
}

func (f *fakeSource) commands() []Command {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Command(nil), f.cmds...)
}

var t0 = time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC)

func sampleSnapshot() Snapshot {
	return Snapshot{
		Taken:   t0,
		Version: "tenantproxy 9.9.9",
		State:   State{Paused: true},
		Config:  []Setting{{Key: "max_client_conn", Value: "100", Default: "10000"}, {Key: "auth_type", Value: "md5", Default: "scram-sha-256", Changeable: true}},
		Users:   []User{{Name: "alice", CurrentClientConnections: 3}},
		Databases: []Database{{Name: "acme", Host: "db", Port: 5432, Database: "app", ForceUser: "pool", PoolSize: 7,
			ServerLifetime: time.Hour, PoolMode: "transaction", MaxConnections: 7, CurrentConnections: 2, Paused: true}},
		Lists: []ListItem{{Name: "databases", Items: 1}, {Name: "users", Items: 1}},
		Peers: []Peer{{ID: 2, Host: "127.0.0.1", Port: 6502}},
		Pools: []Pool{{Database: "acme", User: "pool", ClActive: 4, ClWaiting: 2, SvActive: 3, SvIdle: 1,
			MaxWait: 2*time.Second + 345*time.Microsecond, PoolMode: "transaction"}},
		Clients: []Socket{{User: "alice", Database: "acme", State: "active", Addr: "10.0.0.1", Port: 5555, LocalAddr: "10.0.0.2",
			LocalPort: 6432, ConnectTime: t0, Wait: 1500 * time.Millisecond, Ptr: "c1", ApplicationName: "psql", ID: 42}},
		Servers: []Socket{{Server: true, User: "pool", Database: "acme", State: "idle", Addr: "db", Port: 5432, RemotePID: 999, Ptr: "s1", ID: 7}},
		Stats: []Stats{{Database: "acme", Totals: Counters{Xacts: 10, Queries: 20, WaitTime: 3 * time.Millisecond, Binds: 5},
			Averages: Counters{Xacts: 1, Queries: 2, XactTime: 250 * time.Microsecond}}},
		Tenants: []Tenant{{Name: "acme", Clients: 6, Waiting: 2, Backends: 3, XactPerSec: 1.5, QueryPerSec: 2.25, AvgWait: time.Millisecond,
			MaxWait: 2 * time.Second, Refused: 4, MaxClients: 50, MaxBackends: 7, Weight: 2, StatementTimeout: 30 * time.Second, Paused: true, MigrationVersion: "0003"}},
		Mem: []Mem{{Name: "clients", Size: 100, Used: 2, Free: 8, MemTotal: 1000}},
	}
}

// client is a console connection driven at the protocol level.
type client struct {
	t    *testing.T
	fe   *pgproto3.Frontend
	conn net.Conn
	done chan struct{}
}

func dial(t *testing.T, src Source, admins, stats []string, user string) *client {
	t.Helper()
	c := New(src, "9.9.9", zap.NewNop())
	c.SetUsers(admins, stats)
	srv, cli := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Serve(srv, user, "127.0.0.1:5000")
		srv.Close()
	}()
	t.Cleanup(func() {
		cli.Close()
		c.Close()
		<-done
	})
	cl := &client{t: t, fe: pgproto3.NewFrontend(cli, cli), conn: cli, done: done}
	cli.SetDeadline(time.Now().Add(30 * time.Second))
	return cl
}

// login reads the console's greeting up to ReadyForQuery and returns the parameters.
func (c *client) login() map[string]string {
	c.t.Helper()
	params := map[string]string{}
	for {
		m, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("login: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ParameterStatus:
			params[m.Name] = m.Value
		case *pgproto3.ReadyForQuery:
			return params
		case *pgproto3.BackendKeyData:
		default:
			c.t.Fatalf("login: unexpected %T", m)
		}
	}
}

type resultSet struct {
	fields []pgproto3.FieldDescription
	rows   [][]*string
	tag    string
}

func (r resultSet) names() []string {
	out := make([]string, len(r.fields))
	for i, f := range r.fields {
		out[i] = string(f.Name)
	}
	return out
}

func (r resultSet) col(row int, name string) *string {
	for i, f := range r.fields {
		if string(f.Name) == name {
			return r.rows[row][i]
		}
	}
	return nil
}

type reply struct {
	sets    []resultSet
	err     *pgproto3.ErrorResponse
	notices []*pgproto3.NoticeResponse
	empty   bool
}

// query sends q and reads up to ReadyForQuery.
func (c *client) query(q string) reply {
	c.t.Helper()
	c.fe.Send(&pgproto3.Query{String: q})
	if err := c.fe.Flush(); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

func (c *client) read() reply {
	c.t.Helper()
	var r reply
	var cur *resultSet
	for {
		m, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.RowDescription:
			cur = &resultSet{fields: append([]pgproto3.FieldDescription(nil), m.Fields...)}
			for i := range cur.fields {
				cur.fields[i].Name = append([]byte(nil), m.Fields[i].Name...)
			}
		case *pgproto3.DataRow:
			row := make([]*string, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					s := string(v)
					row[i] = &s
				}
			}
			cur.rows = append(cur.rows, row)
		case *pgproto3.CommandComplete:
			if cur == nil {
				cur = &resultSet{}
			}
			cur.tag = string(m.CommandTag)
			r.sets = append(r.sets, *cur)
			cur = nil
		case *pgproto3.ErrorResponse:
			e := *m
			r.err = &e
		case *pgproto3.NoticeResponse:
			n := *m
			r.notices = append(r.notices, &n)
		case *pgproto3.EmptyQueryResponse:
			r.empty = true
		case *pgproto3.ReadyForQuery:
			return r
		default:
			c.t.Fatalf("read: unexpected %T", m)
		}
	}
}

// closed reports whether the console ended the connection.
func (c *client) closed() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

func str(p *string) string {
	if p == nil {
		return "<NULL>"
	}
	return *p
}

// The columns of pgbouncer 1.25 (src/admin.c, src/stats.c), by name, order and type: 's' text, 'i' int4,
// 'q' int8, 'N' numeric, 'T' timestamp as text.
func TestShowColumnsAreThoseOfPgbouncer125(t *testing.T) {
	socket := "type user database replication state addr port local_addr local_port connect_time request_time wait wait_us close_needed ptr link remote_pid tls application_name prepared_statements id"
	cases := []struct {
		cmd, names, types string
	}{
		{"SHOW POOLS", "database user cl_active cl_waiting cl_active_cancel_req cl_waiting_cancel_req sv_active sv_active_cancel sv_being_canceled sv_idle sv_used sv_tested sv_login maxwait maxwait_us pool_mode load_balance_hosts", "ssiiiiiiiiiiiiiss"},
		{"SHOW STATS", "database total_server_assignment_count total_xact_count total_query_count total_received total_sent total_xact_time total_query_time total_wait_time total_client_parse_count total_server_parse_count total_bind_count avg_server_assignment_count avg_xact_count avg_query_count avg_recv avg_sent avg_xact_time avg_query_time avg_wait_time avg_client_parse_count avg_server_parse_count avg_bind_count", "sNNNNNNNNNNNNNNNNNNNNNN"},
		{"SHOW STATS_TOTALS", "database server_assignment_count xact_count query_count bytes_received bytes_sent xact_time query_time wait_time client_parse_count server_parse_count bind_count", "sNNNNNNNNNNN"},
		{"SHOW STATS_AVERAGES", "database server_assignment_count xact_count query_count bytes_received bytes_sent xact_time query_time wait_time avg_client_parse_count avg_server_parse_count avg_bind_count", "sNNNNNNNNNNN"},
		{"SHOW CLIENTS", socket, "ssssssisiTTiiississii"},
		{"SHOW SERVERS", socket, "ssssssisiTTiiississii"},
		{"SHOW DATABASES", "name host port database force_user pool_size min_pool_size reserve_pool_size server_lifetime pool_mode load_balance_hosts max_connections current_connections max_client_connections current_client_connections paused disabled", "ssissiiiissiiiiii"},
		{"SHOW USERS", "name pool_size reserve_pool_size pool_mode max_user_connections current_connections max_user_client_connections current_client_connections", "ssssiiii"},
		{"SHOW LISTS", "list items", "si"},
		{"SHOW CONFIG", "key value default changeable", "ssss"},
		{"SHOW VERSION", "version", "s"},
		{"SHOW STATE", "key value", "ss"},
		{"SHOW MEM", "name size used free memtotal", "siiii"},
		{"SHOW TOTALS", "name value", "sN"},
		{"SHOW PEERS", "peer_id host port pool_size", "isii"},
		{"SHOW TENANTS", "tenant clients waiting backends xact_per_sec query_per_sec avg_wait_us max_wait_us refused max_clients max_backends weight statement_timeout_ms suspended paused pool_mode migration_version", "sqqqNNqqqqqqqssss"},
	}
	oid := map[byte]uint32{'s': 25, 'T': 25, 'i': 23, 'q': 20, 'N': 1700}
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, nil, []string{"watcher"}, "watcher")
	c.login()
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			r := c.query(tc.cmd)
			if r.err != nil {
				t.Fatalf("%s: %s %s", tc.cmd, r.err.Code, r.err.Message)
			}
			if len(r.sets) != 1 || r.sets[0].tag != "SHOW" {
				t.Fatalf("%s: want one result tagged SHOW, got %+v", tc.cmd, r.sets)
			}
			got := r.sets[0]
			if strings.Join(got.names(), " ") != tc.names {
				t.Errorf("%s columns:\n got %s\nwant %s", tc.cmd, strings.Join(got.names(), " "), tc.names)
			}
			for i, f := range got.fields {
				if i < len(tc.types) && f.DataTypeOID != oid[tc.types[i]] {
					t.Errorf("%s column %s: type OID %d, want %d", tc.cmd, f.Name, f.DataTypeOID, oid[tc.types[i]])
				}
			}
			if len(got.rows) == 0 {
				t.Errorf("%s: no rows from a snapshot that has some", tc.cmd)
			}
			for _, row := range got.rows {
				if len(row) != len(got.fields) {
					t.Errorf("%s: row of %d values for %d columns", tc.cmd, len(row), len(got.fields))
				}
			}
		})
	}
}

func TestShowValuesComeFromTheSnapshot(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, []string{"root"}, nil, "root")
	c.login()
	cases := []struct {
		cmd, col string
		row      int
		want     string
	}{
		{"SHOW POOLS", "cl_active", 0, "4"},
		{"SHOW POOLS", "cl_waiting", 0, "2"},
		{"SHOW POOLS", "maxwait", 0, "2"},
		{"SHOW POOLS", "maxwait_us", 0, "345"},
		{"SHOW POOLS", "load_balance_hosts", 0, "<NULL>"},
		{"SHOW CLIENTS", "type", 0, "C"},
		{"SHOW CLIENTS", "connect_time", 0, "2026-12-08 01:02:03 UTC"},
		{"SHOW CLIENTS", "request_time", 0, "<NULL>"},
		{"SHOW CLIENTS", "wait", 0, "1"},
		{"SHOW CLIENTS", "wait_us", 0, "500000"},
		{"SHOW CLIENTS", "id", 0, "42"},
		{"SHOW SERVERS", "type", 0, "S"},
		{"SHOW SERVERS", "remote_pid", 0, "999"},
		{"SHOW STATS", "total_xact_count", 0, "10"},
		{"SHOW STATS", "total_wait_time", 0, "3000"},
		{"SHOW STATS", "avg_xact_time", 0, "250"},
		{"SHOW STATS_TOTALS", "bind_count", 0, "5"},
		{"SHOW STATS_AVERAGES", "query_count", 0, "2"},
		{"SHOW DATABASES", "paused", 0, "1"},
		{"SHOW DATABASES", "server_lifetime", 0, "3600"},
		{"SHOW DATABASES", "current_connections", 0, "2"},
		{"SHOW USERS", "current_client_connections", 0, "3"},
		{"SHOW USERS", "pool_mode", 0, "<NULL>"},
		{"SHOW CONFIG", "changeable", 1, "yes"},
		{"SHOW CONFIG", "default", 0, "10000"},
		{"SHOW STATE", "value", 0, "no"},  // active
		{"SHOW STATE", "value", 1, "yes"}, // paused
		{"SHOW VERSION", "version", 0, "tenantproxy 9.9.9"},
		{"SHOW MEM", "memtotal", 0, "1000"},
		{"SHOW TENANTS", "xact_per_sec", 0, "1.50"},
		{"SHOW TENANTS", "max_wait_us", 0, "2000000"},
		{"SHOW TENANTS", "refused", 0, "4"},
		{"SHOW TENANTS", "statement_timeout_ms", 0, "30000"},
		{"SHOW TENANTS", "paused", 0, "yes"},
		{"SHOW TENANTS", "pool_mode", 0, "transaction"},
		{"SHOW TENANTS", "migration_version", 0, "0003"},
		{"SHOW TOTALS", "value", 1, "10"}, // total_xact_count
		{"SHOW LISTS", "items", 1, "1"},
		{"SHOW PEERS", "port", 0, "6502"},
	}
	for _, tc := range cases {
		r := c.query(tc.cmd)
		if r.err != nil {
			t.Fatalf("%s: %s", tc.cmd, r.err.Message)
		}
		if got := str(r.sets[0].col(tc.row, tc.col)); got != tc.want {
			t.Errorf("%s row %d %s = %s, want %s", tc.cmd, tc.row, tc.col, got, tc.want)
		}
	}
	// The values move with the snapshot.
	src.mu.Lock()
	src.snap.Pools[0].ClWaiting = 9
	src.mu.Unlock()
	if got := str(c.query("show pools").sets[0].col(0, "cl_waiting")); got != "9" {
		t.Errorf("after the snapshot changed, cl_waiting = %s, want 9", got)
	}
}

func TestCommandsAreCaseInsensitiveAndSeveralMayShareAQuery(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, []string{"root"}, nil, "root")
	c.login()
	for _, q := range []string{"show version", "Show Version;", "  SHOW\tVERSION ; ", `SHOW "version"`} {
		r := c.query(q)
		if r.err != nil || len(r.sets) != 1 || str(r.sets[0].rows[0][0]) != "tenantproxy 9.9.9" {
			t.Errorf("%q: %+v %v", q, r.sets, r.err)
		}
	}
	r := c.query("SHOW VERSION; SHOW STATE; RELOAD")
	if r.err != nil || len(r.sets) != 3 || r.sets[2].tag != "RELOAD" {
		t.Fatalf("three commands: %+v %v", r.sets, r.err)
	}
	// The first error ends the query; the commands after it do not run.
	before := len(src.commands())
	r = c.query("SHOW VERSION; SHOW NOTHING; RELOAD")
	if r.err == nil || len(r.sets) != 1 || len(src.commands()) != before {
		t.Errorf("an error in the middle: sets %d, err %v, commands run %d", len(r.sets), r.err, len(src.commands())-before)
	}
}

func TestControlCommandsReachTheSource(t *testing.T) {
	cases := []struct {
		q    string
		want Command
		tag  string
	}{
		{"PAUSE", Command{Op: OpPause}, "PAUSE"},
		{"PAUSE acme", Command{Op: OpPause, Tenant: "acme"}, "PAUSE"},
		{"resume acme", Command{Op: OpResume, Tenant: "acme"}, "RESUME"},
		{"RESUME", Command{Op: OpResume}, "RESUME"},
		{"DISABLE acme", Command{Op: OpDisable, Tenant: "acme"}, "DISABLE"},
		{"ENABLE acme", Command{Op: OpEnable, Tenant: "acme"}, "ENABLE"},
		{"KILL acme", Command{Op: OpKill, Tenant: "acme"}, "KILL"},
		{"KILL", Command{Op: OpKill}, "KILL"},
		{"KILL_CLIENT 42", Command{Op: OpKillClient, ClientID: 42}, "KILL_CLIENT"},
		{"RECONNECT", Command{Op: OpReconnect}, "RECONNECT"},
		{`RECONNECT "acme"`, Command{Op: OpReconnect, Tenant: "acme"}, "RECONNECT"},
		{"WAIT_CLOSE acme", Command{Op: OpWaitClose, Tenant: "acme"}, "WAIT_CLOSE"},
		{"RELOAD", Command{Op: OpReload}, "RELOAD"},
		{"SHUTDOWN", Command{Op: OpShutdown}, "SHUTDOWN"},
		{"SHUTDOWN WAIT_FOR_CLIENTS", Command{Op: OpShutdown, WaitForClients: true}, "SHUTDOWN"},
		{"SET max_client_conn = 50", Command{Op: OpSet, Key: "max_client_conn", Value: "50"}, "SET max_client_conn=50"},
		{"SET query_wait_timeout TO '5s'", Command{Op: OpSet, Key: "query_wait_timeout", Value: "5s"}, "SET query_wait_timeout=5s"},
		{"SET acme.max_clients = 5", Command{Op: OpSet, Tenant: "acme", Key: "max_clients", Value: "5"}, "SET acme.max_clients=5"},
		{`SET "acme.statement_timeout" = '30s'`, Command{Op: OpSet, Tenant: "acme", Key: "statement_timeout", Value: "30s"}, "SET acme.statement_timeout=30s"},
	}
	for _, tc := range cases {
		t.Run(tc.q, func(t *testing.T) {
			src := &fakeSource{snap: sampleSnapshot()}
			c := dial(t, src, []string{"root"}, nil, "root")
			c.login()
			r := c.query(tc.q)
			if r.err != nil {
				t.Fatalf("%s: %s %s", tc.q, r.err.Code, r.err.Message)
			}
			if len(r.sets) != 1 || r.sets[0].tag != tc.tag {
				t.Errorf("tag: %+v, want %s", r.sets, tc.tag)
			}
			cmds := src.commands()
			want := tc.want
			want.User = "root"
			if len(cmds) != 1 || cmds[0] != want {
				t.Errorf("source got %+v, want %+v", cmds, want)
			}
		})
	}
}

func TestControlErrorsCarryTheirSQLSTATE(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot(), fail: NoSuchDatabase("nosuch")}
	c := dial(t, src, []string{"root"}, nil, "root")
	c.login()
	r := c.query("PAUSE nosuch")
	if r.err == nil || r.err.Code != pgerrcode.ProtocolViolation || r.err.Message != "no such database: nosuch" {
		t.Errorf("PAUSE nosuch: %+v", r.err)
	}
	src.mu.Lock()
	src.fail = errors.New("boom")
	src.mu.Unlock()
	if r := c.query("RELOAD"); r.err == nil || r.err.Code != pgerrcode.InternalError {
		t.Errorf("a plain error: %+v", r.err)
	}
	src.mu.Lock()
	src.fail = ErrNotAvailable
	src.mu.Unlock()
	if r := c.query("KILL_CLIENT 1"); r.err == nil || r.err.Code != ErrNotAvailable.Code {
		t.Errorf("relay shutting down: %+v", r.err)
	}
}

// Every control command is refused to a stats user before the Source hears of it (pgbouncer once
// shipped a control command open to non-admins).
func TestStatsUsersAreRefusedEveryControlCommand(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, []string{"root"}, []string{"watcher"}, "watcher")
	c.login()
	for _, q := range []string{
		"PAUSE", "PAUSE acme", "RESUME", "RESUME acme", "DISABLE acme", "ENABLE acme", "KILL", "KILL acme",
		"KILL_CLIENT 42", "KILL_CLIENT nonsense", "RECONNECT", "RECONNECT acme", "WAIT_CLOSE", "WAIT_CLOSE acme",
		"RELOAD", "SHUTDOWN", "SHUTDOWN WAIT_FOR_CLIENTS", "SET max_client_conn = 1", "SET acme.max_clients = 1",
		"set auth_type to 'trust'", "show version; pause", "DISABLE", "pause pgbouncer",
	} {
		r := c.query(q)
		if r.err == nil || r.err.Code != pgerrcode.ProtocolViolation || r.err.Message != "admin access needed" {
			t.Errorf("%q by a stats user: %+v", q, r.err)
		}
	}
	if cmds := src.commands(); len(cmds) != 0 {
		t.Errorf("the source carried out commands for a stats user: %+v", cmds)
	}
	// SHOW works for them, and so do the driver settings pgbouncer ignores.
	if r := c.query("SHOW POOLS"); r.err != nil {
		t.Errorf("SHOW POOLS by a stats user: %v", r.err.Message)
	}
	if r := c.query("SET client_encoding = 'UTF8'"); r.err != nil || r.sets[0].tag != "SET" || len(r.notices) != 1 {
		t.Errorf("SET client_encoding by a stats user: %+v %v", r.sets, r.err)
	}
}

func TestNonConsoleUserIsRefusedWith28000(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, []string{"root"}, []string{"watcher"}, "alice")
	m, err := c.fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m.(*pgproto3.ErrorResponse)
	if !ok || e.Code != pgerrcode.InvalidAuthorizationSpecification || e.Severity != "FATAL" {
		t.Fatalf("got %#v", m)
	}
	if !c.closed() {
		t.Error("the console did not end the connection")
	}
}

func TestBadInputGetsPgbouncersErrors(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, []string{"root"}, nil, "root")
	c.login()
	long := strings.Repeat("x", 200)
	cases := []struct {
		q, code, msg string
	}{
		{"SHOW NOTHING", "08P01", "invalid command 'SHOW NOTHING', use SHOW HELP;"},
		{"FROBNICATE", "08P01", "invalid command 'FROBNICATE', use SHOW HELP;"},
		{"SHOW POOLS EXTRA WORDS", "08P01", "invalid command 'SHOW POOLS EXTRA WORDS', use SHOW HELP;"},
		{"SHOW 'pools", "08P01", "invalid command 'SHOW 'pools', use SHOW HELP;"},
		{"SELECT * FROM pools", "08P01", "invalid command 'SELECT * FROM pools', use SHOW HELP;"},
		{"PAUSE " + long, "08P01", "bad arguments"},
		{"SET x = '" + strings.Repeat("y", 300) + "'", "08P01", "bad arguments"},
		{"KILL_CLIENT abc", "08P01", "invalid client pointer supplied"},
		{"KILL_CLIENT -1", "08P01", "invalid client pointer supplied"},
		{"DISABLE", "08P01", "a database is required"},
		{"ENABLE", "08P01", "a database is required"},
		{"RELOAD now", "08P01", "invalid command 'RELOAD now', use SHOW HELP;"},
		{"SHUTDOWN WAIT_FOR_SERVERS", "08P01", "invalid command 'SHUTDOWN WAIT_FOR_SERVERS', use SHOW HELP;"},
		{"PAUSE pgbouncer", "08P01", "cannot pause admin db: pgbouncer"},
		{"KILL tenantproxy", "08P01", "cannot kill admin db: tenantproxy"},
		{strings.Repeat("SHOW VERSION;", 100), "54000", ""},
	}
	for _, tc := range cases {
		r := c.query(tc.q)
		if r.err == nil || r.err.Code != tc.code || (tc.msg != "" && r.err.Message != tc.msg) {
			t.Errorf("%.40q: got %+v, want %s %q", tc.q, r.err, tc.code, tc.msg)
		}
	}
	if cmds := src.commands(); len(cmds) != 0 {
		t.Errorf("bad input reached the source: %+v", cmds)
	}
	if r := c.query(" ; ;"); !r.empty || r.err != nil {
		t.Errorf("an empty query: %+v", r)
	}
	// Still usable after all that.
	if r := c.query("SHOW VERSION"); r.err != nil {
		t.Errorf("after bad input: %v", r.err.Message)
	}
}

func TestExtendedProtocolIsRefusedAndTheClientDropped(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, []string{"root"}, nil, "root")
	c.login()
	c.fe.Send(&pgproto3.Parse{Query: "SHOW POOLS"})
	c.fe.Send(&pgproto3.Sync{})
	c.fe.Flush()
	r := c.read()
	if r.err == nil || r.err.Message != "extended query protocol not supported by admin console" {
		t.Fatalf("Parse: %+v", r.err)
	}
	if !c.closed() {
		t.Error("the console kept the client")
	}
}

func TestGarbageFramesEndTheConnection(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unknown type": {'z', 0, 0, 0, 4},
		"huge length":  {'Q', 0x7f, 0xff, 0xff, 0xff},
		"bad length":   {'Q', 0, 0, 0, 1},
		"NUL in query": {'Q', 0, 0, 0, 8, 'a', 0, 'b', 0},
	} {
		t.Run(name, func(t *testing.T) {
			src := &fakeSource{snap: sampleSnapshot()}
			c := dial(t, src, []string{"root"}, nil, "root")
			c.login()
			go c.conn.Write(frame)
			go func() { // drain whatever the console answers
				b := make([]byte, 4096)
				for {
					if _, err := c.conn.Read(b); err != nil {
						return
					}
				}
			}()
			if !c.closed() {
				t.Error("the console kept a client that sent garbage")
			}
		})
	}
}

func TestRelaySectionsFailWithTheRelaysErrorAndTheRestAnswer(t *testing.T) {
	snap := sampleSnapshot()
	snap.RelayErr = ErrNotAvailable
	src := &fakeSource{snap: snap}
	c := dial(t, src, []string{"root"}, nil, "root")
	c.login()
	for _, q := range []string{"SHOW POOLS", "SHOW STATS", "SHOW STATS_TOTALS", "SHOW STATS_AVERAGES", "SHOW CLIENTS", "SHOW SERVERS", "SHOW MEM", "SHOW TENANTS", "SHOW TOTALS"} {
		if r := c.query(q); r.err == nil || r.err.Code != ErrNotAvailable.Code {
			t.Errorf("%s: %+v", q, r.err)
		}
	}
	for _, q := range []string{"SHOW VERSION", "SHOW CONFIG", "SHOW DATABASES", "SHOW USERS", "SHOW LISTS", "SHOW STATE"} {
		if r := c.query(q); r.err != nil {
			t.Errorf("%s: %s", q, r.err.Message)
		}
	}
	src.mu.Lock()
	src.snapErr = Errorf(pgerrcode.AdminShutdown, "going away")
	src.mu.Unlock()
	if r := c.query("SHOW VERSION"); r.err == nil || r.err.Code != pgerrcode.AdminShutdown {
		t.Errorf("snapshot error: %+v", r.err)
	}
}

func TestShowHelpListsTheCommands(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	c := dial(t, src, nil, []string{"watcher"}, "watcher")
	params := c.login()
	if params["server_version"] != "9.9.9" || params["client_encoding"] != "UTF8" {
		t.Errorf("parameters: %v", params)
	}
	r := c.query("SHOW HELP")
	if r.err != nil || len(r.notices) != 1 || r.notices[0].Message != "Console usage" {
		t.Fatalf("SHOW HELP: %+v", r)
	}
	for _, word := range []string{"SHOW HELP|CONFIG|DATABASES", "SHOW TENANTS", "KILL_CLIENT", "WAIT_CLOSE", "SHUTDOWN WAIT_FOR_CLIENTS"} {
		if !strings.Contains(r.notices[0].Detail, word) {
			t.Errorf("help lacks %q", word)
		}
	}
	if r := c.query("SHOW client_encoding"); r.err != nil || str(r.sets[0].rows[0][0]) != "UTF-8" {
		t.Errorf("SHOW client_encoding: %+v", r)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
