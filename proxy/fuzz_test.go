package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// startupCase is a startup-phase packet (length included) and the decoder's verdict on it: "" accepted,
// "EOF" a short read, else the SQLSTATE of the refusal.
type startupCase struct {
	name string
	data []byte
	want string
}

// startupCases are packets as real clients send them and broken variants of them: the fuzzers' seed
// corpus and a table test.
func startupCases(tb testing.TB) []startupCase {
	tb.Helper()
	enc := func(m interface{ Encode([]byte) ([]byte, error) }) []byte {
		b, err := m.Encode(nil)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	v30 := enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{
		"user": "alice@acme", "database": "agentichr", "application_name": "psql", "client_encoding": "UTF8",
	}})
	return []startupCase{
		{"protocol 3.0 with parameters", v30, ""},
		{"protocol 3.0 user only", enc(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": "bob"}}), ""},
		{"SSLRequest", enc(&pgproto3.SSLRequest{}), ""},
		{"GSSENCRequest", enc(&pgproto3.GSSEncRequest{}), ""},
		{"CancelRequest", enc(&pgproto3.CancelRequest{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}}), ""},
		{"protocol 3.2 with a _pq_ option", packet(3<<16|2, "user", "alice", "database", "agentichr", "_pq_.protocol_managed_params", "search_path", ""), ""},
		{"duplicate user and options", packet(3<<16, "user", "x", "user", "y", "options", "-c role=postgres", ""), ""},
		{"no parameters", packet(3<<16, ""), ""},
		{"3.2 cancel key of 32 bytes", raw(codeCancel, "\x00\x00\x10\x00"+strings.Repeat("k", 32)), ""},
		{"protocol 2.0", packet(2<<16, "user", "old", ""), "0A000"},
		{"truncated", v30[:len(v30)-1], "EOF"},
		{"length only", v30[:4], "EOF"},
		{"length below 8", []byte{0, 0, 0, 4}, "08P01"},
		{"length above the cap", []byte{0, 0, 0x27, 0x11}, "08P01"},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}, "08P01"},
		{"no terminator", []byte{0, 0, 0, 8, 0, 3, 0, 0}, "08P01"},
		{"unterminated name", []byte{0, 0, 0, 9, 0, 3, 0, 0, 1}, "08P01"},
		{"name without value", raw(3<<16, "user\x00"), "08P01"},
		{"bytes after the terminator", raw(3<<16, "user\x00a\x00\x00\x00"), "08P01"},
		{"SSLRequest with a body", raw(codeSSLRequest, "x"), "08P01"},
		{"cancel request too short", raw(codeCancel, "abc"), "08P01"},
		{"cancel key too long", raw(codeCancel, strings.Repeat("k", 4+257)), "08P01"},
	}
}

// packet builds a startup-phase packet: the code followed by the given strings, each NUL-terminated (a
// final "" is the packet's terminator byte).
func packet(code uint32, strs ...string) []byte {
	var body strings.Builder
	for _, s := range strs {
		body.WriteString(s)
		body.WriteByte(0)
	}
	return raw(code, body.String())
}

// raw builds a startup-phase packet from its code and the bytes that follow it.
func raw(code uint32, body string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4, 8+len(body)), code)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// FuzzParseStartup feeds arbitrary bodies to the startup decoder: it never panics, and whatever it
// accepts is a well-formed request with sane fields.
func FuzzParseStartup(f *testing.F) {
	for _, c := range startupCases(f) {
		if len(c.data) >= 4 {
			f.Add(c.data[4:])
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseStartup(body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		checkPacket(t, body, p)
		if p.params == nil {
			return
		}
		// The accepted parameters encode back to a packet the decoder reads the same way.
		re := binary.BigEndian.AppendUint32(nil, p.code)
		for _, name := range p.order {
			re = append(append(append(append(re, name...), 0), p.params[name]...), 0)
		}
		for _, name := range p.unknownPQ {
			re = append(append(append(re, name...), 0), 0)
		}
		re = append(re, 0)
		q, err := parseStartup(re)
		if err != nil {
			t.Fatalf("re-encoded packet refused: %v", err)
		}
		if len(q.params) != len(p.params) || len(q.unknownPQ) != len(p.unknownPQ) {
			t.Fatalf("re-encoded packet decodes differently: %v %v vs %v %v", q.params, q.unknownPQ, p.params, p.unknownPQ)
		}
		for k, v := range p.params {
			if q.params[k] != v {
				t.Fatalf("parameter %q: %q after re-encoding, %q before", k, q.params[k], v)
			}
		}
	})
}

// FuzzReadStartup feeds arbitrary byte streams to the length-prefixed reader: it never panics, never reads
// beyond the declared length, enforces the length limits, and reads the same whether the bytes arrive at
// once or one at a time.
func FuzzReadStartup(f *testing.F) {
	for _, c := range startupCases(f) {
		f.Add(c.data)
		f.Add(append(append([]byte(nil), c.data...), 'Q', 0, 0, 0, 5, 0)) // a first frame right behind it
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		p, err := readStartup(r)
		consumed := len(data) - r.Len()
		var n int
		if len(data) >= 4 {
			n = int(binary.BigEndian.Uint32(data))
		}
		if len(data) >= 4 && (n < 8 || n > maxStartupBytes) {
			var pe *pgerr.Error
			if !errors.As(err, &pe) || pe.Code != "08P01" {
				t.Fatalf("length %d: want a 08P01 refusal, got %v", n, err)
			}
			if consumed != 4 {
				t.Fatalf("length %d refused after reading %d bytes, want 4", n, consumed)
			}
			return
		}
		if len(data) < 4 || len(data) < n {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%d bytes of a %d-byte packet: want EOF, got %v (%v)", len(data), n, err, p)
			}
			return
		}
		if consumed != n {
			t.Fatalf("read %d bytes of a %d-byte packet", consumed, n)
		}
		if err != nil {
			checkRefusal(t, err)
		} else {
			checkPacket(t, data[4:n], p)
		}
		p2, err2 := readStartup(iotest.OneByteReader(bytes.NewReader(data)))
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("one byte at a time: %v, at once: %v", err2, err)
		}
		if err == nil && (p2.code != p.code || len(p2.params) != len(p.params)) {
			t.Fatalf("one byte at a time decodes differently")
		}
	})
}

// checkRefusal asserts that a refused startup packet carries a protocol SQLSTATE.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("refusal is not a *pgerr.Error: %T %v", err, err)
	}
	if pe.Code != "08P01" && pe.Code != "0A000" {
		t.Fatalf("refusal SQLSTATE %s (%s), want 08P01 or 0A000", pe.Code, pe.Message)
	}
	if pe.Message == "" {
		t.Fatal("refusal without a message")
	}
}

// checkPacket asserts the invariants of an accepted startup packet decoded from body.
func checkPacket(t *testing.T, body []byte, p *startupPacket) {
	t.Helper()
	if p.code != binary.BigEndian.Uint32(body) {
		t.Fatalf("code %d, body starts with %d", p.code, binary.BigEndian.Uint32(body))
	}
	switch p.code {
	case codeSSLRequest, codeGSSENC:
		if len(body) != 4 || p.params != nil {
			t.Fatalf("encryption request with %d body bytes or parameters %v accepted", len(body), p.params)
		}
		return
	case codeCancel:
		if len(p.cancelKey) < 4 || len(p.cancelKey) > 256 || len(body) != 8+len(p.cancelKey) {
			t.Fatalf("cancel request with a %d-byte key in a %d-byte body accepted", len(p.cancelKey), len(body))
		}
		if p.cancelPID != binary.BigEndian.Uint32(body[4:]) || !bytes.Equal(p.cancelKey, body[8:]) {
			t.Fatal("cancel request fields do not match the body")
		}
		return
	}
	if p.code>>16 != 3 {
		t.Fatalf("protocol %d.%d accepted", p.code>>16, p.code&0xffff)
	}
	if body[len(body)-1] != 0 {
		t.Fatal("packet without a terminator accepted")
	}
	if len(p.order) != len(p.params) {
		t.Fatalf("order %v does not match parameters %v", p.order, p.params)
	}
	seen := map[string]bool{}
	for _, name := range p.order {
		if seen[name] {
			t.Fatalf("parameter %q listed twice in order", name)
		}
		seen[name] = true
		v, ok := p.params[name]
		if !ok {
			t.Fatalf("parameter %q in order but not in params", name)
		}
		if name == "" || strings.HasPrefix(name, "_pq_.") || strings.IndexByte(name, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
			t.Fatalf("bad parameter %q=%q accepted", name, v)
		}
	}
	for _, name := range p.unknownPQ {
		if !strings.HasPrefix(name, "_pq_.") {
			t.Fatalf("protocol option %q without the _pq_. prefix", name)
		}
	}
}

// TestReadStartupVerdicts pins the decoder's verdict on each seed, so a change of behaviour shows up in
// plain go test as well as under the fuzzer.
func TestReadStartupVerdicts(t *testing.T) {
	for _, tt := range startupCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readStartup(bytes.NewReader(tt.data))
			var got string
			var pe *pgerr.Error
			switch {
			case err == nil:
			case errors.As(err, &pe):
				got = pe.Code
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				got = "EOF"
			default:
				t.Fatalf("unexpected error %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}
