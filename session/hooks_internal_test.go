package session

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestFollowEncodingIsTheServersAtOnce checks the encoding the guard reads with while a transaction has
// set client_encoding: the pending SET's at once, the session's after ROLLBACK TO drops it, the startup
// value after a pending RESET.
func TestFollowEncodingIsTheServersAtOnce(t *testing.T) {
	tests := []struct {
		name    string
		startup string
		tracked string
		pending []Setting
		want    string // "" for UTF-8 (no decoder)
	}{
		{name: "nothing set", want: ""},
		{name: "tracked LATIN1", tracked: "LATIN1", want: "latin1"},
		{name: "pending SET in the transaction", pending: []Setting{{Name: "client_encoding", Values: []string{"LATIN1"}}}, want: "latin1"},
		{name: "the last pending SET wins", tracked: "LATIN1", pending: []Setting{
			{Name: "client_encoding", Values: []string{"WIN1252"}}, {Name: "statement_timeout", Values: []string{"1s"}}, {Name: "client_encoding", Values: []string{"KOI8R"}}}, want: "koi8r"},
		{name: "pending RESET returns to the startup value", startup: "LATIN2", tracked: "LATIN1", pending: []Setting{{Name: "client_encoding", Reset: true}}, want: "latin2"},
		{name: "pending RESET without a startup value", tracked: "LATIN1", pending: []Setting{{Name: "client_encoding", Reset: true}}, want: ""},
		{name: "a savepoint is not a setting", tracked: "LATIN1", pending: []Setting{{Name: "client_encoding", Savepoint: SavepointDefine}}, want: "latin1"},
	}
	for _, tt := range tests {
		s := &Session{startup: map[string][]string{}, settings: map[string][]string{}, pendingSets: tt.pending}
		if tt.startup != "" {
			s.startup["client_encoding"] = []string{tt.startup}
		}
		if tt.tracked != "" {
			s.settings["client_encoding"] = []string{tt.tracked}
		}
		s.followEncoding()
		want := decoders[tt.want]
		if tt.want == "" {
			want = nil
		}
		if s.decoder != want {
			t.Errorf("%s: decoder %v, want %s's", tt.name, s.decoder, tt.want)
		}
	}
}

func TestRefusalCarriesThePositionOfTheServersError(t *testing.T) {
	tests := []struct {
		v    Verdict
		want pgproto3.ErrorResponse
	}{
		{Verdict{Refused: true, Code: "42601", Message: "syntax error at end of input", Position: 11},
			pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42601", Message: "syntax error at end of input", Position: 11}},
		{Verdict{Refused: true, Code: "42501", Message: "tenantproxy: SET ROLE is not allowed"},
			pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501", Message: "tenantproxy: SET ROLE is not allowed"}},
	}
	for _, tt := range tests {
		b := appendRefusal(nil, tt.v)
		var got pgproto3.ErrorResponse
		if b[0] != 'E' || got.Decode(b[5:]) != nil {
			t.Fatalf("%+v: not an ErrorResponse: %q", tt.v, b)
		}
		if got.Severity != tt.want.Severity || got.SeverityUnlocalized != tt.want.SeverityUnlocalized || got.Code != tt.want.Code || got.Message != tt.want.Message || got.Position != tt.want.Position {
			t.Errorf("%+v: got %+v", tt.v, got)
		}
	}
	var fatal pgproto3.ErrorResponse
	b := appendTerminated(nil)
	if err := fatal.Decode(b[5:]); err != nil || fatal.Severity != "FATAL" || fatal.Code != "57P01" || fatal.Message != "terminating connection due to administrator command" {
		t.Errorf("terminated: %+v (%v)", fatal, err)
	}
}
