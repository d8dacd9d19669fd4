package session

import (
	"encoding/binary"
	"strconv"
	"unsafe"
)

// Message types the relay inspects. Everything else passes through as raw bytes.
const (
	// Frontend.
	msgQuery        = 'Q'
	msgParse        = 'P'
	msgBind         = 'B'
	msgDescribe     = 'D'
	msgExecute      = 'E'
	msgClose        = 'C'
	msgSync         = 'S'
	msgFlush        = 'H'
	msgFunctionCall = 'F'
	msgTerminate    = 'X'
	msgCopyData     = 'd'
	msgCopyDone     = 'c'
	msgCopyFail     = 'f'

	// Backend.
	msgReadyForQuery   = 'Z'
	msgErrorResponse   = 'E'
	msgParameterStatus = 'S'
	msgNotice          = 'N'
	msgNotification    = 'A'
	msgParseComplete   = '1'
	msgBindComplete    = '2'
	msgCloseComplete   = '3'
	msgNoData          = 'n'
	msgParamDesc       = 't'
	msgRowDesc         = 'T'
	msgDataRow         = 'D'
	msgCommandComplete = 'C'
	msgEmptyQuery      = 'I'
	msgPortalSuspended = 's'
	msgCopyInResponse  = 'G'
	msgCopyOutResponse = 'H'
	msgCopyBothResp    = 'W'
)

// Transaction status bytes of ReadyForQuery.
const (
	txIdle   = 'I'
	txInTx   = 'T'
	txFailed = 'E'
)

func beginMsg(b []byte, t byte) ([]byte, int) {
	start := len(b)
	return append(b, t, 0, 0, 0, 0), start
}

func endMsg(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-1))
	return b
}

func appendCString(b []byte, s string) []byte {
	b = append(b, s...)
	return append(b, 0)
}

// appendQuery appends a simple Query message.
func appendQuery(b []byte, sql string) []byte {
	b, st := beginMsg(b, msgQuery)
	b = appendCString(b, sql)
	return endMsg(b, st)
}

// appendReady appends ReadyForQuery with the given transaction status.
func appendReady(b []byte, status byte) []byte {
	return append(b, msgReadyForQuery, 0, 0, 0, 5, status)
}

// appendCommandComplete appends CommandComplete with tag.
func appendCommandComplete(b []byte, tag string) []byte {
	b, st := beginMsg(b, msgCommandComplete)
	b = appendCString(b, tag)
	return endMsg(b, st)
}

// appendParameterStatus appends ParameterStatus.
func appendParameterStatus(b []byte, name, value string) []byte {
	b, st := beginMsg(b, msgParameterStatus)
	b = appendCString(b, name)
	b = appendCString(b, value)
	return endMsg(b, st)
}

// appendBackendKeyData appends BackendKeyData.
func appendBackendKeyData(b []byte, pid, secret uint32) []byte {
	b = append(b, 'K', 0, 0, 0, 12)
	b = binary.BigEndian.AppendUint32(b, pid)
	return binary.BigEndian.AppendUint32(b, secret)
}

// appendError appends an ErrorResponse (severity ERROR or FATAL) with a SQLSTATE and message.
func appendError(b []byte, severity, code, message string) []byte {
	b, st := beginMsg(b, msgErrorResponse)
	b = append(b, 'S')
	b = appendCString(b, severity)
	b = append(b, 'V')
	b = appendCString(b, severity)
	b = append(b, 'C')
	b = appendCString(b, code)
	b = append(b, 'M')
	b = appendCString(b, message)
	b = append(b, 0)
	return endMsg(b, st)
}

// errorFields reads the SQLSTATE and message of an ErrorResponse or NoticeResponse body.
func errorFields(body []byte) (code, message string) {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		body = body[1:]
		i := indexZero(body)
		if i < 0 {
			return
		}
		switch f {
		case 'C':
			code = string(body[:i])
		case 'M':
			message = string(body[:i])
		}
		body = body[i+1:]
	}
	return
}

// cstring returns the zero-terminated string at the start of b and the rest after it.
func cstring(b []byte) (string, []byte, bool) {
	i := indexZero(b)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// cstringView is cstring without the copy: the string shares b's memory and is valid only as long as b
// is unchanged. It serves lookups on the hot path; whatever is kept must be copied (strings.Clone).
func cstringView(b []byte) (string, []byte, bool) {
	i := indexZero(b)
	if i < 0 {
		return "", nil, false
	}
	if i == 0 {
		return "", b[1:], true
	}
	return unsafe.String(&b[0], i), b[i+1:], true
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// appendShiftedError appends the ErrorResponse msg with its Position field moved back by shift
// characters: the error of a statement that the relay sent after shift bytes (characters: the relay only
// carries ASCII) of its own in the same Query, placed where PostgreSQL places it in the client's text.
func appendShiftedError(dst, msg []byte, shift int) []byte {
	m, st := beginMsg(dst, msgErrorResponse)
	body := msg[5:]
	for len(body) > 0 && body[0] != 0 {
		field := body[0]
		v, rest, ok := cstring(body[1:])
		if !ok {
			break
		}
		body = rest
		if field == 'P' {
			if p, err := strconv.Atoi(v); err == nil && p > shift {
				v = strconv.Itoa(p - shift)
			}
		}
		m = append(m, field)
		m = appendCString(m, v)
	}
	m = append(m, 0)
	return endMsg(m, st)
}
