package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/integration/proxytest"
)

// writeSelfSignedCert writes a fresh self-signed ECDSA certificate for 127.0.0.1 and localhost and its
// key to a temporary directory and returns their paths.
func writeSelfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "tenantproxy test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// withTLS configures the proxy's certificate and tls_mode.
func withTLS(certFile, keyFile, mode string) func(*config.Config) {
	return func(c *config.Config) {
		c.Listen.TLSCertFile, c.Listen.TLSKeyFile, c.Listen.TLSMode = certFile, keyFile, mode
	}
}

// proxyURL is a URL through p for user, password and database, with the query string query.
func proxyURL(p *proxytest.Proxy, user, password, database, query string) string {
	u := url.URL{Scheme: "postgresql", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), Path: "/" + database, RawQuery: query}
	return u.String()
}

// TestTLSRequiredWithSCRAMAndChannelBinding runs a proxy with tls_mode "require": a plain connection is
// refused with 28000, TLS works with SCRAM-SHA-256 and with SCRAM-SHA-256-PLUS (channel_binding=require,
// for pgx and for psql), in both pool modes.
func TestTLSRequiredWithSCRAMAndChannelBinding(t *testing.T) {
	certFile, keyFile := writeSelfSignedCert(t)
	for _, pm := range poolModes {
		t.Run(string(pm), func(t *testing.T) {
			p := startProxy(t, pm, withTLS(certFile, keyFile, config.TLSRequire))
			ctx := testContext(t, 30*time.Second)
			alice := func(query string) string {
				return proxyURL(p, "alice@acme", proxytest.Password, proxytest.Database, query)
			}

			t.Run("PlainRefused", func(t *testing.T) {
				conn, err := dialPgx(ctx, alice("sslmode=disable"), pgx.QueryExecModeCacheStatement, nil)
				if err == nil {
					conn.Close(ctx)
					t.Fatal("a plain connection was accepted under tls_mode require")
				}
				if got := sqlstate(err); got != "28000" || !strings.Contains(errorMessage(err), "TLS") {
					t.Fatalf("plain connection: want SQLSTATE 28000 saying TLS is required, got %q: %v", got, err)
				}
			})
			for _, c := range []struct{ name, query string }{
				{"SCRAM", "sslmode=require"},
				{"SCRAMWithChannelBinding", "sslmode=require&channel_binding=require"},
			} {
				t.Run(c.name, func(t *testing.T) {
					conn := connectPgx(t, ctx, alice(c.query), pgx.QueryExecModeCacheStatement)
					if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
						t.Fatalf("connection is %T, not TLS", conn.PgConn().Conn())
					}
					wantIdentity(t, ctx, conn, "acme")
				})
			}
			t.Run("WrongPasswordOverTLS", func(t *testing.T) {
				conn, err := dialPgx(ctx, proxyURL(p, "alice@acme", "wrong", proxytest.Database, "sslmode=require&channel_binding=require"), pgx.QueryExecModeCacheStatement, nil)
				if err == nil {
					conn.Close(ctx)
					t.Fatal("a wrong password was accepted")
				}
				if got := sqlstate(err); got != "28P01" {
					t.Fatalf("wrong password over TLS: want SQLSTATE 28P01, got %q: %v", got, err)
				}
			})
			t.Run("PsqlWithChannelBinding", func(t *testing.T) {
				out, errOut, err := runPsql(t, alice("sslmode=require&channel_binding=require"), nil,
					"-c", `\conninfo`,
					"-c", "SELECT current_user || '|' || string_agg(DISTINCT tenant, ',') FROM employees")
				if err != nil {
					t.Fatalf("psql over TLS with channel binding: %v\n%s", err, errOut)
				}
				if !strings.Contains(out, "SSL connection") || !strings.HasSuffix(out, "\ntenant_acme|acme\n") {
					t.Fatalf("psql over TLS printed %q, want an SSL connection seeing acme's rows", out)
				}
			})
		})
	}
}

// scramVerifier returns PostgreSQL's SCRAM-SHA-256 verifier of password.
func scramVerifier(t *testing.T, password string) string {
	t.Helper()
	const iter = 4096
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iter, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key")))
}

// withUserPassword sets the configured password of user.
func withUserPassword(user, password string) func(*config.Config) {
	return func(c *config.Config) {
		for i := range c.Users {
			if c.Users[i].Name == user {
				c.Users[i].Password = password
			}
		}
	}
}

// TestEveryAuthMethodRightAndWrong connects with the right password, a wrong one and as an unknown user
// under every [auth] method: a wrong password and an unknown user get the same 28P01 message; cleartext
// passwords need TLS unless allow_cleartext_without_tls is set.
func TestEveryAuthMethodRightAndWrong(t *testing.T) {
	certFile, keyFile := writeSelfSignedCert(t)
	type setup struct {
		name      string
		method    string
		sslmode   string
		configure func(*config.Config)
	}
	setups := []setup{
		{"trust", config.AuthTrust, "disable", nil},
		{"password/TLS", config.AuthPassword, "require", nil},
		{"password/PlainAllowed", config.AuthPassword, "disable", func(c *config.Config) { c.Auth.AllowCleartextWithoutTLS = true }},
		{"md5", config.AuthMD5, "disable", nil},
		{"md5/SCRAMVerifierGetsSCRAM", config.AuthMD5, "disable", withUserPassword("alice", scramVerifier(t, proxytest.Password))},
		{"scram-sha-256", config.AuthSCRAM, "disable", nil},
		{"scram-sha-256/Verifier", config.AuthSCRAM, "disable", withUserPassword("alice", scramVerifier(t, proxytest.Password))},
		{"scram-sha-256/TLS", config.AuthSCRAM, "require", nil},
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			// A proxy per method: its failure limiter counts only this method's attempts.
			p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
				c.Auth.Method = s.method
				withTLS(certFile, keyFile, config.TLSAllow)(c)
				if s.configure != nil {
					s.configure(c)
				}
			})
			ctx := testContext(t, 30*time.Second)
			query := "sslmode=" + s.sslmode
			connect := func(user, password string) error {
				conn, err := dialPgx(ctx, proxyURL(p, user, password, proxytest.Database, query), pgx.QueryExecModeCacheStatement, nil)
				if err != nil {
					return err
				}
				defer conn.Close(ctx)
				id, err := whoAmI(ctx, conn)
				if err == nil && (id.user != "tenant_acme" || id.tenants != "acme") {
					err = fmt.Errorf("connected as %s seeing rows of %q, want tenant_acme and acme's", id.user, id.tenants)
				}
				return err
			}
			if err := connect("alice@acme", proxytest.Password); err != nil {
				t.Fatalf("right password: %v", err)
			}
			if s.method == config.AuthTrust {
				if err := connect("alice@acme", "anything"); err != nil {
					t.Fatalf("trust with any password: %v", err)
				}
				err := connect("ghost@acme", "anything")
				if got := sqlstate(err); got != "28P01" {
					t.Fatalf("trust, unknown user: want SQLSTATE 28P01, got %q: %v", got, err)
				}
				return
			}
			errWrong := connect("alice@acme", "wrong")
			errUnknown := connect("ghost@acme", proxytest.Password)
			for _, c := range []struct {
				what string
				err  error
				user string
			}{{"wrong password", errWrong, "alice@acme"}, {"unknown user", errUnknown, "ghost@acme"}} {
				if got := sqlstate(c.err); got != "28P01" {
					t.Fatalf("%s: want SQLSTATE 28P01, got %q: %v", c.what, got, c.err)
				}
				if want := fmt.Sprintf("password authentication failed for user %q", c.user); errorMessage(c.err) != want {
					t.Fatalf("%s: message %q, want %q", c.what, errorMessage(c.err), want)
				}
			}
		})
	}

	t.Run("password/PlainRefused", func(t *testing.T) {
		p := startProxy(t, config.ModeTransaction, func(c *config.Config) {
			c.Auth.Method = config.AuthPassword
			withTLS(certFile, keyFile, config.TLSAllow)(c)
		})
		ctx := testContext(t, 10*time.Second)
		conn, err := dialPgx(ctx, proxyURL(p, "alice@acme", proxytest.Password, proxytest.Database, "sslmode=disable"), pgx.QueryExecModeCacheStatement, nil)
		if err == nil {
			conn.Close(ctx)
			t.Fatal("a cleartext password was asked for on a plain connection")
		}
		if got := sqlstate(err); got != "28000" || !strings.Contains(errorMessage(err), "TLS") {
			t.Fatalf("cleartext without TLS: want SQLSTATE 28000 saying TLS is needed, got %q: %v", got, err)
		}
	})
}

// TestTenantResolution connects with every combination of user name and database that names, or fails
// to name, a tenant: the tenant comes from user@tenant or from the database, a user must be bound to it,
// and there is never a default tenant.
func TestTenantResolution(t *testing.T) {
	cases := []struct {
		name       string
		resolve    []string
		user, db   string
		wantTenant string
		wantCodes  []string // any of these SQLSTATEs
	}{
		{name: "UserAtTenant", user: "alice@acme", db: proxytest.Database, wantTenant: "acme"},
		{name: "UserAtTenantDatabaseIsTenant", user: "alice@acme", db: "acme", wantTenant: "acme"},
		{name: "UserAtOtherTenant", user: "bob@globex", db: proxytest.Database, wantTenant: "globex"},
		{name: "ByDatabase", user: "alice", db: "acme", wantTenant: "acme"},
		{name: "ReaderOfBothTenants", user: "reader@globex", db: proxytest.Database, wantTenant: "globex"},
		{name: "UnknownTenant", user: "alice@initech", db: proxytest.Database, wantCodes: []string{"3D000"}},
		{name: "UnknownTenantByDatabase", user: "alice", db: "initech", wantCodes: []string{"3D000"}},
		{name: "UserBoundToAnotherTenant", user: "alice@globex", db: proxytest.Database, wantCodes: []string{"28000"}},
		{name: "UserBoundToAnotherTenantByDatabase", user: "alice", db: "globex", wantCodes: []string{"28000"}},
		{name: "UserBoundToNoTenant", user: "nobody@acme", db: proxytest.Database, wantCodes: []string{"28000"}},
		{name: "DatabaseOfAnotherTenant", user: "alice@acme", db: "globex", wantCodes: []string{"28000", "3D000"}},
		{name: "NoTenantNamedNeverDefaults", user: "alice", db: proxytest.Database, wantCodes: []string{"28000", "3D000"}},
		{name: "NoTenantNoDatabase", user: "alice", db: "alice", wantCodes: []string{"28000", "3D000"}},
		{name: "DatabaseResolutionOff", resolve: []string{"user"}, user: "alice", db: "acme", wantCodes: []string{"28000"}},
		{name: "UserResolutionOff", resolve: []string{"database"}, user: "alice@acme", db: proxytest.Database, wantCodes: []string{"28000", "28P01", "3D000"}},
	}
	ctx := testContext(t, 60*time.Second)
	// One proxy per [tenancy] resolve setting, shared by the cases that use it.
	proxies := map[string]*proxytest.Proxy{}
	for _, c := range cases {
		key := strings.Join(c.resolve, ",")
		if proxies[key] == nil {
			proxies[key] = fx.Start(t, func(cfg *config.Config) {
				if c.resolve != nil {
					cfg.Tenancy.Resolve = c.resolve
				}
			})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := proxies[strings.Join(c.resolve, ",")]
			conn, err := dialPgx(ctx, proxyURL(p, c.user, proxytest.Password, c.db, "sslmode=disable"), pgx.QueryExecModeCacheStatement, nil)
			if c.wantTenant != "" {
				if err != nil {
					t.Fatalf("%s to database %s: %v", c.user, c.db, err)
				}
				defer conn.Close(ctx)
				id, err := whoAmI(ctx, conn)
				if err != nil {
					t.Fatal(err)
				}
				if id.setting != c.wantTenant || id.tenants != c.wantTenant {
					t.Fatalf("%s to database %s: tenant %q seeing rows of %q, want %s", c.user, c.db, id.setting, id.tenants, c.wantTenant)
				}
				return
			}
			if err == nil {
				id, _ := whoAmI(ctx, conn)
				conn.Close(ctx)
				t.Fatalf("%s to database %s was accepted as %+v; want SQLSTATE %v", c.user, c.db, id, c.wantCodes)
			}
			got := sqlstate(err)
			for _, want := range c.wantCodes {
				if got == want {
					return
				}
			}
			t.Fatalf("%s to database %s: want SQLSTATE %v, got %q: %v", c.user, c.db, c.wantCodes, got, err)
		})
	}
}
