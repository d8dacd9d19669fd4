package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lib/pq"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
	"github.com/tenantproxy/tenantproxy/policy"
)

// The tests of this file compare what a client gets through the proxy with what it gets from the same
// PostgreSQL reached directly as the same tenant role (issue 15: indistinguishable from PostgreSQL).

// directURL is the backend database reached as the pool role, which the direct connections switch to the
// tenant's role and context exactly as the proxy does.
func directURL() string {
	return fmt.Sprintf("postgresql://%s:%s@%s/%s?sslmode=disable", fx.Base.Backend.User, url.QueryEscape(fx.Base.Backend.Password),
		net.JoinHostPort(fx.Cluster.Host, fmt.Sprint(fx.Cluster.Port)), proxytest.Database)
}

// tenantSetup is what the proxy runs to put a backend in tenant's context.
func tenantSetup(tenant string) string {
	for _, t := range fx.Base.Tenants {
		if t.Name == tenant {
			return policy.ContextFor(fx.Base, t).SetupSQL()
		}
	}
	panic("no tenant " + tenant)
}

// dialDirect connects to the server directly with startup params, in tenant's context; the caller closes it.
func dialDirect(ctx context.Context, tenant string, mode pgx.QueryExecMode, params map[string]string) (*pgx.Conn, error) {
	conn, err := dialPgx(ctx, directURL(), mode, params)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, tenantSetup(tenant), pgx.QueryExecModeSimpleProtocol); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func connectDirect(t *testing.T, ctx context.Context, tenant string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	conn, err := dialDirect(ctx, tenant, mode, nil)
	if err != nil {
		t.Fatalf("direct connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// pgErr returns the PostgreSQL error of err, failing the test when there is none.
func pgErr(t *testing.T, what string, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: want a PostgreSQL error, got %v", what, err)
	}
	return pe
}

// Errors the server itself would raise reach the client as the server raises them: the same SQLSTATE and
// message, no tenantproxy prefix, through the simple and the extended protocol, pgx and lib/pq.
func TestServerErrorsReachTheClientAsTheServerRaisesThem(t *testing.T) {
	stmts := []string{"SELECT 1 +", "SELEKT 1", "SELECT 'unterminated", "SELECT 1 FROM employees WHERE"}
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 60*time.Second)
			for _, em := range []struct {
				name string
				mode pgx.QueryExecMode
			}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeExec}} {
				t.Run("pgx/"+em.name, func(t *testing.T) {
					via := connectPgx(t, ctx, p.TenantURL("acme"), em.mode)
					direct := connectDirect(t, ctx, "acme", em.mode)
					for _, sql := range stmts {
						_, perr := via.Exec(ctx, sql)
						_, derr := direct.Exec(ctx, sql)
						got, want := pgErr(t, "proxy "+sql, perr), pgErr(t, "direct "+sql, derr)
						if got.Code != want.Code || got.Message != want.Message || got.Hint != want.Hint || got.Severity != want.Severity {
							t.Errorf("%q: proxy %s %s %q (hint %q), server %s %s %q (hint %q)", sql, got.Severity, got.Code, got.Message, got.Hint,
								want.Severity, want.Code, want.Message, want.Hint)
						}
					}
				})
			}
			t.Run("pgx/multiple commands in a prepared statement", func(t *testing.T) {
				via := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeExec)
				direct := connectDirect(t, ctx, "acme", pgx.QueryExecModeExec)
				_, perr := via.Prepare(ctx, "two", "SELECT 1; SELECT 2")
				_, derr := direct.Prepare(ctx, "two", "SELECT 1; SELECT 2")
				got, want := pgErr(t, "proxy", perr), pgErr(t, "direct", derr)
				if got.Code != want.Code || got.Message != want.Message {
					t.Errorf("proxy %s %q, server %s %q", got.Code, got.Message, want.Code, want.Message)
				}
			})
			t.Run("lib/pq", func(t *testing.T) {
				db := openPQ(t, p.TenantURL("acme"))
				_, err := db.ExecContext(ctx, "SELECT 1 +")
				var qe *pq.Error
				if !errors.As(err, &qe) || string(qe.Code) != pgerrcode.SyntaxError || qe.Message != "syntax error at end of input" {
					t.Errorf("lib/pq got %v, want the server's 42601 syntax error at end of input", err)
				}
			})
			t.Run("own refusal keeps its prefix", func(t *testing.T) {
				via := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
				_, err := via.Exec(ctx, "SET ROLE tenant_globex")
				if pe := pgErr(t, "SET ROLE", err); pe.Code != pgerrcode.InsufficientPrivilege || !strings.HasPrefix(pe.Message, "tenantproxy: ") {
					t.Errorf("SET ROLE: %s %q, want tenantproxy's own 42501", pe.Code, pe.Message)
				}
			})
		})
	}
}

// showAll reads settings with SHOW, each in its own statement.
func showAll(t *testing.T, ctx context.Context, conn *pgx.Conn, names []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+n).Scan(&v); err != nil {
			t.Fatalf("SHOW %s: %v", n, err)
		}
		out[n] = v
	}
	return out
}

// Startup parameters and options that SET could change are in force on every lease, exactly as the
// server applies them; the tenant's context stays the tenant's.
func TestStartupSettingsAreInForceAsOnTheServer(t *testing.T) {
	params := map[string]string{
		"statement_timeout":                   "1234ms",
		"idle_in_transaction_session_timeout": "3s",
		"options":                             `-c default_transaction_isolation=serializable --lock-timeout=2s -c work_mem=8MB`,
		"DateStyle":                           "ISO, DMY",
		"application_name":                    "dropin",
	}
	names := []string{"statement_timeout", "idle_in_transaction_session_timeout", "default_transaction_isolation", "transaction_isolation",
		"lock_timeout", "work_mem", "DateStyle", "application_name"}
	direct, err := dialDirect(testContext(t, 30*time.Second), "acme", pgx.QueryExecModeSimpleProtocol, params)
	if err != nil {
		t.Fatal(err)
	}
	want := showAll(t, testContext(t, 30*time.Second), direct, names)
	direct.Close(context.Background())
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, func(c *config.Config) { c.Backend.PoolSize = 1; c.Listen.RelayThreads = 1 })
			ctx := testContext(t, 60*time.Second)
			for _, em := range execModes[:2] {
				conn, err := dialPgx(ctx, p.TenantURL("acme"), em.mode, params)
				if err != nil {
					t.Fatalf("%s: connect: %v", em.name, err)
				}
				for i := 0; i < 3; i++ {
					if got := showAll(t, ctx, conn, names); fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("%s, transaction %d: through the proxy %v, on the server %v", em.name, i+1, got, want)
					}
					wantIdentity(t, ctx, conn, "acme")
					if pm == config.ModeTransaction {
						other := connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeSimpleProtocol)
						if got := showAll(t, ctx, other, []string{"statement_timeout"}); got["statement_timeout"] != "0" {
							t.Errorf("another client on the same backend sees statement_timeout %s", got["statement_timeout"])
						}
						other.Close(ctx)
					}
				}
				conn.Close(ctx)
			}
			t.Run("psql PGOPTIONS", func(t *testing.T) {
				out, errOut, err := runPsql(t, p.TenantURL("acme"), []string{"PGOPTIONS=-c statement_timeout=1234ms --lock-timeout=2s"},
					"-c", "SHOW statement_timeout", "-c", "SHOW lock_timeout")
				fields := strings.Fields(out)
				if err != nil || len(fields) != 2 || fields[0] != want["statement_timeout"] || fields[1] != want["lock_timeout"] {
					t.Errorf("psql with PGOPTIONS shows %q (%v %s), want %s and %s", out, err, errOut, want["statement_timeout"], want["lock_timeout"])
				}
			})
			t.Run("lib/pq", func(t *testing.T) {
				db := openPQ(t, p.TenantURL("acme")+"&statement_timeout=1234ms&options="+url.QueryEscape("-c work_mem=8MB"))
				var st, wm string
				if err := db.QueryRowContext(ctx, "SELECT current_setting('statement_timeout'), current_setting('work_mem')").Scan(&st, &wm); err != nil ||
					st != want["statement_timeout"] || wm != want["work_mem"] {
					t.Errorf("lib/pq: statement_timeout %q work_mem %q (%v), want %s and %s", st, wm, err, want["statement_timeout"], want["work_mem"])
				}
			})
		})
	}
}

// A startup parameter the server does not know fails the connection with the server's own FATAL error;
// one the tenant may not change fails it with 42501 naming it.
func TestStartupParametersRefusedAsTheServerRefusesThem(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, nil)
	ctx := testContext(t, 60*time.Second)
	for _, params := range []map[string]string{{"foo": "1"}, {"options": "-c no_such_setting=1"}, {"options": "-c statement_timeout"}} {
		_, perr := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol, params)
		_, derr := dialDirect(ctx, "acme", pgx.QueryExecModeSimpleProtocol, params)
		got, want := pgErr(t, fmt.Sprint("proxy ", params), perr), pgErr(t, fmt.Sprint("direct ", params), derr)
		if got.Severity != "FATAL" || got.Code != want.Code || got.Message != want.Message {
			t.Errorf("%v: proxy %s %s %q, server %s %s %q", params, got.Severity, got.Code, got.Message, want.Severity, want.Code, want.Message)
		}
	}
	_, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol, map[string]string{"session_replication_role": "replica"})
	if pe := pgErr(t, "session_replication_role", err); pe.Severity != "FATAL" || pe.Code != pgerrcode.InsufficientPrivilege || !strings.Contains(pe.Message, "session_replication_role") {
		t.Errorf("session_replication_role: %s %s %q, want FATAL 42501 naming it", pe.Severity, pe.Code, pe.Message)
	}
}

// application_name and client_encoding read back, at startup and with SHOW, as the server gives them.
func TestApplicationNameAndClientEncodingAsTheServerReports(t *testing.T) {
	cases := []map[string]string{
		nil,
		{"application_name": ""},
		{"application_name": "app"},
		{"client_encoding": "eucjp"},
		{"client_encoding": "utf-8"},
	}
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 60*time.Second)
			for _, params := range cases {
				// pgx runs the simple protocol only in UTF8.
				via, err := dialPgx(ctx, p.TenantURL("acme"), pgx.QueryExecModeExec, params)
				if err != nil {
					t.Fatalf("%v: %v", params, err)
				}
				direct, err := dialDirect(ctx, "acme", pgx.QueryExecModeExec, params)
				if err != nil {
					t.Fatalf("%v: direct: %v", params, err)
				}
				for _, name := range []string{"application_name", "client_encoding"} {
					if got, want := via.PgConn().ParameterStatus(name), direct.PgConn().ParameterStatus(name); got != want {
						t.Errorf("%v: ParameterStatus %s %q, server %q", params, name, got, want)
					}
				}
				if got, want := showAll(t, ctx, via, []string{"application_name", "client_encoding"}), showAll(t, ctx, direct, []string{"application_name", "client_encoding"}); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%v: SHOW through the proxy %v, on the server %v", params, got, want)
				}
				via.Close(ctx)
				direct.Close(ctx)
			}
			t.Run("lib/pq fallback_application_name", func(t *testing.T) {
				db := openPQ(t, p.TenantURL("acme")+"&fallback_application_name=fb")
				var v string
				if err := db.QueryRowContext(ctx, "SHOW application_name").Scan(&v); err != nil || v != "fb" {
					t.Errorf("application_name %q (%v), want the fallback fb", v, err)
				}
			})
			t.Run("psql", func(t *testing.T) {
				out, errOut, err := runPsql(t, p.TenantURL("acme"), nil, "-c", "SHOW application_name")
				if err != nil || strings.TrimSpace(out) != "psql" {
					t.Errorf("psql's application_name %q (%v %s), want psql", out, err, errOut)
				}
			})
		})
	}
}

// LISTEN and NOTIFY in one simple query are each kept within the tenant.
func TestListenAndNotifyInOneQuery(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 30*time.Second)
			acme := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
			globex := connectPgx(t, ctx, p.TenantURL("globex"), pgx.QueryExecModeSimpleProtocol)
			if _, err := globex.Exec(ctx, "LISTEN dropin"); err != nil {
				t.Fatal(err)
			}
			if _, err := acme.Exec(ctx, "LISTEN dropin; NOTIFY dropin, 'x'"); err != nil {
				t.Fatalf("LISTEN and NOTIFY in one query: %v", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			n, err := acme.WaitForNotification(wctx)
			cancel()
			if err != nil || n.Channel != "dropin" || n.Payload != "x" {
				t.Fatalf("notification %+v (%v), want dropin x", n, err)
			}
			wctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
			n, err = globex.WaitForNotification(wctx)
			cancel()
			if err == nil {
				t.Fatalf("globex heard acme's notification %+v", n)
			}
		})
	}
}

// Bytes that are not a startup packet get no answer at all, from the proxy as from the server.
func TestStartupGarbageClosedWithoutAWord(t *testing.T) {
	p := startProxy(t, config.ModeTransaction, nil)
	read := func(addr string, garbage []byte) ([]byte, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(garbage); err != nil {
			return nil, err
		}
		return io.ReadAll(c)
	}
	for _, garbage := range [][]byte{{'X', 0, 0, 0, 4}, []byte("GET / HTTP/1.1\r\n\r\n"), {0, 0, 0, 4}} {
		got, err := read(net.JoinHostPort(p.Host, fmt.Sprint(p.Port)), garbage)
		if err != nil && !isConnReset(err) {
			t.Fatalf("%q: proxy: %v", garbage, err)
		}
		want, err := read(net.JoinHostPort(fx.Cluster.Host, fmt.Sprint(fx.Cluster.Port)), garbage)
		if err != nil && !isConnReset(err) {
			t.Fatalf("%q: server: %v", garbage, err)
		}
		if len(got) != 0 || len(want) != 0 {
			t.Errorf("%q: the proxy answered %q, the server %q; want nothing", garbage, got, want)
		}
	}
}

func isConnReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

// Statements that are harmless get the server's own answer.
func TestHarmlessStatementsAnsweredAsTheServerAnswers(t *testing.T) {
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, nil)
			ctx := testContext(t, 30*time.Second)
			notices := func(url string, direct bool) []string {
				var got []string
				cfg, err := pgx.ParseConfig(url)
				if err != nil {
					t.Fatal(err)
				}
				cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
				cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { got = append(got, n.Code+" "+n.Message) }
				conn, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				if direct {
					if _, err := conn.Exec(ctx, tenantSetup("acme")); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS plpgsql"); err != nil {
					t.Fatalf("CREATE EXTENSION IF NOT EXISTS plpgsql: %v", err)
				}
				return got
			}
			if got, want := notices(p.TenantURL("acme"), false), notices(directURL(), true); fmt.Sprint(got) != fmt.Sprint(want) || len(want) != 1 {
				t.Errorf("CREATE EXTENSION IF NOT EXISTS of an installed extension: proxy %q, server %q", got, want)
			}
			conn := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeSimpleProtocol)
			_, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS hstore")
			if pe := pgErr(t, "CREATE EXTENSION IF NOT EXISTS hstore", err); pe.Code != pgerrcode.InsufficientPrivilege && pe.Code != pgerrcode.UndefinedFile {
				t.Errorf("a missing extension: %s %q, want the server's refusal", pe.Code, pe.Message)
			}
			ext := connectPgx(t, ctx, p.TenantURL("acme"), pgx.QueryExecModeExec)
			for _, c := range []*pgx.Conn{conn, ext} {
				for _, reset := range []string{"RESET search_path", "SET search_path TO DEFAULT"} {
					if _, err := c.Exec(ctx, "SET search_path TO public"); err != nil {
						t.Fatal(err)
					}
					if _, err := c.Exec(ctx, reset); err != nil {
						t.Fatalf("%s: %v", reset, err)
					}
					for i := 0; i < 2; i++ {
						wantIdentity(t, ctx, c, "acme")
					}
				}
			}
		})
	}
}
