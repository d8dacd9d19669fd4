package isolation

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// login is a client's claim at startup: user, database and password.
type login struct {
	name               string
	user, db, password string
	// tenant is the tenant whose context the session must have, or "" when the login must fail with
	// one of codes.
	tenant string
	codes  string
}

// identityCases claim another tenant at login: none may end in a session of a tenant the user is not
// bound to, and none falls back to a default tenant.
func identityCases() []login {
	db := proxytest.Database
	pw := proxytest.Password
	return []login{
		{name: "alice@acme", user: "alice@acme", db: db, password: pw, tenant: "acme"},
		{name: "alice@acme asking for database globex", user: "alice@acme", db: "globex", password: pw, codes: "28000"},
		{name: "alice with her password as alice@globex", user: "alice@globex", db: db, password: pw, codes: "28000"},
		{name: "bob's name for acme", user: "bob@acme", db: db, password: pw, codes: "28000"},
		{name: "bob@globex asking for database acme", user: "bob@globex", db: "acme", password: pw, codes: "28000"},
		{name: "a user bound to no tenant", user: "nobody@acme", db: db, password: pw, codes: "28000"},
		{name: "a user bound to no tenant by database", user: "nobody", db: "acme", password: pw, codes: "28000"},
		{name: "an unknown tenant", user: "alice@nosuch", db: db, password: pw, codes: "3D000|28000"},
		{name: "a tenant in upper case", user: "alice@ACME", db: db, password: pw, codes: "3D000|28000"},
		{name: "a tenant with a trailing space", user: "alice@acme ", db: db, password: pw, codes: "3D000|28000"},
		{name: "no tenant at all", user: "alice", db: db, password: pw, codes: "3D000|28000"},
		{name: "an empty tenant", user: "alice@", db: db, password: pw, codes: "3D000|28000"},
		{name: "an empty user", user: "@acme", db: db, password: pw, codes: "28000|28P01"},
		{name: "two tenants", user: "alice@globex@acme", db: db, password: pw, codes: "28000|28P01"},
		{name: "a user name in upper case", user: "ALICE@acme", db: db, password: pw, codes: "28P01|28000"},
		{name: "a wrong password", user: "alice@acme", db: db, password: "wrong", codes: "28P01"},
		{name: "alice by database acme", user: "alice", db: "acme", password: pw, tenant: "acme"},
		{name: "alice by database globex", user: "alice", db: "globex", password: pw, codes: "28000"},
		{name: "alice@acme asking for a database named as her user", user: "alice@acme", db: "alice@acme", password: pw, tenant: "acme"},
		{name: "the pool role", user: fx.Base.Backend.User, db: db, password: "pool-secret", codes: "3D000|28000|28P01"},
		{name: "the pool role for acme", user: fx.Base.Backend.User + "@acme", db: db, password: "pool-secret", codes: "28P01|28000"},
		{name: "the tenant role", user: "tenant_acme@acme", db: db, password: pw, codes: "28P01|28000"},
		{name: "the superuser", user: fx.Cluster.User + "@acme", db: db, password: fx.Cluster.Password, codes: "28P01|28000"},
		{name: "reader bound to every tenant", user: "reader@globex", db: db, password: pw, tenant: "globex"},
	}
}

// A client is only ever in the context of a tenant its user is bound to: another tenant's database or
// name, a wrong password, a user bound to none and an unknown tenant are refused at login with 28000,
// 28P01 or 3D000, never turned into a default tenant.
func TestIdentity(t *testing.T) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			for _, c := range identityCases() {
				t.Run(c.name, func(t *testing.T) {
					ctx := testContext(t, 30*time.Second)
					cfg, err := pgconn.ParseConfig(p.TenantURL(attacker))
					if err != nil {
						t.Fatal(err)
					}
					cfg.User, cfg.Database, cfg.Password = c.user, c.db, c.password
					conn, err := pgconn.ConnectConfig(ctx, cfg)
					if c.tenant == "" {
						if err == nil {
							st, _ := probe(ctx, conn)
							conn.Close(ctx)
							t.Fatalf("LEAK: login %q to database %q succeeded (context %+v); want SQLSTATE %s", c.user, c.db, st, c.codes)
						}
						var pe *pgconn.PgError
						if !errors.As(err, &pe) || !codeMatches(pe.Code, c.codes) {
							t.Errorf("login %q to database %q: want SQLSTATE %s, got %v", c.user, c.db, c.codes, err)
						}
						return
					}
					if err != nil {
						t.Fatalf("login %q to database %q: %v", c.user, c.db, err)
					}
					defer conn.Close(ctx)
					st, err := probe(ctx, conn)
					if err != nil {
						t.Fatalf("probe: %v", err)
					}
					checkTenant(t, "login "+c.user, st, c.tenant)
				})
			}
		})
	}
}

// startupCases send startup parameters other than user and database: the proxy ignores those that make the
// tenant's context (role, session_authorization, search_path, the tenant setting) and
// standard_conforming_strings, and applies the settings SET may change, so none changes the role,
// search_path or tenant setting, and an unknown
// protocol option gets NegotiateProtocolVersion and then a working session.
var startupCases = []struct {
	name   string
	params map[string]string
	// check runs on the session; nil checks the tenant context only.
	check []step
	// codes, when set, are the SQLSTATEs the login must fail with instead.
	codes string
}{
	{name: "options -c search_path", params: map[string]string{"options": "-c search_path=globex"}},
	{name: "options -c role", params: map[string]string{"options": "-c role=tenant_globex"}},
	{name: "options with long forms", params: map[string]string{"options": "--search_path=globex --tenantproxy.tenant=globex -c session_authorization=tenantproxy_pool"}},
	{name: "role", params: map[string]string{"role": "tenant_globex"}},
	{name: "search_path", params: map[string]string{"search_path": "globex"}},
	{name: "the tenant setting", params: map[string]string{"tenantproxy.tenant": "globex"}},
	{name: "session_authorization", params: map[string]string{"session_authorization": "tenantproxy_pool"}},
	{name: "replication", params: map[string]string{"replication": "database"}},
	{name: "standard_conforming_strings off", params: map[string]string{"standard_conforming_strings": "off"}, check: parityChecks},
	{name: "default_transaction_read_only", params: map[string]string{"default_transaction_read_only": "on"}, check: []step{okRows("SHOW transaction_read_only", "on")}}, // applied, as PostgreSQL applies it (issue 15)
	{name: "unknown protocol option", params: map[string]string{"_pq_.hostile": "1"}},
	{name: "application_name hiding a statement", params: map[string]string{"application_name": "hostile'; RESET ROLE; --"},
		check: []step{okRows("SHOW application_name", "hostile'; RESET ROLE; --")}},
	{name: "DateStyle hiding a statement", params: map[string]string{"DateStyle": "ISO'; RESET ROLE; SET ROLE tenant_globex; --"}, codes: "22023|08006|08P01"},
	{name: "TimeZone hiding a statement", params: map[string]string{"TimeZone": "UTC'; RESET ROLE; --"}, codes: "22023|08006|08P01"},
	{name: "client_encoding SJIS", params: map[string]string{"client_encoding": "SJIS"}, codes: "22023"},
	{name: "client_encoding sjis", params: map[string]string{"client_encoding": "sjis"}, codes: "22023"},
	{name: "client_encoding Shift_JIS", params: map[string]string{"client_encoding": "Shift_JIS"}, codes: "22023"},
	{name: "client_encoding WIN932", params: map[string]string{"client_encoding": "WIN932"}, codes: "22023"},
	{name: "client_encoding BIG5", params: map[string]string{"client_encoding": "big5"}, codes: "22023"},
	{name: "client_encoding GBK", params: map[string]string{"client_encoding": "GBK"}, codes: "22023"},
	{name: "client_encoding LATIN1", params: map[string]string{"client_encoding": "LATIN1"}, check: []step{okRows("SHOW client_encoding", "LATIN1")}},
}

// Startup parameters never change a session's tenant context: everything but the tracked client settings
// is dropped, values are quoted when replayed, and client-only encodings are refused at login.
func TestStartupParameters(t *testing.T) {
	for _, s := range setups {
		t.Run(s.String(), func(t *testing.T) {
			p := startProxy(t, s, nil)
			for _, c := range startupCases {
				t.Run(c.name, func(t *testing.T) {
					ctx := testContext(t, 30*time.Second)
					cfg, err := pgconn.ParseConfig(p.TenantURL(attacker))
					if err != nil {
						t.Fatal(err)
					}
					for k, v := range c.params {
						cfg.RuntimeParams[k] = v
					}
					conn, err := pgconn.ConnectConfig(ctx, cfg)
					if err == nil && c.codes != "" {
						// A setting the server rejects may only fail at the first lease.
						o := simple(ctx, conn, "SELECT current_user")
						err = o.err
						if err == nil {
							conn.Close(ctx)
							t.Fatalf("startup %v: want SQLSTATE %s, got a session running as %v", c.params, c.codes, o.rows)
						}
					}
					if c.codes != "" {
						var pe *pgconn.PgError
						if !errors.As(err, &pe) || !codeMatches(pe.Code, c.codes) {
							t.Errorf("startup %v: want SQLSTATE %s, got %v", c.params, c.codes, err)
						}
						if conn != nil {
							conn.Close(ctx)
						}
						probeTenant(t, ctx, p, attacker, "after a refused startup")
						return
					}
					if err != nil {
						t.Fatalf("startup %v: %v", c.params, err)
					}
					defer conn.Close(ctx)
					for i, st := range c.check {
						runStep(t, ctx, conn, "check "+strconv.Itoa(i+1), st)
					}
					st, err := probe(ctx, conn)
					if err != nil {
						t.Fatalf("probe: %v", err)
					}
					checkTenant(t, "session started with "+c.name, st, attacker)
					conn.Close(ctx)
					probeTenant(t, ctx, p, "globex", "after the session started with "+c.name)
				})
			}
		})
	}
}

// An unknown protocol option in the startup packet gets a NegotiateProtocolVersion that lists it, before
// authentication; a request for protocol 3.2 is answered with 3.0.
func TestStartupNegotiatesProtocol(t *testing.T) {
	p := startProxy(t, setups[0], nil)
	for _, c := range []struct {
		name    string
		version uint32
		params  map[string]string
		options []string
	}{
		{name: "unknown option", version: pgproto3.ProtocolVersion30, params: map[string]string{"_pq_.hostile": "1"}, options: []string{"_pq_.hostile"}},
		{name: "protocol 3.2", version: pgproto3.ProtocolVersion32, params: map[string]string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fe := pgproto3.NewFrontend(conn, conn)
			params := map[string]string{"user": "alice@acme", "database": proxytest.Database}
			for k, v := range c.params {
				params[k] = v
			}
			fe.Send(&pgproto3.StartupMessage{ProtocolVersion: c.version, Parameters: params})
			if err := fe.Flush(); err != nil {
				t.Fatal(err)
			}
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			npv, ok := msg.(*pgproto3.NegotiateProtocolVersion)
			if !ok {
				t.Fatalf("want NegotiateProtocolVersion, got %T", msg)
			}
			// PostgreSQL sends the whole version, 3.0, where the protocol documents the minor version.
			if npv.NewestMinorProtocol&0xffff != 0 || !slices.Equal(npv.UnrecognizedOptions, c.options) {
				t.Errorf("NegotiateProtocolVersion: version %#x, options %v; want 3.0, %v", npv.NewestMinorProtocol, npv.UnrecognizedOptions, c.options)
			}
			if msg, err := fe.Receive(); err != nil {
				t.Fatal(err)
			} else if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok {
				t.Errorf("after NegotiateProtocolVersion: want AuthenticationSASL, got %T", msg)
			}
		})
	}
	// pgconn asking for 3.2 accepts 3.0 and gets a session in acme's context.
	ctx := testContext(t, 10*time.Second)
	cfg, err := pgconn.ParseConfig(p.TenantURL(attacker) + "&max_protocol_version=3.2")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	st, err := probe(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	checkTenant(t, "protocol 3.2 session", st, attacker)
}
