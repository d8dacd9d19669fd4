package proxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/tenantproxy/tenantproxy/internal/pgerr"
)

// Startup-phase request codes.
const (
	codeProtocol3   = 3 << 16
	codeCancel      = 80877102
	codeSSLRequest  = 80877103
	codeGSSENC      = 80877104
	maxStartupBytes = 10000 // PostgreSQL's MAX_STARTUP_PACKET_LENGTH
)

// startupPacket is one decoded message of the startup phase.
type startupPacket struct {
	code   uint32
	params map[string]string
	order  []string // parameter names in the order sent
	// unknownPQ lists "_pq_." protocol options, which this proxy does not support.
	unknownPQ []string
	cancelPID uint32
	cancelKey []byte
}

// readStartup reads one length-prefixed startup-phase message without reading a byte beyond it.
func readStartup(r io.Reader) (*startupPacket, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 8 || n > maxStartupBytes {
		// Not a startup packet (a client that writes Terminate first, an HTTP request): PostgreSQL logs
		// "invalid length of startup packet" and closes without a word.
		return nil, &pgerr.Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: fmt.Sprintf("invalid length of startup packet (%d)", n), Silent: true}
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return parseStartup(body)
}

// parseStartup decodes a startup-phase message body (after the length).
func parseStartup(body []byte) (*startupPacket, error) {
	if len(body) < 4 {
		return nil, pgerr.Fatal(pgerrcode.ProtocolViolation, "invalid startup packet")
	}
	p := &startupPacket{code: binary.BigEndian.Uint32(body)}
	rest := body[4:]
	switch p.code {
	case codeSSLRequest, codeGSSENC:
		if len(rest) != 0 {
			return nil, &pgerr.Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid length of startup packet (SSL or GSS encryption request with a body)", Silent: true}
		}
		return p, nil
	case codeCancel:
		if len(rest) < 8 || len(rest) > 4+256 {
			return nil, &pgerr.Error{Severity: pgerr.SeverityFatal, Code: pgerrcode.ProtocolViolation, Message: "invalid length of startup packet (cancel request)", Silent: true}
		}
		p.cancelPID = binary.BigEndian.Uint32(rest)
		p.cancelKey = append([]byte(nil), rest[4:]...)
		return p, nil
	}
	if p.code>>16 != 3 {
		return nil, pgerr.Fatalf(pgerrcode.FeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0", p.code>>16, p.code&0xffff)
	}
	p.params = map[string]string{}
	for {
		if len(rest) == 0 {
			return nil, pgerr.Fatal(pgerrcode.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
		}
		if rest[0] == 0 {
			if len(rest) != 1 {
				return nil, pgerr.Fatal(pgerrcode.ProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
			}
			break
		}
		name, after, ok := cut0(rest)
		if !ok {
			return nil, pgerr.Fatal(pgerrcode.ProtocolViolation, "invalid startup packet layout: unterminated parameter name")
		}
		value, after2, ok := cut0(after)
		if !ok {
			return nil, pgerr.Fatalf(pgerrcode.ProtocolViolation, "invalid startup packet layout: missing value for parameter %q", name)
		}
		rest = after2
		if strings.HasPrefix(name, "_pq_.") {
			p.unknownPQ = append(p.unknownPQ, name)
			continue
		}
		if _, dup := p.params[name]; !dup {
			p.order = append(p.order, name)
		}
		p.params[name] = value
	}
	return p, nil
}

func cut0(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// negotiateProtocolVersion builds the NegotiateProtocolVersion message: the newest minor version the
// proxy speaks (3.0) and the protocol options it did not recognise.
func negotiateProtocolVersion(unknown []string) []byte {
	b := []byte{'v', 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, codeProtocol3)
	b = binary.BigEndian.AppendUint32(b, uint32(len(unknown)))
	for _, u := range unknown {
		b = append(b, u...)
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}
