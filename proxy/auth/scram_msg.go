package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// The SCRAM parsers below follow PostgreSQL's read_client_first_message and read_client_final_message
// (src/backend/libpq/auth-scram.c), with the same SQLSTATEs and messages, except that they are strict
// about RFC 5802's grammar where PostgreSQL is lenient: a trailing comma is an error, and base64 must be
// canonical, so a parsed message formats back to exactly its input.

const cbindTypeEndPoint = "tls-server-end-point"

// clientFirst is a parsed client-first-message: gs2-header client-first-message-bare.
type clientFirst struct {
	// cbindFlag is 'n' (client cannot bind), 'y' (client can bind but thinks the server cannot) or 'p'
	// (client binds, with type cbindType).
	cbindFlag byte
	cbindType string
	user      string // n=, ignored: the user name comes from the StartupMessage, as in PostgreSQL
	nonce     string // r=
	// extensions are the optional attributes after the nonce, with their leading commas.
	extensions string
}

// gs2Header returns the GS2 header the client sent, which it repeats in the channel binding of its final
// message.
func (m clientFirst) gs2Header() string {
	if m.cbindFlag == 'p' {
		return "p=" + m.cbindType + ",,"
	}
	return string(m.cbindFlag) + ",,"
}

// bare returns the client-first-message-bare, part of the SCRAM AuthMessage.
func (m clientFirst) bare() string {
	return "n=" + m.user + ",r=" + m.nonce + m.extensions
}

// clientFinal is a parsed client-final-message.
type clientFinal struct {
	binding string // c=, base64 of the GS2 header and the channel-binding data
	nonce   string // r=, the client's nonce followed by the server's
	// extensions are the optional attributes between the nonce and the proof, with their leading commas.
	extensions string
	proof      []byte // p=, decoded
}

// withoutProof returns the client-final-message-without-proof, part of the SCRAM AuthMessage.
func (m clientFinal) withoutProof() string {
	return "c=" + m.binding + ",r=" + m.nonce + m.extensions
}

func malformed(detail string, args ...any) *Error {
	return &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "malformed SCRAM message", Detail: fmt.Sprintf(detail, args...)}
}

// attrScanner reads the comma-separated attr=value list of a SCRAM message.
type attrScanner struct {
	s string
}

func (p *attrScanner) done() bool { return p.s == "" }

// value reads the value after "<attr>=" up to the next comma or the end, and consumes that comma, which
// must be followed by another attribute.
func (p *attrScanner) value(attr byte) (string, *Error) {
	if len(p.s) < 2 || p.s[1] != '=' {
		return "", malformed("Expected character \"=\" for attribute \"%c\".", attr)
	}
	v, rest, more := strings.Cut(p.s[2:], ",")
	if more && rest == "" {
		return "", malformed("Attribute expected, but found end of string.")
	}
	p.s = rest
	return v, nil
}

// attr reads the attribute want.
func (p *attrScanner) attr(want byte) (string, *Error) {
	if p.s == "" {
		return "", malformed("Expected attribute \"%c\" but found end of string.", want)
	}
	if p.s[0] != want {
		return "", malformed("Expected attribute \"%c\" but found \"%s\".", want, sanitizeChar(p.s[0]))
	}
	return p.value(want)
}

// anyAttr reads an attribute whose name is a letter.
func (p *attrScanner) anyAttr() (byte, string, *Error) {
	if p.s == "" {
		return 0, "", malformed("Attribute expected, but found end of string.")
	}
	a := p.s[0]
	if !('a' <= a && a <= 'z' || 'A' <= a && a <= 'Z') {
		return 0, "", malformed("Attribute expected, but found invalid character \"%s\".", sanitizeChar(a))
	}
	v, err := p.value(a)
	return a, v, err
}

// checkText rejects an empty message and one with a NUL byte, as PostgreSQL does.
func checkText(msg []byte) *Error {
	if len(msg) == 0 {
		return malformed("The message is empty.")
	}
	if bytes.IndexByte(msg, 0) >= 0 {
		return malformed("Message length does not match input length.")
	}
	return nil
}

// parseClientFirst parses a client-first-message. It checks the syntax only; whether the channel-binding
// flag fits the selected mechanism is checkChannelBindingFlag's job.
func parseClientFirst(msg []byte) (clientFirst, *Error) {
	var m clientFirst
	if err := checkText(msg); err != nil {
		return m, err
	}
	p := attrScanner{s: string(msg)}
	m.cbindFlag = p.s[0]
	switch m.cbindFlag {
	case 'n', 'y':
		if len(p.s) < 2 || p.s[1] != ',' {
			return m, malformed("Comma expected, but found character \"%s\".", sanitizeAt(p.s, 1))
		}
		p.s = p.s[2:]
	case 'p':
		t, err := p.value('p')
		if err != nil {
			return m, err
		}
		if t != cbindTypeEndPoint {
			return m, &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: fmt.Sprintf("unsupported SCRAM channel-binding type \"%s\"", sanitizeStr(t))}
		}
		m.cbindType = t
	default:
		return m, malformed("Unexpected channel-binding flag \"%s\".", sanitizeChar(m.cbindFlag))
	}
	// The authorization identity is not supported.
	if strings.HasPrefix(p.s, "a") {
		return m, &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.FeatureNotSupported, Message: "client uses authorization identity, but it is not supported"}
	}
	if !strings.HasPrefix(p.s, ",") {
		return m, malformed("Unexpected attribute \"%s\" in client-first-message.", sanitizeAt(p.s, 0))
	}
	p.s = p.s[1:]
	if strings.HasPrefix(p.s, "m") {
		return m, &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.FeatureNotSupported, Message: "client requires an unsupported SCRAM extension"}
	}
	var err *Error
	if m.user, err = p.attr('n'); err != nil {
		return m, err
	}
	if m.nonce, err = p.attr('r'); err != nil {
		return m, err
	}
	if !isPrintable(m.nonce) {
		return m, &Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "non-printable characters in SCRAM nonce"}
	}
	ext := p.s
	for !p.done() {
		if _, _, err := p.anyAttr(); err != nil {
			return m, err
		}
	}
	if ext != "" {
		m.extensions = "," + ext
	}
	return m, nil
}

// parseClientFinal parses a client-final-message: c=<binding>,r=<nonce>[,extensions],p=<proof>.
func parseClientFinal(msg []byte) (clientFinal, *Error) {
	var m clientFinal
	if err := checkText(msg); err != nil {
		return m, err
	}
	p := attrScanner{s: string(msg)}
	var err *Error
	if m.binding, err = p.attr('c'); err != nil {
		return m, err
	}
	if m.nonce, err = p.attr('r'); err != nil {
		return m, err
	}
	var ext strings.Builder
	for {
		a, v, err := p.anyAttr()
		if err != nil {
			return m, err
		}
		if a != 'p' {
			ext.WriteString(",")
			ext.WriteByte(a)
			ext.WriteString("=")
			ext.WriteString(v)
			continue
		}
		if !p.done() {
			return m, malformed("Garbage found at the end of client-final-message.")
		}
		proof, decErr := decodeBase64(v)
		if decErr != nil || len(proof) != keyLen {
			return m, malformed("Malformed proof in client-final-message.")
		}
		m.proof = proof
		m.extensions = ext.String()
		return m, nil
	}
}

// isPrintable reports whether s is made of printable ASCII other than the comma, RFC 5802's
// "printable" (PostgreSQL's is_scram_printable).
func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// sanitizeChar renders c for an error detail: itself when printable ASCII, else as hex.
func sanitizeChar(c byte) string {
	if c >= 0x21 && c <= 0x7e {
		return string(rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

// sanitizeAt renders the byte of s at i, or the end of string as PostgreSQL's NUL terminator.
func sanitizeAt(s string, i int) string {
	if i >= len(s) {
		return sanitizeChar(0)
	}
	return sanitizeChar(s[i])
}

// sanitizeStr renders client text for an error message: at most 30 bytes, non-printable ones as '?'.
func sanitizeStr(s string) string {
	b := []byte(s[:min(len(s), 30)])
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// decodeBase64 decodes standard base64 strictly: Go's decoder skips carriage returns and line feeds,
// which would let two different texts stand for the same value; they are refused here.
func decodeBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("base64 text contains a line break")
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}
