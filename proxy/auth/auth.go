package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// Authentication methods, the values of the config's [auth] method.
const (
	MethodTrust    = "trust"
	MethodPassword = "password"
	MethodMD5      = "md5"
	MethodSCRAM    = "scram-sha-256"
)

// Request describes one client to authenticate.
type Request struct {
	// Method is the config's [auth] method: "trust", "password", "md5" or "scram-sha-256".
	Method string
	// User is the user name exactly as the client sent it in the StartupMessage: it appears in the error
	// message, salts md5 hashes (a configured md5 hash must have been made with this same name) and
	// derives the salts of plain-text passwords and of unknown users.
	User string
	// Secret is the user's configured password, nil when the user is unknown.
	Secret *Secret
	// TLS tells whether the connection is encrypted.
	TLS bool
	// ChannelBinding is the tls-server-end-point channel-binding data of the proxy's certificate
	// (ChannelBindingData); nil when not TLS or when the certificate's signature algorithm defines none.
	// SCRAM-SHA-256-PLUS is offered only when TLS is true and ChannelBinding is set.
	ChannelBinding []byte
	// AllowCleartextWithoutTLS lets method "password" ask for the password on a plain connection.
	AllowCleartextWithoutTLS bool
}

// Error is an authentication failure that the caller reports to the client as a FATAL ErrorResponse
// (see Response) before closing the connection. It is pgerr.Error: its Reason says why authentication
// failed, for the proxy's log only, and may tell that the user does not exist, which the client must not
// learn; Response never carries it.
type Error = pgerr.Error

// ErrClientClosed means that the client closed the connection, or sent Terminate, instead of answering an
// authentication request. Nothing is to be sent back, and it is not worth a warning: psql and libpq
// close the connection this way when they learn that a password is needed before prompting for it.
var ErrClientClosed = errors.New("auth: client closed the connection during authentication")

// passwordFailed is the error of a wrong password, and of an unknown user: the client must not be able
// to tell them apart.
func passwordFailed(user, reason string) *Error {
	return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.InvalidPassword, Message: "password authentication failed for user \"" + user + "\"", Reason: reason}
}

const reasonUnknownUser = "user does not exist"

// Authenticate runs the authentication exchange of req.Method with the client on be: it sends the
// AuthenticationXXX requests and checks the client's answers. It returns nil on success without sending
// AuthenticationOk: the caller sends AuthenticationOk, ParameterStatus, BackendKeyData and ReadyForQuery.
// Method "trust" returns nil at once, without looking at the user.
//
// A failed authentication is an *Error, to send to the client with Response; a wrong password and an
// unknown user fail identically, and SCRAM with an unknown user looks like SCRAM with a known one up to
// the final failure. ErrClientClosed (tested with errors.Is) means the client hung up. Any other error is
// an I/O error on the connection. Authenticate does not limit message sizes: the caller should set
// be.SetMaxBodyLen beforehand (PostgreSQL allows authentication messages of up to 65535 bytes).
func Authenticate(be *pgproto3.Backend, req Request) error {
	switch req.Method {
	case MethodTrust:
		return nil
	case MethodPassword:
		return authCleartext(be, req)
	case MethodMD5:
		// As in PostgreSQL, a user whose password is stored as a SCRAM verifier gets SCRAM instead of md5.
		if req.Secret != nil && req.Secret.kind == SecretSCRAM {
			return authSCRAM(be, req)
		}
		return authMD5(be, req)
	case MethodSCRAM:
		return authSCRAM(be, req)
	}
	return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.InvalidAuthorizationSpecification, Message: fmt.Sprintf("authentication method \"%s\" is not supported", req.Method)}
}

func authCleartext(be *pgproto3.Backend, req Request) error {
	if !req.TLS && !req.AllowCleartextWithoutTLS {
		return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.InvalidAuthorizationSpecification, Message: "cleartext password authentication requires a TLS connection", Detail: "Connect with TLS (sslmode=require), or set allow_cleartext_without_tls in [auth]."}
	}
	if err := send(be, &pgproto3.AuthenticationCleartextPassword{}); err != nil {
		return err
	}
	pw, err := receivePassword(be, pgproto3.AuthTypeCleartextPassword)
	if err != nil {
		return err
	}
	if ok, reason := checkCleartext(req, pw); !ok {
		return passwordFailed(req.User, reason)
	}
	return nil
}

// checkCleartext checks a cleartext password against the user's secret.
func checkCleartext(req Request, pw string) (bool, string) {
	s := req.Secret
	switch {
	case s == nil:
		return false, reasonUnknownUser
	case pw == "":
		return false, "empty password"
	case s.kind == SecretPlain:
		a, b := sha256.Sum256([]byte(pw)), sha256.Sum256([]byte(s.plain))
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1, "wrong password"
	case s.kind == SecretMD5:
		return subtle.ConstantTimeCompare([]byte(md5Hex(pw, req.User)), []byte(s.md5)) == 1, "wrong password"
	case s.kind == SecretSCRAM:
		keys, cached := lookupKeys(pw, s.salt, s.iter)
		if !cached {
			var err error
			if keys, err = deriveKeys(pw, s.salt, s.iter); err != nil {
				return false, "computing SCRAM keys: " + err.Error()
			}
		}
		if subtle.ConstantTimeCompare(keys.serverKey[:], s.keys.serverKey[:]) != 1 {
			return false, "wrong password"
		}
		if !cached {
			storeKeys(pw, s.salt, s.iter, keys)
		}
		return true, ""
	}
	return false, "invalid secret"
}

func authMD5(be *pgproto3.Backend, req Request) error {
	var salt [4]byte
	copy(salt[:], randomBytes(len(salt)))
	if err := send(be, &pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
		return err
	}
	pw, err := receivePassword(be, pgproto3.AuthTypeMD5Password)
	if err != nil {
		return err
	}
	stored, reason, doomed := "", "wrong password", false
	switch s := req.Secret; {
	case s != nil && s.kind == SecretMD5:
		stored = s.md5
	case s != nil && s.kind == SecretPlain:
		stored = md5Hex(s.plain, req.User)
	default:
		// Do the same work as for a known user, against a hash nobody knows the password of.
		stored, reason, doomed = md5Hex(string(randomBytes(16))), reasonUnknownUser, true
	}
	want := md5Prefix + md5Hex(stored, string(salt[:]))
	if subtle.ConstantTimeCompare([]byte(pw), []byte(want)) != 1 || doomed {
		return passwordFailed(req.User, reason)
	}
	return nil
}

// receivePassword reads a PasswordMessage.
func receivePassword(be *pgproto3.Backend, authType uint32) (string, error) {
	msg, err := receive(be, authType)
	if err != nil {
		return "", err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return "", unexpected("password", msg)
	}
	return pm.Password, nil
}

// send sends msg and flushes it.
func send(be *pgproto3.Backend, msg pgproto3.BackendMessage) error {
	be.Send(msg)
	if err := be.Flush(); err != nil {
		return fmt.Errorf("auth: sending %T: %w", msg, err)
	}
	return nil
}

// receive reads the client's answer to an authentication request of type authType.
func receive(be *pgproto3.Backend, authType uint32) (pgproto3.FrontendMessage, error) {
	if err := be.SetAuthType(authType); err != nil {
		return nil, err
	}
	msg, err := be.Receive()
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: %w", ErrClientClosed, err)
	case isIOError(err):
		return nil, fmt.Errorf("auth: reading the client's answer: %w", err)
	default:
		// pgproto3 could not decode the message: a bad length, type or body.
		return nil, &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid authentication message", Reason: err.Error()}
	}
	if _, ok := msg.(*pgproto3.Terminate); ok {
		return nil, ErrClientClosed
	}
	return msg, nil
}

func isIOError(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}

// unexpected is the error for a message other than the expected kind of authentication response.
func unexpected(want string, msg pgproto3.FrontendMessage) *Error {
	typ := "?"
	if b, err := msg.Encode(nil); err == nil && len(b) > 0 {
		typ = sanitizeChar(b[0])
	}
	return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: fmt.Sprintf("expected %s response, got message type %s", want, typ)}
}
