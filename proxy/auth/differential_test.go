package auth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// sslFiles writes a server certificate and key that the OS user postgres can read and returns the
// postgresql.conf lines that turn TLS on with them.
func sslFiles(t *testing.T) []string {
	t.Helper()
	_, tc := testCert(t, x509.ECDSAWithSHA256)
	dir, err := os.MkdirTemp("", "scram-diff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	key, err := x509.MarshalPKCS8PrivateKey(tc.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"server.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.Certificate[0]}),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 { // the server runs as postgres and insists on owning its key
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return []string{"ssl = on", "ssl_cert_file = '" + filepath.Join(dir, "server.crt") + "'",
		"ssl_key_file = '" + filepath.Join(dir, "server.key") + "'"}
}

// TestSCRAMServerAgreesWithPostgreSQLForPgx is a differential test of the SCRAM server: pgx's client
// (pgconn) logs in with the same passwords to a real PostgreSQL and to Authenticate, over plain TCP
// (SCRAM-SHA-256) and over TLS with channel binding required (SCRAM-SHA-256-PLUS), and must get the same
// answer from both. The roles' passwords are chosen where SASLprep has work to do: normalization,
// mapping, prohibited and unassigned code points, bidirectional text. Authenticate is given each password
// three ways: PostgreSQL's own stored verifier, the plain text (our SASLprep and key derivation), and
// our NewSCRAMVerifier; and our verifier is also installed at PostgreSQL for the same role.
func TestSCRAMServerAgreesWithPostgreSQLForPgx(t *testing.T) {
	c := pgtest.New(t, pgtest.Options{Auth: "scram-sha-256", Conf: sslFiles(t)})
	passwords := []string{
		"correct horse",
		"p\u00e4ss",        // composed
		"pa\u0308ss",       // decomposed: NFKC composes it
		"\u2168",           // roman numeral nine: NFKC gives "IX"
		"\uff21\uff22",     // fullwidth AB
		"a\u00a0b\u00e9",   // no-break space, mapped to a space
		"I\u00adX\u00e9",   // soft hyphen, mapped to nothing
		"\u2168\u0007",     // a control character: prohibited, used as-is
		"\u2168\u0221",     // assigned only after Unicode 3.2: unassigned for SASLprep, used as-is
		"\u05d0\u05d1",     // right-to-left only
		"\u05d0a\u05d1",    // right-to-left mixed with left-to-right: used as-is
		"\ufe8d\u0627",     // Arabic presentation form
		"\ue000\u00e9",     // private use: prohibited
		"\U0001f600 smile", // unassigned in 3.2
	}
	type role struct{ name, pw, pgVerifier string }
	var roles []role
	var ddl strings.Builder
	for i, pw := range passwords {
		name := fmt.Sprintf("r%d", i)
		roles = append(roles, role{name: name, pw: pw})
		ours, err := NewSCRAMVerifier(pw)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&ddl, "CREATE ROLE %s LOGIN PASSWORD %s; CREATE ROLE %s_ours LOGIN PASSWORD %s;\n",
			name, pgident.QuoteLiteral(pw), name, pgident.QuoteLiteral(ours))
	}
	c.MustExec(t, "postgres", ddl.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{}
	for i := range roles {
		r := &roles[i]
		if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", r.name).Scan(&r.pgVerifier); err != nil {
			t.Fatal(err)
		}
		ours, _ := NewSCRAMVerifier(r.pw)
		users[r.name+"_pg"] = r.pgVerifier
		users[r.name+"_plain"] = r.pw
		users[r.name+"_ours"] = ours
	}
	conn.Close(ctx)
	srv := startServer(t, serverOptions{method: MethodSCRAM, users: users, tls: true})
	transports := []struct{ name, extra string }{
		{"SCRAM-SHA-256", "sslmode=disable"},
		{"SCRAM-SHA-256-PLUS", "sslmode=require channel_binding=require"},
	}
	for _, r := range roles {
		attempts := []string{r.pw, norm.NFKC.String(r.pw), norm.NFC.String(r.pw), r.pw + "x"}
		seen := map[string]bool{}
		for _, attempt := range attempts {
			if seen[attempt] {
				continue
			}
			seen[attempt] = true
			for _, tr := range transports {
				t.Run(fmt.Sprintf("%s %+q with %+q", tr.name, r.pw, attempt), func(t *testing.T) {
					pgErr := pgconnLogin(t, c.DSN("postgres", r.name)+" "+tr.extra+" password="+dsnQuote(attempt))
					pgOK := pgErr == nil
					if pgErr != nil {
						if ce := asClientError(t, pgErr); ce.code != "28P01" {
							t.Fatalf("PostgreSQL refused with %+v, not a password failure", ce)
						}
					}
					if attempt == r.pw+"x" && pgOK {
						t.Fatalf("PostgreSQL took a wrong password; the test cannot tell anything")
					}
					if ours := pgconnLogin(t, c.DSN("postgres", r.name+"_ours")+" "+tr.extra+" password="+dsnQuote(attempt)); (ours == nil) != pgOK {
						t.Errorf("PostgreSQL with NewSCRAMVerifier's verifier: login %v; with its own: %v", ours, pgErr)
					}
					for _, kind := range []string{"_pg", "_plain", "_ours"} {
						err := pgconnLogin(t, srv.dsn(r.name+kind, attempt, tr.extra))
						serverErr := srv.result()
						if (err == nil) != pgOK || (serverErr == nil) != pgOK {
							t.Errorf("secret %s: Authenticate %v (client: %v); PostgreSQL: %v", kind[1:], serverErr, err, pgErr)
						}
					}
				})
			}
		}
	}
}

func dsnQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
