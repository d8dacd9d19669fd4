package auth

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/lib/pq"
)

// pgconnLogin connects with pgconn and closes the connection; it returns the connection error.
func pgconnLogin(t *testing.T, dsn string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// pqLogin connects with lib/pq and closes the connection; it returns the connection error.
func pqLogin(t *testing.T, dsn string) error {
	t.Helper()
	connector, err := pq.NewConnector(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := connector.Connect(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

// clientError is what a client saw of a failed login.
type clientError struct {
	code, message, detail string
}

// asClientError extracts the ErrorResponse a pgconn or lib/pq client received.
func asClientError(t *testing.T, err error) clientError {
	t.Helper()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return clientError{pgErr.Code, pgErr.Message, pgErr.Detail}
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return clientError{string(pqErr.Code), pqErr.Message, pqErr.Detail}
	}
	t.Fatalf("client error %v (%T) carries no ErrorResponse", err, err)
	return clientError{}
}

// users are the test users: one per kind of secret, all with password "pw".
func testUsers(t *testing.T) map[string]string {
	return map[string]string{
		"plain":   "pw",
		"md5user": "md5" + md5Hex("pw", "md5user"),
		"scram":   testVerifier(t, "pw", 4096),
		// SASLprep maps the no-break space to a space; pgconn's client does the same and composes "a\u0308".
		"unicode": "p\u00e4ss\u00a0word",
	}
}

func TestAuthenticateWithPgconn(t *testing.T) {
	failed := func(user string) clientError {
		return clientError{"28P01", `password authentication failed for user "` + user + `"`, ""}
	}
	tests := []struct {
		name   string
		opts   serverOptions
		user   string
		pw     string
		extra  string       // more connection settings
		want   *clientError // nil: success
		client bool         // the failure is the client's own, not an ErrorResponse
	}{
		{name: "trust ignores the password", opts: serverOptions{method: MethodTrust}, user: "plain", pw: "nope",
			extra: "sslmode=disable"},
		{name: "trust ignores unknown users", opts: serverOptions{method: MethodTrust}, user: "nobody",
			extra: "sslmode=disable"},

		{name: "password over TLS", opts: serverOptions{method: MethodPassword, tls: true}, user: "plain", pw: "pw",
			extra: "sslmode=require"},
		{name: "password over TLS wrong", opts: serverOptions{method: MethodPassword, tls: true}, user: "plain",
			pw: "pW", extra: "sslmode=require", want: ptr(failed("plain"))},
		{name: "password over TLS unknown user", opts: serverOptions{method: MethodPassword, tls: true},
			user: "nobody", pw: "pw", extra: "sslmode=require", want: ptr(failed("nobody"))},
		{name: "password against md5 hash", opts: serverOptions{method: MethodPassword, tls: true}, user: "md5user",
			pw: "pw", extra: "sslmode=require"},
		{name: "password against SCRAM verifier", opts: serverOptions{method: MethodPassword, tls: true},
			user: "scram", pw: "pw", extra: "sslmode=require"},
		{name: "password without TLS refused", opts: serverOptions{method: MethodPassword}, user: "plain", pw: "pw",
			extra: "sslmode=disable", want: &clientError{"28000",
				"cleartext password authentication requires a TLS connection",
				"Connect with TLS (sslmode=require), or set allow_cleartext_without_tls in [auth]."}},
		{name: "password without TLS allowed", opts: serverOptions{method: MethodPassword, allowCleartext: true},
			user: "plain", pw: "pw", extra: "sslmode=disable"},

		{name: "md5 with plain text", opts: serverOptions{method: MethodMD5}, user: "plain", pw: "pw",
			extra: "sslmode=disable require_auth=md5"},
		{name: "md5 with plain text wrong", opts: serverOptions{method: MethodMD5}, user: "plain", pw: "px",
			extra: "sslmode=disable", want: ptr(failed("plain"))},
		{name: "md5 with md5 hash", opts: serverOptions{method: MethodMD5}, user: "md5user", pw: "pw",
			extra: "sslmode=disable require_auth=md5"},
		{name: "md5 with md5 hash wrong", opts: serverOptions{method: MethodMD5}, user: "md5user", pw: "px",
			extra: "sslmode=disable", want: ptr(failed("md5user"))},
		{name: "md5 unknown user", opts: serverOptions{method: MethodMD5}, user: "nobody", pw: "pw",
			extra: "sslmode=disable require_auth=md5", want: ptr(failed("nobody"))},
		{name: "md5 upgrades a SCRAM verifier to SCRAM", opts: serverOptions{method: MethodMD5}, user: "scram",
			pw: "pw", extra: "sslmode=disable require_auth=scram-sha-256"},
		{name: "md5 upgraded to SCRAM wrong", opts: serverOptions{method: MethodMD5}, user: "scram", pw: "px",
			extra: "sslmode=disable", want: ptr(failed("scram"))},

		{name: "scram with plain text", opts: serverOptions{method: MethodSCRAM}, user: "plain", pw: "pw",
			extra: "sslmode=disable require_auth=scram-sha-256"},
		{name: "scram with plain text again, keys cached", opts: serverOptions{method: MethodSCRAM}, user: "plain",
			pw: "pw", extra: "sslmode=disable"},
		{name: "scram with plain text wrong", opts: serverOptions{method: MethodSCRAM}, user: "plain", pw: "px",
			extra: "sslmode=disable", want: ptr(failed("plain"))},
		{name: "scram with verifier", opts: serverOptions{method: MethodSCRAM}, user: "scram", pw: "pw",
			extra: "sslmode=disable"},
		{name: "scram with verifier wrong", opts: serverOptions{method: MethodSCRAM}, user: "scram", pw: "wrong",
			extra: "sslmode=disable", want: ptr(failed("scram"))},
		{name: "scram with md5 hash fails like a wrong password", opts: serverOptions{method: MethodSCRAM},
			user: "md5user", pw: "pw", extra: "sslmode=disable", want: ptr(failed("md5user"))},
		{name: "scram unknown user", opts: serverOptions{method: MethodSCRAM}, user: "nobody", pw: "pw",
			extra: "sslmode=disable", want: ptr(failed("nobody"))},
		{name: "scram non-ASCII password", opts: serverOptions{method: MethodSCRAM}, user: "unicode",
			pw: "pa\u0308ss word", extra: "sslmode=disable"},

		{name: "scram-plus over TLS", opts: serverOptions{method: MethodSCRAM, tls: true}, user: "scram", pw: "pw",
			extra: "sslmode=require channel_binding=require"},
		{name: "scram-plus over TLS with plain text", opts: serverOptions{method: MethodSCRAM, tls: true},
			user: "plain", pw: "pw", extra: "sslmode=require channel_binding=require"},
		{name: "scram-plus over TLS wrong", opts: serverOptions{method: MethodSCRAM, tls: true}, user: "scram",
			pw: "px", extra: "sslmode=require channel_binding=require", want: ptr(failed("scram"))},
		{name: "scram-plus over TLS unknown user", opts: serverOptions{method: MethodSCRAM, tls: true},
			user: "nobody", pw: "pw", extra: "sslmode=require channel_binding=require", want: ptr(failed("nobody"))},
		{name: "scram over TLS, client binding disabled", opts: serverOptions{method: MethodSCRAM, tls: true},
			user: "scram", pw: "pw", extra: "sslmode=require channel_binding=disable"},
		{name: "scram over TLS without binding data, client prefers binding",
			opts: serverOptions{method: MethodSCRAM, tls: true, noBinding: true}, user: "scram", pw: "pw",
			extra: "sslmode=require channel_binding=prefer"},
		{name: "scram over TLS without binding data, client requires binding",
			opts: serverOptions{method: MethodSCRAM, tls: true, noBinding: true}, user: "scram", pw: "pw",
			extra: "sslmode=require channel_binding=require", client: true},
	}
	users := testUsers(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.users = users
			srv := startServer(t, tt.opts)
			err := pgconnLogin(t, srv.dsn(tt.user, tt.pw, tt.extra))
			serverErr := srv.result()
			switch {
			case tt.client:
				if err == nil {
					t.Fatal("login succeeded, want the client to give up")
				}
			case tt.want == nil:
				if err != nil {
					t.Fatalf("login: %v (server: %v)", err, serverErr)
				}
				if serverErr != nil {
					t.Fatalf("Authenticate: %v", serverErr)
				}
			default:
				if err == nil {
					t.Fatal("login succeeded")
				}
				if got := asClientError(t, err); got != *tt.want {
					t.Errorf("client got %+v, want %+v", got, *tt.want)
				}
				var authErr *Error
				if !errors.As(serverErr, &authErr) {
					t.Errorf("Authenticate returned %v, want an *Error", serverErr)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestAuthenticateWithLibPQ(t *testing.T) {
	tests := []struct {
		method, user, pw, extra string
		ok                      bool
	}{
		{MethodMD5, "plain", "pw", "sslmode=disable", true},
		{MethodMD5, "md5user", "pw", "sslmode=disable", true},
		{MethodMD5, "md5user", "px", "sslmode=disable", false},
		{MethodMD5, "nobody", "pw", "sslmode=disable", false},
		{MethodMD5, "scram", "pw", "sslmode=disable", true},
		{MethodSCRAM, "plain", "pw", "sslmode=disable", true},
		{MethodSCRAM, "scram", "pw", "sslmode=disable", true},
		{MethodSCRAM, "scram", "px", "sslmode=disable", false},
		{MethodSCRAM, "nobody", "pw", "sslmode=disable", false},
		{MethodSCRAM, "scram", "pw", "sslmode=require", true},
		{MethodPassword, "scram", "pw", "sslmode=require", true},
	}
	users := testUsers(t)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.user+" "+tt.pw+" "+tt.extra, func(t *testing.T) {
			srv := startServer(t, serverOptions{method: tt.method, users: users, tls: true})
			err := pqLogin(t, srv.dsn(tt.user, tt.pw, tt.extra))
			serverErr := srv.result()
			if tt.ok {
				if err != nil || serverErr != nil {
					t.Fatalf("login: %v, Authenticate: %v", err, serverErr)
				}
				return
			}
			want := clientError{"28P01", `password authentication failed for user "` + tt.user + `"`, ""}
			if got := asClientError(t, err); got != want {
				t.Errorf("client got %+v, want %+v", got, want)
			}
		})
	}
}

// TestUnknownUserLooksLikeWrongPassword checks that, for every method, a client cannot tell an unknown
// user from a wrong password: same error, and for SCRAM a salt and iteration count that stay the same.
func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	users := testUsers(t)
	for _, method := range []string{MethodPassword, MethodMD5, MethodSCRAM} {
		t.Run(method, func(t *testing.T) {
			srv := startServer(t, serverOptions{method: method, users: users, tls: true})
			var got []clientError
			for _, user := range []string{"plain", "nobody"} {
				err := pgconnLogin(t, srv.dsn(user, "wrong", "sslmode=require"))
				srv.result()
				ce := asClientError(t, err)
				ce.message = strings.Replace(ce.message, `"`+user+`"`, `"<user>"`, 1)
				got = append(got, ce)
			}
			if got[0] != got[1] || got[0].code != "28P01" {
				t.Errorf("wrong password: %+v, unknown user: %+v", got[0], got[1])
			}
		})
	}

	// The mock exchange of an unknown user offers a stable salt, like a real user's.
	firstOf := func(user string, secret *Secret) serverFirst {
		var sf serverFirst
		pipeExchange(t, Request{Method: MethodSCRAM, User: user, Secret: secret}, func(fe *pgproto3.Frontend, _ net.Conn) {
			c := scramTestClient{fe}
			if _, err := c.mechanisms(); err != nil {
				t.Fatal(err)
			}
			text, err := c.first(mechSCRAM, "n,,n=,r=abc")
			if err != nil {
				t.Fatal(err)
			}
			if sf, err = parseServerFirst(text); err != nil {
				t.Fatal(err)
			}
		})
		return sf
	}
	a, b, other := firstOf("ghost", nil), firstOf("ghost", nil), firstOf("phantom", nil)
	if string(a.salt) != string(b.salt) || a.iter != DefaultSCRAMIterations || len(a.salt) != saltLen {
		t.Errorf("mock salts %x and %x (iterations %d): want one stable %d-byte salt", a.salt, b.salt, a.iter, saltLen)
	}
	if string(a.salt) == string(other.salt) {
		t.Error("two unknown users get the same mock salt")
	}
	if a.nonce == b.nonce {
		t.Error("the server nonce repeats")
	}
}

func TestSCRAMProtocolViolations(t *testing.T) {
	_, tlsCert := testCert(t, x509.ECDSAWithSHA256)
	cbData := ChannelBindingData(tlsCert.Leaf)
	secret, err := ParseSecret(testVerifier(t, "pw", 4096))
	if err != nil {
		t.Fatal(err)
	}
	plain := Request{Method: MethodSCRAM, User: "u", Secret: &secret}
	withTLS := Request{Method: MethodSCRAM, User: "u", Secret: &secret, TLS: true, ChannelBinding: cbData}
	// finalWith returns a client that completes the exchange correctly except that the client-final-message
	// is transformed by edit.
	type step struct {
		mech, first string
		// final, when set, edits the correct client-final-message before it is sent.
		final func(correct string) string
		cb    []byte // channel-binding data the client uses in the final message
	}
	tests := []struct {
		name      string
		req       Request
		step      step
		wantState string
		wantText  string
	}{
		{name: "unknown mechanism", req: plain, step: step{mech: "SCRAM-SHA-1", first: "n,,n=,r=a"},
			wantState: "08P01", wantText: "invalid SASL authentication mechanism"},
		{name: "PLUS without TLS", req: plain, step: step{mech: mechSCRAMPlus, first: "p=tls-server-end-point,,n=,r=a"},
			wantState: "08P01", wantText: "invalid SASL authentication mechanism"},
		{name: "binding flag without PLUS", req: plain, step: step{mech: mechSCRAM, first: "p=tls-server-end-point,,n=,r=a"},
			wantState: "08P01", wantText: "includes channel binding data"},
		{name: "PLUS without binding flag", req: withTLS, step: step{mech: mechSCRAMPlus, first: "n,,n=,r=a"},
			wantState: "08P01", wantText: "does not include channel binding data"},
		{name: "client thinks the server cannot bind", req: withTLS, step: step{mech: mechSCRAM, first: "y,,n=,r=a"},
			wantState: "28000", wantText: "SCRAM channel binding negotiation error"},
		{name: "malformed first message", req: plain, step: step{mech: mechSCRAM, first: "hello"},
			wantState: "08P01", wantText: "malformed SCRAM message"},
		{name: "empty first message", req: plain, step: step{mech: mechSCRAM, first: ""},
			wantState: "08P01", wantText: "The message is empty."},
		{name: "authorization identity", req: plain, step: step{mech: mechSCRAM, first: "n,a=root,n=,r=a"},
			wantState: "0A000", wantText: "authorization identity"},
		{name: "wrong channel-binding data", req: withTLS,
			step:      step{mech: mechSCRAMPlus, first: "p=tls-server-end-point,,n=,r=a", cb: make([]byte, 32)},
			wantState: "28000", wantText: "SCRAM channel binding check failed"},
		{name: "binding attribute does not repeat the flag", req: withTLS,
			step: step{mech: mechSCRAM, first: "n,,n=,r=a", final: func(m string) string {
				return strings.Replace(m, "c=biws", "c=eSws", 1)
			}}, wantState: "08P01", wantText: "unexpected SCRAM channel-binding attribute"},
		{name: "nonce mismatch", req: plain, step: step{mech: mechSCRAM, first: "n,,n=,r=a", final: func(m string) string {
			return strings.Replace(m, ",r=a", ",r=b", 1)
		}}, wantState: "08P01", wantText: "Nonce does not match."},
		{name: "malformed final message", req: plain, step: step{mech: mechSCRAM, first: "n,,n=,r=a",
			final: func(string) string { return "c=biws" }}, wantState: "08P01", wantText: "malformed SCRAM message"},
		{name: "proof for another password", req: plain, step: step{mech: mechSCRAM, first: "n,,n=,r=a",
			final: func(m string) string { return m[:len(m)-8] + "AAAAAAA=" }},
			wantState: "28P01", wantText: `password authentication failed for user "u"`},
		{name: "binding succeeds", req: withTLS, step: step{mech: mechSCRAMPlus, first: "p=tls-server-end-point,,n=,r=a",
			cb: cbData}},
		{name: "client that cannot bind is fine with TLS", req: withTLS, step: step{mech: mechSCRAM, first: "n,,n=,r=a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pipeExchange(t, tt.req, func(fe *pgproto3.Frontend, _ net.Conn) {
				c := scramTestClient{fe}
				if _, err := c.mechanisms(); err != nil {
					t.Errorf("mechanisms: %v", err)
					return
				}
				sfText, err := c.first(tt.step.mech, tt.step.first)
				if err != nil {
					return // the server failed; its error is checked below
				}
				sf, err := parseServerFirst(sfText)
				if err != nil {
					t.Error(err)
					return
				}
				gs2, bare, _ := strings.Cut(tt.step.first, ",,")
				msg, _ := clientFinalMessage(saltedPassword("pw", sf), bare, sfText, sf.nonce,
					append([]byte(gs2+",,"), tt.step.cb...))
				if tt.step.final != nil {
					msg = tt.step.final(msg)
				}
				c.final(msg)
			})
			if tt.wantState == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				return
			}
			var authErr *Error
			if !errors.As(err, &authErr) {
				t.Fatalf("Authenticate returned %v, want an *Error", err)
			}
			if authErr.Code != tt.wantState || !strings.Contains(authErr.Message+" "+authErr.Detail, tt.wantText) {
				t.Errorf("Authenticate: %s %v, want %s %q", authErr.Code, authErr, tt.wantState, tt.wantText)
			}
		})
	}
}

func TestAuthenticateBadMessages(t *testing.T) {
	secret, err := ParseSecret("pw")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		method    string
		client    func(fe *pgproto3.Frontend, raw net.Conn)
		closed    bool // want ErrClientClosed
		wantState string
		wantText  string
	}{
		{name: "query instead of password", method: MethodMD5, client: func(fe *pgproto3.Frontend, _ net.Conn) {
			fe.Receive()
			fe.Send(&pgproto3.Query{String: "select 1"})
			fe.Flush()
		}, wantState: "08P01", wantText: "expected password response, got message type Q"},
		{name: "query instead of SASL response", method: MethodSCRAM, client: func(fe *pgproto3.Frontend, _ net.Conn) {
			fe.Receive()
			fe.Send(&pgproto3.Query{String: "select 1"})
			fe.Flush()
		}, wantState: "08P01", wantText: "expected SASL response, got message type Q"},
		{name: "unknown message type", method: MethodSCRAM, client: func(fe *pgproto3.Frontend, raw net.Conn) {
			fe.Receive()
			raw.Write([]byte{'!', 0, 0, 0, 4})
		}, wantState: "08P01", wantText: "invalid authentication message"},
		{name: "truncated SASLInitialResponse", method: MethodSCRAM, client: func(fe *pgproto3.Frontend, raw net.Conn) {
			fe.Receive()
			raw.Write([]byte{'p', 0, 0, 0, 5, 'x'})
		}, wantState: "08P01", wantText: "invalid authentication message"},
		{name: "hang up before answering", method: MethodMD5, client: func(fe *pgproto3.Frontend, _ net.Conn) {
			fe.Receive()
		}, closed: true},
		{name: "terminate instead of answering", method: MethodSCRAM, client: func(fe *pgproto3.Frontend, _ net.Conn) {
			fe.Receive()
			fe.Send(&pgproto3.Terminate{})
			fe.Flush()
		}, closed: true},
		{name: "unsupported method", method: "ident", client: func(*pgproto3.Frontend, net.Conn) {},
			wantState: "28000", wantText: `authentication method "ident" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pipeExchange(t, Request{Method: tt.method, User: "u", Secret: &secret}, tt.client)
			if tt.closed {
				if !errors.Is(err, ErrClientClosed) {
					t.Fatalf("Authenticate: %v, want ErrClientClosed", err)
				}
				return
			}
			var authErr *Error
			if !errors.As(err, &authErr) {
				t.Fatalf("Authenticate returned %v, want an *Error", err)
			}
			if authErr.Code != tt.wantState || !strings.Contains(authErr.Message, tt.wantText) {
				t.Errorf("Authenticate: %s %v, want %s %q", authErr.Code, authErr, tt.wantState, tt.wantText)
			}
		})
	}
}

func TestChannelBindingData(t *testing.T) {
	tests := []struct {
		alg  x509.SignatureAlgorithm
		hash func([]byte) []byte
	}{
		{x509.ECDSAWithSHA1, func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
		{x509.ECDSAWithSHA256, func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
		{x509.ECDSAWithSHA384, func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }},
		{x509.ECDSAWithSHA512, func(b []byte) []byte { h := sha512.Sum512(b); return h[:] }},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			cert, _ := testCert(t, tt.alg)
			if got, want := ChannelBindingData(cert), tt.hash(cert.Raw); string(got) != string(want) {
				t.Errorf("ChannelBindingData = %x, want %x", got, want)
			}
		})
	}
	if ChannelBindingData(nil) != nil {
		t.Error("ChannelBindingData(nil) is not nil")
	}
	if ChannelBindingData(&x509.Certificate{SignatureAlgorithm: x509.PureEd25519, Raw: []byte("x")}) != nil {
		t.Error("ChannelBindingData of an Ed25519 certificate is not nil")
	}
}

func TestErrorResponse(t *testing.T) {
	e := passwordFailed("alice", reasonUnknownUser)
	r := e.Response()
	if r.Severity != "FATAL" || r.Code != "28P01" || r.Message != `password authentication failed for user "alice"` ||
		strings.Contains(r.Message+r.Detail, "exist") {
		t.Errorf("Response() = %+v", r)
	}
	if !strings.Contains(e.Error(), reasonUnknownUser) {
		t.Errorf("Error() = %q lacks the reason", e.Error())
	}
}

func BenchmarkSCRAMExchange(b *testing.B) {
	secret, err := ParseSecret("benchmark password")
	if err != nil {
		b.Fatal(err)
	}
	req := Request{Method: MethodSCRAM, User: "bench", Secret: &secret}
	var salted []byte // the client's SaltedPassword, cached like the server's keys
	b.ReportAllocs()
	for b.Loop() {
		err := pipeExchange(b, req, func(fe *pgproto3.Frontend, _ net.Conn) {
			if err := scramLogin(fe, "benchmark password", mechSCRAM, "n,,", nil, &salted); err != nil {
				b.Error(err)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// TestZeroSecretNeverAuthenticates makes sure a zero Secret, which ParseSecret never returns, is not taken
// for an empty password.
func TestZeroSecretNeverAuthenticates(t *testing.T) {
	req := Request{User: "u", Secret: &Secret{}, TLS: true}
	clients := map[string]func(fe *pgproto3.Frontend, _ net.Conn){
		MethodPassword: func(fe *pgproto3.Frontend, _ net.Conn) {
			fe.Receive()
			fe.Send(&pgproto3.PasswordMessage{Password: ""})
			fe.Flush()
		},
		MethodMD5: func(fe *pgproto3.Frontend, _ net.Conn) {
			msg, err := fe.Receive()
			if err != nil {
				t.Error(err)
				return
			}
			salt := msg.(*pgproto3.AuthenticationMD5Password).Salt
			fe.Send(&pgproto3.PasswordMessage{Password: "md5" + md5Hex(md5Hex("", "u"), string(salt[:]))})
			fe.Flush()
		},
		MethodSCRAM: func(fe *pgproto3.Frontend, _ net.Conn) {
			scramLogin(fe, "", mechSCRAM, "n,,", nil, nil)
		},
	}
	for method, client := range clients {
		req.Method = method
		err := pipeExchange(t, req, client)
		var authErr *Error
		if !errors.As(err, &authErr) || authErr.Code != "28P01" {
			t.Errorf("%s: Authenticate = %v, want 28P01", method, err)
		}
	}
}
