package pgerr

import (
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestErrorBecomesTheErrorResponseItDescribes(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want pgproto3.ErrorResponse
		text string
	}{
		{"fatal", Fatalf(pgerrcode.InvalidPassword, "password authentication failed for user %q", "alice"),
			pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28P01", Message: `password authentication failed for user "alice"`},
			`password authentication failed for user "alice"`},
		{"error with detail and hint", &Error{Severity: SeverityError, Code: pgerrcode.InsufficientPrivilege, Message: "m", Detail: "d", Hint: "h"},
			pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501", Message: "m", Detail: "d", Hint: "h"},
			"m (d) (hint: h)"},
		{"the reason is logged, never sent", &Error{Severity: SeverityFatal, Code: pgerrcode.InvalidPassword, Message: "m", Reason: "user does not exist"},
			pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28P01", Message: "m"},
			"m: user does not exist"},
		{"empty severity is ERROR", &Error{Code: pgerrcode.InternalError, Message: "x"},
			pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "XX000", Message: "x"}, "x"},
		{"New", Newf(pgerrcode.ProtocolViolation, "bad %d", 7),
			pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08P01", Message: "bad 7"}, "bad 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := *tt.err.Response()
			if got.Severity != tt.want.Severity || got.SeverityUnlocalized != tt.want.SeverityUnlocalized || got.Code != tt.want.Code ||
				got.Message != tt.want.Message || got.Detail != tt.want.Detail || got.Hint != tt.want.Hint {
				t.Errorf("Response() = %+v, want %+v", got, tt.want)
			}
			if tt.err.Error() != tt.text {
				t.Errorf("Error() = %q, want %q", tt.err.Error(), tt.text)
			}
			if tt.err.IsFatal() != (tt.want.Severity == "FATAL") {
				t.Errorf("IsFatal() = %v for severity %s", tt.err.IsFatal(), tt.want.Severity)
			}
			b, err := tt.err.Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			var back pgproto3.ErrorResponse
			if b[0] != 'E' {
				t.Fatalf("encoded message type %q, want 'E'", b[0])
			}
			if err := back.Decode(b[5:]); err != nil {
				t.Fatal(err)
			}
			if back.Code != tt.want.Code || back.Message != tt.want.Message || back.Severity != tt.want.Severity {
				t.Errorf("decoded %+v, want %+v", back, tt.want)
			}
		})
	}
}

func TestCloseReasonLabelsAreAFixedSet(t *testing.T) {
	tests := []struct {
		reason CloseReason
		valid  bool
		label  string
	}{
		{CloseSetupFailed, true, "setup failed"},
		{CloseIdleOrLifetime, true, "idle_timeout or max_lifetime"},
		{CloseRebalance, true, "rebalance"},
		{CloseClientTerminated, true, "client terminated"},
		{CloseShutdown, true, "shutdown"},
		{CloseReason("write: broken pipe"), false, "error"},
		{CloseReason(""), false, "error"},
	}
	for _, tt := range tests {
		if got := tt.reason.Valid(); got != tt.valid {
			t.Errorf("CloseReason(%q).Valid() = %v, want %v", tt.reason, got, tt.valid)
		}
		if got := tt.reason.Label(); got != tt.label {
			t.Errorf("CloseReason(%q).Label() = %q, want %q", tt.reason, got, tt.label)
		}
	}
	seen := map[CloseReason]bool{}
	for _, r := range BackendCloseReasons {
		if seen[r] {
			t.Errorf("%q listed twice among backend reasons", r)
		}
		seen[r] = true
	}
}
