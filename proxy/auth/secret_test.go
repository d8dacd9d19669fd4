package auth

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// testVerifier returns a valid verifier text for password with a fixed salt.
func testVerifier(t testing.TB, password string, iter int) string {
	t.Helper()
	salt := []byte("0123456789abcdef")
	keys, err := deriveKeys(password, salt, iter)
	if err != nil {
		t.Fatal(err)
	}
	return formatVerifier(iter, salt, keys)
}

func TestParseSecret(t *testing.T) {
	good := testVerifier(t, "pw", 4096)
	b64 := base64.StdEncoding.EncodeToString
	key := b64(make([]byte, 32))
	tests := []struct {
		name    string
		in      string
		kind    SecretKind
		encoded string // what encode returns; the input when empty
		wantErr string
	}{
		{name: "plain", in: "s3cret", kind: SecretPlain},
		{name: "plain with spaces", in: " a b ", kind: SecretPlain},
		{name: "plain starting with md5 and non-hex", in: "md5isgreat", kind: SecretPlain},
		{name: "plain that is just md5", in: "md5", kind: SecretPlain},
		{name: "plain starting with SCRAM but not the prefix", in: "SCRAM-SHA-256", kind: SecretPlain},
		{name: "md5 hash", in: "md5" + strings.Repeat("0a", 16), kind: SecretMD5},
		{name: "md5 hash upper case", in: "md5" + strings.Repeat("0A", 16), kind: SecretMD5,
			encoded: "md5" + strings.Repeat("0a", 16)},
		{name: "md5 hash too short", in: "md5abc", wantErr: "32 hex digits, found 3"},
		{name: "md5 hash too long", in: "md5" + strings.Repeat("a", 33), wantErr: "found 33"},
		{name: "scram verifier", in: good, kind: SecretSCRAM},
		{name: "scram verifier other iterations", in: testVerifier(t, "pw", 1), kind: SecretSCRAM},
		{name: "empty", in: "", wantErr: "empty password"},
		{name: "scram without second dollar", in: "SCRAM-SHA-256$4096:c2FsdA==", wantErr: "missing the second"},
		{name: "scram without iteration colon", in: "SCRAM-SHA-256$4096$" + key + ":" + key,
			wantErr: "between iteration count and salt"},
		{name: "scram zero iterations", in: "SCRAM-SHA-256$0:c2FsdA==$" + key + ":" + key,
			wantErr: "iteration count \"0\""},
		{name: "scram negative iterations", in: "SCRAM-SHA-256$-1:c2FsdA==$" + key + ":" + key,
			wantErr: "iteration count"},
		{name: "scram leading zero iterations", in: "SCRAM-SHA-256$04096:c2FsdA==$" + key + ":" + key,
			wantErr: "iteration count"},
		{name: "scram huge iterations", in: "SCRAM-SHA-256$99999999999:c2FsdA==$" + key + ":" + key,
			wantErr: "iteration count"},
		{name: "scram bad salt", in: "SCRAM-SHA-256$4096:c2Fsd!==$" + key + ":" + key, wantErr: "salt"},
		{name: "scram empty salt", in: "SCRAM-SHA-256$4096:$" + key + ":" + key, wantErr: "salt"},
		{name: "scram without key colon", in: "SCRAM-SHA-256$4096:c2FsdA==$" + key + key,
			wantErr: "between StoredKey and ServerKey"},
		{name: "scram short StoredKey", in: "SCRAM-SHA-256$4096:c2FsdA==$" + b64(make([]byte, 31)) + ":" + key,
			wantErr: "StoredKey is not base64 of 32 bytes"},
		{name: "scram bad ServerKey", in: "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key[1:],
			wantErr: "ServerKey"},
		{name: "scram truncated", in: good[:len(good)-4], wantErr: "invalid SCRAM-SHA-256 verifier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSecret(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSecret(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSecret(%q): %v", tt.in, err)
			}
			if s.Kind() != tt.kind {
				t.Errorf("kind = %v, want %v", s.Kind(), tt.kind)
			}
			want := tt.encoded
			if want == "" {
				want = tt.in
			}
			if got := s.encode(); got != want {
				t.Errorf("encode() = %q, want %q", got, want)
			}
		})
	}
}

func TestSecretFormattingHidesThePassword(t *testing.T) {
	for _, in := range []string{"hunter2-plain", "md5" + strings.Repeat("ab", 16), testVerifier(t, "x", 4096)} {
		s, err := ParseSecret(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			for _, arg := range []any{s, &s} {
				out := fmt.Sprintf(format, arg)
				if strings.Contains(out, "hunter2") || strings.Contains(out, "abab") || strings.Contains(out, "4096") ||
					strings.Contains(out, "6875") {
					t.Errorf("Sprintf(%q) = %q reveals the secret", format, out)
				}
			}
		}
	}
}

func TestNewSCRAMVerifier(t *testing.T) {
	v1, err := NewSCRAMVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := NewSCRAMVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if v1 == v2 {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	s, err := ParseSecret(v1)
	if err != nil {
		t.Fatalf("ParseSecret(NewSCRAMVerifier()): %v", err)
	}
	if s.Kind() != SecretSCRAM || s.iter != DefaultSCRAMIterations || len(s.salt) != saltLen {
		t.Errorf("verifier %q: kind %v, %d iterations, %d-byte salt", v1, s.Kind(), s.iter, len(s.salt))
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct horse ": false, "": false} {
		if ok, _ := checkCleartext(Request{User: "u", Secret: &s}, pw); ok != want {
			t.Errorf("checkCleartext(%q) = %v, want %v", pw, ok, want)
		}
	}
	if _, err := NewSCRAMVerifier(""); err == nil {
		t.Error("NewSCRAMVerifier(\"\") succeeded")
	}
}

func TestCheckCleartext(t *testing.T) {
	mustParse := func(s string) *Secret {
		sec, err := ParseSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		return &sec
	}
	tests := []struct {
		name   string
		secret *Secret
		pw     string
		want   bool
	}{
		{"plain right", mustParse("pw"), "pw", true},
		{"plain wrong", mustParse("pw"), "pW", false},
		{"plain prefix", mustParse("pw"), "p", false},
		{"md5 right", mustParse("md5" + md5Hex("pw", "alice")), "pw", true},
		{"md5 wrong", mustParse("md5" + md5Hex("pw", "alice")), "px", false},
		{"md5 of another user", mustParse("md5" + md5Hex("pw", "bob")), "pw", false},
		{"scram right", mustParse(testVerifier(t, "pw", 4096)), "pw", true},
		{"scram right again, cached", mustParse(testVerifier(t, "pw", 4096)), "pw", true},
		{"scram wrong", mustParse(testVerifier(t, "pw", 4096)), "pW", false},
		{"scram saslprep equivalent", mustParse(testVerifier(t, "IX", 4096)), "\u2168", true},
		{"unknown user", nil, "pw", false},
		{"empty password", mustParse("pw"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, reason := checkCleartext(Request{User: "alice", Secret: tt.secret}, tt.pw); got != tt.want {
				t.Errorf("checkCleartext = %v (%s), want %v", got, reason, tt.want)
			}
		})
	}
}

func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{"", "pw", "md5", "md5" + strings.Repeat("ab", 16), "md5abc", "md5ABCDEF",
		testVerifier(f, "pw", 4096), "SCRAM-SHA-256$1:AA==$" + base64.StdEncoding.EncodeToString(make([]byte, 32)) +
			":" + base64.StdEncoding.EncodeToString(make([]byte, 32)), "SCRAM-SHA-256$", "SCRAM-SHA-256$1:$:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSecret(in)
		if err != nil {
			if s.Kind() != 0 {
				t.Fatalf("ParseSecret(%q) failed but returned a %v", in, s.Kind())
			}
			return
		}
		enc := s.encode()
		want := in
		if s.Kind() == SecretMD5 {
			want = strings.ToLower(in)
		}
		if enc != want {
			t.Fatalf("ParseSecret(%q).encode() = %q", in, enc)
		}
		again, err := ParseSecret(enc)
		if err != nil || again.Kind() != s.Kind() || again.encode() != enc {
			t.Fatalf("re-parsing %q: %v, %v", enc, again, err)
		}
	})
}

// encode returns the secret's configuration text, the inverse of ParseSecret.
func (s Secret) encode() string {
	switch s.kind {
	case SecretPlain:
		return s.plain
	case SecretMD5:
		return md5Prefix + s.md5
	case SecretSCRAM:
		return formatVerifier(s.iter, s.salt, s.keys)
	}
	return ""
}
