package admin

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Type OIDs of the console's columns: pgbouncer's 's' (text), 'i' (int4), 'q' (int8), 'N' (numeric) and
// 'T' (a timestamp sent as text).
const (
	oidText    = 25
	oidInt4    = 23
	oidInt8    = 20
	oidNumeric = 1700
)

// Column is one column of a console result: its name and type OID.
type Column struct {
	Name string
	OID  uint32
}

func cols(spec string, names ...string) []Column {
	if len(spec) != len(names) {
		panic("BUG: admin: column spec and names differ in length")
	}
	out := make([]Column, len(names))
	for i, n := range names {
		var oid uint32
		switch spec[i] {
		case 's', 'T':
			oid = oidText
		case 'i':
			oid = oidInt4
		case 'q':
			oid = oidInt8
		case 'N':
			oid = oidNumeric
		default:
			panic("BUG: admin: bad column type " + string(spec[i]))
		}
		out[i] = Column{Name: n, OID: oid}
	}
	return out
}

// result is one SHOW's answer.
type result struct {
	cols []Column
	rows [][]any
}

func (r *result) add(v ...any) {
	if len(v) != len(r.cols) {
		panic("BUG: admin: row width differs from the columns'")
	}
	r.rows = append(r.rows, v)
}

// null is a NULL value.
type null struct{}

// orNull is s, or NULL when s is empty.
func orNull(s string) any {
	if s == "" {
		return null{}
	}
	return s
}

// timeText formats a time as pgbouncer does ("2006-01-02 15:04:05 UTC"); the zero time is NULL.
func timeText(t time.Time) any {
	if t.IsZero() {
		return null{}
	}
	return t.UTC().Format("2006-01-02 15:04:05 MST")
}

func usec(d time.Duration) int64 { return d.Microseconds() }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func encodeValue(v any) []byte {
	switch x := v.(type) {
	case null:
		return nil
	case string:
		return []byte(x)
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case int:
		return strconv.AppendInt(nil, int64(x), 10)
	case float64:
		return strconv.AppendFloat(nil, x, 'f', 2, 64)
	case bool:
		if x {
			return []byte("t")
		}
		return []byte("f")
	}
	panic("BUG: admin: cannot encode a value of this type")
}

func (r *result) messages() []pgproto3.BackendMessage {
	fields := make([]pgproto3.FieldDescription, len(r.cols))
	for i, c := range r.cols {
		size := int16(-1)
		switch c.OID {
		case oidInt4:
			size = 4
		case oidInt8:
			size = 8
		}
		fields[i] = pgproto3.FieldDescription{Name: []byte(c.Name), DataTypeOID: c.OID, DataTypeSize: size, TypeModifier: -1}
	}
	msgs := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: fields}}
	for _, row := range r.rows {
		vals := make([][]byte, len(row))
		for i, v := range row {
			vals[i] = encodeValue(v)
		}
		msgs = append(msgs, &pgproto3.DataRow{Values: vals})
	}
	return msgs
}
