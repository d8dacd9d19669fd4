// Package pgerr is tenantproxy's one error vocabulary towards clients: an Error with PostgreSQL's fields
// (severity, SQLSTATE, message, detail, hint) that becomes a pgproto3.ErrorResponse, and the enumerated
// reasons a client session or a backend connection closes, used as log field and metric label.
//
// SQLSTATEs are github.com/jackc/pgerrcode's constants; this package adds none of its own. It is a leaf:
// it imports nothing of tenantproxy, so routing, auth, the startup phase and the relay can all produce
// its errors.
package pgerr

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Severities of an ErrorResponse that tenantproxy sends. FATAL ends the connection; ERROR ends the
// statement or transaction.
const (
	SeverityError = "ERROR"
	SeverityFatal = "FATAL"
)

// Error is an error as PostgreSQL reports it to a client.
type Error struct {
	// Severity is SeverityError or SeverityFatal; empty means SeverityError.
	Severity string
	// Code is the SQLSTATE, a pgerrcode constant.
	Code    string
	Message string
	Detail  string
	Hint    string
	// Reason says why, for the proxy's log only; it is never sent to the client (it may tell, for one,
	// that a user does not exist, which the client must not learn).
	Reason string
	// Silent errors are logged and the connection closed without a message, as PostgreSQL answers bytes
	// that are not a startup packet (its COMMERROR): such a client does not speak the protocol, and some
	// drivers crash on an ErrorResponse they did not expect.
	Silent bool
}

// New returns an ERROR with code and message.
func New(code, message string) *Error {
	return &Error{Severity: SeverityError, Code: code, Message: message}
}

// Newf is New with a formatted message.
func Newf(code, format string, args ...any) *Error { return New(code, fmt.Sprintf(format, args...)) }

// Fatal returns a FATAL error with code and message: the client's connection ends after it.
func Fatal(code, message string) *Error {
	return &Error{Severity: SeverityFatal, Code: code, Message: message}
}

// Fatalf is Fatal with a formatted message.
func Fatalf(code, format string, args ...any) *Error {
	return Fatal(code, fmt.Sprintf(format, args...))
}

// Error returns the message, with the detail and hint in parentheses and the reason after a colon: the
// text for logs.
func (e *Error) Error() string {
	s := e.Message
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// IsFatal reports whether the connection ends after the error.
func (e *Error) IsFatal() bool { return e.Severity == SeverityFatal }

// Response returns the ErrorResponse that tells the client: never the Reason.
func (e *Error) Response() *pgproto3.ErrorResponse {
	sev := e.Severity
	if sev == "" {
		sev = SeverityError
	}
	return &pgproto3.ErrorResponse{Severity: sev, SeverityUnlocalized: sev, Code: e.Code, Message: e.Message,
		Detail: e.Detail, Hint: e.Hint}
}

// Encode appends the ErrorResponse message to dst.
func (e *Error) Encode(dst []byte) ([]byte, error) { return e.Response().Encode(dst) }
