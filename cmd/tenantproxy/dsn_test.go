package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// startupCatcher listens for one client and returns the user and database of its startup packet: what a
// client made of a DSN, without a server behind it.
type startupCatcher struct {
	ln  net.Listener
	got chan map[string]string
}

func newStartupCatcher(t *testing.T) *startupCatcher {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &startupCatcher{ln: ln, got: make(chan map[string]string, 1)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		be := pgproto3.NewBackend(conn, conn)
		for {
			m, err := be.ReceiveStartupMessage()
			if err != nil {
				return
			}
			switch m := m.(type) {
			case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
				conn.Write([]byte{'N'})
				continue
			case *pgproto3.StartupMessage:
				c.got <- m.Parameters
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28000", Message: "startup catcher"})
				be.Flush()
			}
			return
		}
	}()
	return c
}

func (c *startupCatcher) port() string {
	_, p, _ := net.SplitHostPort(c.ln.Addr().String())
	return p
}

// psqlSends runs psql on uri and returns the startup parameters it sent, or fails with psql's words.
func psqlSends(t *testing.T, c *startupCatcher, uri string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	psql := "psql"
	if dir, err := pgtest.BinDir(); err == nil {
		psql = filepath.Join(dir, "psql")
	}
	cmd := exec.CommandContext(ctx, psql, "-X", "-w", "-d", uri, "-c", "SELECT 1")
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "PGPASSFILE="+os.DevNull, "PGSERVICEFILE="+os.DevNull)
	out, _ := cmd.CombinedOutput()
	select {
	case p := <-c.got:
		return p
	case <-ctx.Done():
	default:
	}
	t.Fatalf("psql never connected with %s: %s", uri, out)
	return nil
}

// checkDSN checks that psql (libpq) and pgx both read uri as user and database.
func checkDSN(t *testing.T, uri, user, database string) {
	t.Helper()
	cfg, err := pgconn.ParseConfig(uri)
	if err != nil {
		t.Fatalf("pgx cannot parse %s: %v", uri, err)
	}
	if cfg.User != user || cfg.Database != database {
		t.Errorf("pgx reads %s as user %q database %q, want %q %q", uri, cfg.User, cfg.Database, user, database)
	}
	c := newStartupCatcher(t)
	u := strings.Replace(uri, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), "127.0.0.1:"+c.port(), 1)
	p := psqlSends(t, c, u)
	if p["user"] != user || p["database"] != database {
		t.Errorf("psql reads %s as user %q database %q, want %q %q", uri, p["user"], p["database"], user, database)
	}
}

func TestDSNEncodesUserinfoSoPsqlAndPgxReadIt(t *testing.T) {
	for _, tt := range []struct{ user, password string }{
		{"alice@acme", "secret"}, {"bob@globex", "p@ss:w/rd%"}, {"carol@acme corp", "s p"}, {"dan@münchen", "x"},
	} {
		checkDSN(t, dsn(tt.user, tt.password, "127.0.0.1", "6432", "agentichr"), tt.user, "agentichr")
	}
}

// The DSNs the README and config.toml print work when pasted into psql or given to pgx.
func TestDocumentedDSNsWork(t *testing.T) {
	root, _ := filepath.Abs("../..")
	re := regexp.MustCompile(`postgres(?:ql)?://[^"'\s]+`)
	n := 0
	for _, f := range []string{"README.md", "config.toml", "SECURITY.md"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, uri := range re.FindAllString(string(b), -1) {
			cfg, err := pgconn.ParseConfig(uri)
			if err != nil {
				t.Errorf("%s: pgx cannot parse %s: %v", f, uri, err)
				continue
			}
			checkDSN(t, uri, cfg.User, cfg.Database)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no DSN found in the documentation")
	}
}

// checkPrintedDSNs checks every psql "..." and pgbench "..." DSN that `tenantproxy demo` printed.
func checkPrintedDSNs(t *testing.T, out []byte) {
	t.Helper()
	re := regexp.MustCompile(`(?:psql|pgbench -n -S -T 5) "(postgres(?:ql)?://[^"]+)"`)
	ms := re.FindAllSubmatch(out, -1)
	if len(ms) == 0 {
		t.Fatalf("demo printed no DSN:\n%s", out)
	}
	for _, m := range ms {
		uri := string(m[1])
		cfg, err := pgconn.ParseConfig(uri)
		if err != nil {
			t.Errorf("demo printed %s, which pgx cannot parse: %v", uri, err)
			continue
		}
		// A tenant's user names its tenant (user@tenant); the analytics user connects to database analytics.
		if !strings.Contains(cfg.User, "@") && cfg.Database != config.Analytics {
			t.Errorf("demo printed %s: user %q names no tenant", uri, cfg.User)
		}
		checkDSN(t, uri, cfg.User, cfg.Database)
	}
}
