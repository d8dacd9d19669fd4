package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"sync"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/internal/lru"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

const (
	mechSCRAM     = "SCRAM-SHA-256"
	mechSCRAMPlus = "SCRAM-SHA-256-PLUS"
	// serverNonceLen is the number of random bytes in the server's nonce, PostgreSQL's SCRAM_RAW_NONCE_LEN.
	serverNonceLen = 18
)

// processKey is this process's secret for the salts of plain-text passwords and unknown users and for
// the keys of the SCRAM key cache. PostgreSQL keeps its equivalent (mock_auth_nonce) in pg_control; this
// one is new at every start, so those salts change when the proxy restarts.
var processKey = randomBytes(32)

// userSalt returns the salt for user's plain-text password, or the mock salt of an unknown user: derived
// from the name and processKey, so it is stable for the life of the process and reveals nothing.
func userSalt(user string) []byte {
	return hmacSHA256(processKey, []byte("salt\x00"+user))[:saltLen]
}

// scramCredentials are what the server needs to run a SCRAM exchange for one user.
type scramCredentials struct {
	salt []byte
	iter int
	keys scramKeys
	// doomed marks a mock exchange (unknown user, or no usable secret): it runs to the end and fails.
	doomed bool
	reason string
}

// credentialsFor returns the SCRAM credentials of req's user, or mock ones.
func credentialsFor(req Request) (scramCredentials, *Error) {
	s := req.Secret
	switch {
	case s != nil && s.kind == SecretSCRAM:
		return scramCredentials{salt: s.salt, iter: s.iter, keys: s.keys}, nil
	case s != nil && s.kind == SecretPlain:
		c := scramCredentials{salt: userSalt(req.User), iter: DefaultSCRAMIterations}
		keys, ok := lookupKeys(s.plain, c.salt, c.iter)
		if !ok {
			var err error
			if keys, err = deriveKeys(s.plain, c.salt, c.iter); err != nil {
				return c, &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.InternalError, Message: "could not compute SCRAM keys", Reason: err.Error()}
			}
			storeKeys(s.plain, c.salt, c.iter, keys)
		}
		c.keys = keys
		return c, nil
	}
	reason := reasonUnknownUser
	if s != nil {
		reason = "the user's password is an " + s.kind.String() + ", which cannot be used for SCRAM authentication"
	}
	c := scramCredentials{salt: userSalt(req.User), iter: DefaultSCRAMIterations, doomed: true, reason: reason}
	c.keys.storedKey = sha256.Sum256(hmacSHA256(processKey, []byte("mock\x00"+req.User)))
	return c, nil
}

// authSCRAM runs a SCRAM-SHA-256(-PLUS) exchange (RFC 5802, RFC 7677, PostgreSQL's SASL flavour).
func authSCRAM(be *pgproto3.Backend, req Request) error {
	cred, authErr := credentialsFor(req)
	if authErr != nil {
		return authErr
	}
	plusOffered := req.TLS && len(req.ChannelBinding) > 0
	mechs := []string{mechSCRAM}
	if plusOffered {
		mechs = []string{mechSCRAMPlus, mechSCRAM}
	}
	if err := send(be, &pgproto3.AuthenticationSASL{AuthMechanisms: mechs}); err != nil {
		return err
	}

	msg, err := receive(be, pgproto3.AuthTypeSASL)
	if err != nil {
		return err
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return unexpected("SASL", msg)
	}
	var plus bool
	switch {
	case initial.AuthMechanism == mechSCRAM:
	case initial.AuthMechanism == mechSCRAMPlus && plusOffered:
		plus = true
	default:
		return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "client selected an invalid SASL authentication mechanism"}
	}
	first, authErr := parseClientFirst(initial.Data)
	if authErr != nil {
		return authErr
	}
	if authErr := checkChannelBindingFlag(first.cbindFlag, plus, plusOffered); authErr != nil {
		return authErr
	}

	nonce := first.nonce + base64.StdEncoding.EncodeToString(randomBytes(serverNonceLen))
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(cred.salt) + ",i=" +
		strconv.Itoa(cred.iter)
	if err := send(be, &pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}); err != nil {
		return err
	}

	msg, err = receive(be, pgproto3.AuthTypeSASLContinue)
	if err != nil {
		return err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return unexpected("SASL", msg)
	}
	final, authErr := parseClientFinal(resp.Data)
	if authErr != nil {
		return authErr
	}
	if authErr := checkChannelBinding(first, final.binding, plus, req.ChannelBinding); authErr != nil {
		return authErr
	}
	if subtle.ConstantTimeCompare([]byte(final.nonce), []byte(nonce)) != 1 {
		return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid SCRAM response", Detail: "Nonce does not match."}
	}

	// The proof is checked even in a mock exchange, so that it takes as long as a real one.
	authMessage := []byte(first.bare() + "," + serverFirst + "," + final.withoutProof())
	clientKey := hmacSHA256(cred.keys.storedKey[:], authMessage)
	subtle.XORBytes(clientKey, clientKey, final.proof)
	storedKey := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(storedKey[:], cred.keys.storedKey[:]) != 1 || cred.doomed {
		reason := cred.reason
		if !cred.doomed {
			reason = "wrong password"
		}
		return passwordFailed(req.User, reason)
	}
	serverSignature := hmacSHA256(cred.keys.serverKey[:], authMessage)
	return send(be, &pgproto3.AuthenticationSASLFinal{
		Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature))})
}

// checkChannelBindingFlag checks the client's channel-binding flag against the selected mechanism (plus
// is SCRAM-SHA-256-PLUS) and what the server offered, as PostgreSQL does.
func checkChannelBindingFlag(flag byte, plus, plusOffered bool) *Error {
	switch {
	case plus && flag != 'p':
		return malformed("The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.")
	case !plus && flag == 'p':
		return malformed("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
	case flag == 'y' && plusOffered:
		// The client can bind but believes the server cannot: a man in the middle may have removed
		// SCRAM-SHA-256-PLUS from the offer.
		return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.InvalidAuthorizationSpecification, Message: "SCRAM channel binding negotiation error", Detail: "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding."}
	}
	return nil
}

// checkChannelBinding checks the c= attribute of the client-final-message: with SCRAM-SHA-256-PLUS the
// GS2 header followed by the channel-binding data of our certificate, else the bare GS2 header "n,," or
// "y,," repeated from the client-first-message.
func checkChannelBinding(first clientFirst, binding string, plus bool, cbData []byte) *Error {
	if plus {
		want := base64.StdEncoding.EncodeToString(append([]byte(first.gs2Header()), cbData...))
		if subtle.ConstantTimeCompare([]byte(binding), []byte(want)) != 1 {
			return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.InvalidAuthorizationSpecification, Message: "SCRAM channel binding check failed"}
		}
		return nil
	}
	if binding != base64.StdEncoding.EncodeToString([]byte(first.gs2Header())) {
		return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "unexpected SCRAM channel-binding attribute in client-final-message"}
	}
	return nil
}

// The key cache keeps the SCRAM keys derived from plain-text passwords, so that PBKDF2 (4096 rounds of
// HMAC-SHA-256, a millisecond or two) runs once per password rather than at every login. Entries are
// indexed by an HMAC of (password, salt, iterations) under processKey, so the index reveals nothing.
const keyCacheSize = 1024

var keyCache = struct {
	sync.Mutex
	c *lru.Cache[[sha256.Size]byte, scramKeys]
}{c: lru.New[[sha256.Size]byte, scramKeys](keyCacheSize)}

func keyCacheIndex(password string, salt []byte, iter int) [sha256.Size]byte {
	m := hmac.New(sha256.New, processKey)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(password)))
	m.Write(n[:])
	m.Write([]byte(password))
	binary.BigEndian.PutUint64(n[:], uint64(iter))
	m.Write(n[:])
	m.Write(salt)
	var idx [sha256.Size]byte
	m.Sum(idx[:0])
	return idx
}

// lookupKeys returns the cached keys of (password, salt, iter).
func lookupKeys(password string, salt []byte, iter int) (scramKeys, bool) {
	idx := keyCacheIndex(password, salt, iter)
	keyCache.Lock()
	defer keyCache.Unlock()
	return keyCache.c.Get(idx)
}

// storeKeys caches the keys of (password, salt, iter), evicting the least recently used entry when the
// cache is full.
func storeKeys(password string, salt []byte, iter int, k scramKeys) {
	idx := keyCacheIndex(password, salt, iter)
	keyCache.Lock()
	defer keyCache.Unlock()
	keyCache.c.Add(idx, k)
}
