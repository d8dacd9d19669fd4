package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	scramPrefix = "SCRAM-SHA-256$"
	md5Prefix   = "md5"
	// DefaultSCRAMIterations is PostgreSQL's default scram_iterations, used by NewSCRAMVerifier and for
	// plain-text secrets.
	DefaultSCRAMIterations = 4096
	// saltLen is the length of generated salts, PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
	saltLen = 16
	keyLen  = sha256.Size
)

// SecretKind tells how a user's password is stored.
type SecretKind int

// The kinds of secrets ParseSecret accepts.
const (
	// SecretPlain is a plain-text password: it works with every method.
	SecretPlain SecretKind = iota + 1
	// SecretSCRAM is a SCRAM-SHA-256 verifier: it works with scram-sha-256, with md5 (upgraded to SCRAM)
	// and with password.
	SecretSCRAM
	// SecretMD5 is an md5 hash: it works with md5 and password, not with scram-sha-256.
	SecretMD5
)

// String returns the kind's name as it appears in messages.
func (k SecretKind) String() string {
	switch k {
	case SecretPlain:
		return "plain text"
	case SecretSCRAM:
		return "SCRAM-SHA-256 verifier"
	case SecretMD5:
		return "md5 hash"
	}
	return "invalid secret"
}

// scramKeys are the keys a SCRAM-SHA-256 server needs: StoredKey = H(HMAC(SaltedPassword, "Client Key"))
// and ServerKey = HMAC(SaltedPassword, "Server Key").
type scramKeys struct {
	storedKey [keyLen]byte
	serverKey [keyLen]byte
}

// Secret is a user's configured password: plain text, a SCRAM-SHA-256 verifier or an md5 hash. Its String
// and GoString methods never reveal the password, so a Secret can be logged safely.
type Secret struct {
	kind  SecretKind
	plain string // SecretPlain: the password
	md5   string // SecretMD5: the 32 lower-case hex digits after "md5"
	// SecretSCRAM: the verifier's parts.
	iter int
	salt []byte
	keys scramKeys
}

// Kind returns how the password is stored.
func (s Secret) Kind() SecretKind { return s.kind }

// String describes the secret without revealing it.
func (s Secret) String() string { return "auth.Secret(" + s.kind.String() + ")" }

// GoString describes the secret without revealing it, for %#v.
func (s Secret) GoString() string { return s.String() }

// ParseSecret parses a configured password. A string starting with "SCRAM-SHA-256$" must be a valid
// verifier in PostgreSQL's format, SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64
// ServerKey>; "md5" followed by hex digits must be "md5" and exactly 32 hex digits (md5 of password+user
// name); anything else non-empty is a plain-text password. Unlike PostgreSQL, which takes a malformed
// verifier for a plain-text password, ParseSecret rejects it, so a truncated hash never becomes a password.
func ParseSecret(s string) (Secret, error) {
	switch {
	case s == "":
		return Secret{}, errors.New("empty password")
	case strings.HasPrefix(s, scramPrefix):
		return parseSCRAMVerifier(s)
	case strings.HasPrefix(s, md5Prefix) && len(s) > len(md5Prefix) && isHex(s[len(md5Prefix):]):
		digits := s[len(md5Prefix):]
		if len(digits) != 2*md5.Size {
			return Secret{}, fmt.Errorf("md5 password hash must be \"md5\" followed by 32 hex digits, found %d", len(digits))
		}
		return Secret{kind: SecretMD5, md5: strings.ToLower(digits)}, nil
	}
	return Secret{kind: SecretPlain, plain: s}, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func parseSCRAMVerifier(s string) (Secret, error) {
	bad := func(format string, args ...any) (Secret, error) {
		return Secret{}, fmt.Errorf("invalid SCRAM-SHA-256 verifier: "+format, args...)
	}
	rest := strings.TrimPrefix(s, scramPrefix)
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return bad("want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, missing the second \"$\"")
	}
	iterText, saltText, ok := strings.Cut(params, ":")
	if !ok {
		return bad("missing \":\" between iteration count and salt")
	}
	iter, err := strconv.ParseInt(iterText, 10, 32)
	if err != nil || iter <= 0 || strconv.FormatInt(iter, 10) != iterText {
		return bad("iteration count %q is not a positive decimal integer", iterText)
	}
	salt, err := decodeBase64(saltText)
	if err != nil || len(salt) == 0 {
		return bad("salt %q is not non-empty base64", saltText)
	}
	storedText, serverText, ok := strings.Cut(keys, ":")
	if !ok {
		return bad("missing \":\" between StoredKey and ServerKey")
	}
	sec := Secret{kind: SecretSCRAM, iter: int(iter), salt: salt}
	for _, k := range []struct {
		name, text string
		dst        *[keyLen]byte
	}{{"StoredKey", storedText, &sec.keys.storedKey}, {"ServerKey", serverText, &sec.keys.serverKey}} {
		b, err := decodeBase64(k.text)
		if err != nil || len(b) != keyLen {
			return bad("%s is not base64 of %d bytes", k.name, keyLen)
		}
		copy(k.dst[:], b)
	}
	return sec, nil
}

func formatVerifier(iter int, salt []byte, k scramKeys) string {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s%d:%s$%s:%s", scramPrefix, iter, b64(salt), b64(k.storedKey[:]), b64(k.serverKey[:]))
}

// NewSCRAMVerifier hashes password into a SCRAM-SHA-256 verifier in PostgreSQL's format, with a random salt
// and 4096 iterations, exactly as PostgreSQL's CREATE ROLE ... PASSWORD does (including SASLprep).
func NewSCRAMVerifier(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	salt := randomBytes(saltLen)
	keys, err := deriveKeys(password, salt, DefaultSCRAMIterations)
	if err != nil {
		return "", err
	}
	return formatVerifier(DefaultSCRAMIterations, salt, keys), nil
}

// deriveKeys computes the SCRAM keys of a password: SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password),
// salt, iter).
// It fails only where FIPS 140-only mode forbids the salt (shorter than 16 bytes).
func deriveKeys(password string, salt []byte, iter int) (scramKeys, error) {
	salted, err := pbkdf2.Key(sha256.New, saslPrep(password), salt, iter, keyLen)
	if err != nil {
		return scramKeys{}, err
	}
	var k scramKeys
	k.storedKey = sha256.Sum256(hmacSHA256(salted, []byte("Client Key")))
	copy(k.serverKey[:], hmacSHA256(salted, []byte("Server Key")))
	return k, nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// md5Hex returns the lower-case hex md5 of the concatenation of parts.
func md5Hex(parts ...string) string {
	h := md5.New()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// randomBytes returns n bytes from crypto/rand, which never fails.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
