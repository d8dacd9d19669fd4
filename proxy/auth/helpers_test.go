package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// testCert returns a self-signed certificate for 127.0.0.1 signed with alg, and its TLS form.
func testCert(t testing.TB, alg x509.SignatureAlgorithm) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: "tenantproxy test"},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		IPAddresses:        []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:           []string{"localhost"},
		KeyUsage:           x509.KeyUsageDigitalSignature,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// serverOptions configure a test server: a tiny PostgreSQL front door that runs Authenticate.
type serverOptions struct {
	method         string
	users          map[string]string // user name -> configured password text
	tls            bool              // accept SSLRequest
	noBinding      bool              // with tls: pass no channel-binding data, so PLUS is not offered
	allowCleartext bool
}

// testServer accepts connections on a loopback port, authenticates them with Authenticate, and on success
// finishes the startup (AuthenticationOk, ReadyForQuery) and answers every query with an empty result.
type testServer struct {
	t       testing.TB
	opts    serverOptions
	ln      net.Listener
	tlsConf *tls.Config
	cbData  []byte
	secrets map[string]*Secret
	results chan error // Authenticate's result, one per connection
	wg      sync.WaitGroup
}

func startServer(t testing.TB, opts serverOptions) *testServer {
	t.Helper()
	s := &testServer{t: t, opts: opts, results: make(chan error, 16), secrets: map[string]*Secret{}}
	for user, text := range opts.users {
		sec, err := ParseSecret(text)
		if err != nil {
			t.Fatalf("ParseSecret(%q): %v", text, err)
		}
		s.secrets[user] = &sec
	}
	if opts.tls {
		cert, tc := testCert(t, x509.ECDSAWithSHA256)
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{tc}}
		if !opts.noBinding {
			s.cbData = ChannelBindingData(cert)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// dsn returns a connection string for user and password (none when empty) with extra keyword=value
// settings.
func (s *testServer) dsn(user, password, extra string) string {
	addr := s.ln.Addr().(*net.TCPAddr)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d dbname=db user=%s connect_timeout=10 %s", addr.Port, user, extra)
	if password != "" {
		dsn += " password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(password) + "'"
	}
	return dsn
}

// result returns Authenticate's result for the next connection.
func (s *testServer) result() error {
	s.t.Helper()
	select {
	case err := <-s.results:
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatal("the server did not authenticate a connection")
		return nil
	}
}

func (s *testServer) serve(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	be := pgproto3.NewBackend(conn, conn)
	be.SetMaxBodyLen(65535)
	isTLS := false
	var user string
	for user == "" {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			s.results <- fmt.Errorf("startup: %w", err)
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if s.tlsConf == nil || isTLS {
				conn.Write([]byte("N"))
				continue
			}
			conn.Write([]byte("S"))
			tc := tls.Server(conn, s.tlsConf)
			if err := tc.Handshake(); err != nil {
				s.results <- fmt.Errorf("TLS handshake: %w", err)
				return
			}
			conn, isTLS = tc, true
			be = pgproto3.NewBackend(conn, conn)
		case *pgproto3.GSSEncRequest:
			conn.Write([]byte("N"))
		case *pgproto3.StartupMessage:
			user = m.Parameters["user"]
		default:
			s.results <- fmt.Errorf("unexpected startup message %T", msg)
			return
		}
	}
	req := Request{Method: s.opts.method, User: user, Secret: s.secrets[user], TLS: isTLS,
		AllowCleartextWithoutTLS: s.opts.allowCleartext}
	if isTLS {
		req.ChannelBinding = s.cbData
	}
	err := Authenticate(be, req)
	s.results <- err
	var authErr *Error
	if errors.As(err, &authErr) {
		be.Send(authErr.Response())
		be.Flush()
		return
	}
	if err != nil {
		return
	}
	finishStartup(be)
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.Terminate:
			return
		case *pgproto3.Query:
			be.Send(&pgproto3.EmptyQueryResponse{})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
		}
	}
}

// finishStartup sends what follows a successful authentication, enough for pgconn, lib/pq and psql.
func finishStartup(be *pgproto3.Backend) error {
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
	be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return be.Flush()
}

// pipeExchange runs Authenticate(req) on one end of a net.Pipe and client on the other (with a Frontend
// and the raw connection), and returns Authenticate's result.
func pipeExchange(t testing.TB, req Request, client func(fe *pgproto3.Frontend, conn net.Conn)) error {
	t.Helper()
	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Authenticate(pgproto3.NewBackend(srv, srv), req)
		srv.Close()
	}()
	client(pgproto3.NewFrontend(cli, cli), cli)
	cli.Close()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Authenticate did not return")
		return nil
	}
}

// scramTestClient is a hand-written SCRAM client that sends exactly what a test asks for.
type scramTestClient struct {
	fe *pgproto3.Frontend
}

// mechanisms reads the AuthenticationSASL request.
func (c scramTestClient) mechanisms() ([]string, error) {
	msg, err := c.fe.Receive()
	if err != nil {
		return nil, err
	}
	m, ok := msg.(*pgproto3.AuthenticationSASL)
	if !ok {
		return nil, fmt.Errorf("got %T, want AuthenticationSASL", msg)
	}
	return append([]string(nil), m.AuthMechanisms...), nil
}

// first sends the client-first-message and returns the server-first-message.
func (c scramTestClient) first(mech, msg string) (string, error) {
	c.fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: mech, Data: []byte(msg)})
	if err := c.fe.Flush(); err != nil {
		return "", err
	}
	resp, err := c.fe.Receive()
	if err != nil {
		return "", err
	}
	m, ok := resp.(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		return "", fmt.Errorf("got %T, want AuthenticationSASLContinue", resp)
	}
	return string(m.Data), nil
}

// final sends the client-final-message and returns the server-final-message.
func (c scramTestClient) final(msg string) (string, error) {
	c.fe.Send(&pgproto3.SASLResponse{Data: []byte(msg)})
	if err := c.fe.Flush(); err != nil {
		return "", err
	}
	resp, err := c.fe.Receive()
	if err != nil {
		return "", err
	}
	m, ok := resp.(*pgproto3.AuthenticationSASLFinal)
	if !ok {
		return "", fmt.Errorf("got %T, want AuthenticationSASLFinal", resp)
	}
	return string(m.Data), nil
}

// serverFirst is a parsed server-first-message.
type serverFirst struct {
	nonce string
	salt  []byte
	iter  int
}

func parseServerFirst(s string) (serverFirst, error) {
	var sf serverFirst
	var salt string
	if _, err := fmt.Sscanf(strings.NewReplacer(",", " ").Replace(s), "r=%s s=%s i=%d", &sf.nonce, &salt, &sf.iter); err != nil {
		return sf, fmt.Errorf("server-first-message %q: %w", s, err)
	}
	var err error
	sf.salt, err = base64.StdEncoding.DecodeString(salt)
	return sf, err
}

// saltedPassword computes a client's SaltedPassword.
func saltedPassword(password string, sf serverFirst) []byte {
	b, err := pbkdf2.Key(sha256.New, saslPrep(password), sf.salt, sf.iter, 32)
	if err != nil {
		panic(err)
	}
	return b
}

// clientFinalMessage builds the client-final-message for the exchange so far, with channel-binding
// input cbInput (the GS2 header, plus the binding data for PLUS), and the server signature to expect.
func clientFinalMessage(salted []byte, firstBare, serverFirstMsg, nonce string, cbInput []byte) (msg, serverSig string) {
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbInput) + ",r=" + nonce
	authMessage := []byte(firstBare + "," + serverFirstMsg + "," + withoutProof)
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	proof := hmacSHA256(storedKey[:], authMessage)
	subtle.XORBytes(proof, proof, clientKey)
	sig := hmacSHA256(hmacSHA256(salted, []byte("Server Key")), authMessage)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), "v=" + base64.StdEncoding.EncodeToString(sig)
}

// scramLogin runs a complete, correct client exchange with mechanism mech and GS2 header gs2. salted, when
// not nil, caches the SaltedPassword across calls.
func scramLogin(fe *pgproto3.Frontend, password, mech, gs2 string, cbData []byte, salted *[]byte) error {
	c := scramTestClient{fe: fe}
	if _, err := c.mechanisms(); err != nil {
		return err
	}
	bare := "n=,r=clientnonce"
	sfText, err := c.first(mech, gs2+bare)
	if err != nil {
		return err
	}
	sf, err := parseServerFirst(sfText)
	if err != nil {
		return err
	}
	var sp []byte
	if salted != nil && *salted != nil {
		sp = *salted
	} else {
		sp = saltedPassword(password, sf)
		if salted != nil {
			*salted = sp
		}
	}
	msg, wantSig := clientFinalMessage(sp, bare, sfText, sf.nonce, append([]byte(gs2), cbData...))
	sig, err := c.final(msg)
	if err != nil {
		return err
	}
	if sig != wantSig {
		return fmt.Errorf("server signature %q, want %q", sig, wantSig)
	}
	return nil
}
