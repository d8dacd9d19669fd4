package auth

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"
)

var proof32 = base64.StdEncoding.EncodeToString(make([]byte, 32))

func TestParseClientFirst(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       clientFirst
		wantState  string
		wantDetail string // or message
	}{
		{name: "no binding", in: "n,,n=,r=abc", want: clientFirst{cbindFlag: 'n', nonce: "abc"}},
		{name: "client can bind", in: "y,,n=u,r=abc", want: clientFirst{cbindFlag: 'y', user: "u", nonce: "abc"}},
		{name: "binding", in: "p=tls-server-end-point,,n=,r=x/+=",
			want: clientFirst{cbindFlag: 'p', cbindType: cbindTypeEndPoint, nonce: "x/+="}},
		{name: "extensions", in: "n,,n=,r=abc,x=1,y=", want: clientFirst{cbindFlag: 'n', nonce: "abc", extensions: ",x=1,y="}},
		{name: "empty", in: "", wantState: "08P01", wantDetail: "The message is empty."},
		{name: "nul byte", in: "n,,n=,r=a\x00b", wantState: "08P01", wantDetail: "Message length does not match"},
		{name: "bad flag", in: "x,,n=,r=a", wantState: "08P01", wantDetail: "Unexpected channel-binding flag \"x\"."},
		{name: "no comma after flag", in: "n", wantState: "08P01", wantDetail: "Comma expected, but found character \"0x00\"."},
		{name: "unsupported binding type", in: "p=tls-unique,,n=,r=a", wantState: "08P01",
			wantDetail: "unsupported SCRAM channel-binding type \"tls-unique\""},
		{name: "binding without equals", in: "p,,n=,r=a", wantState: "08P01", wantDetail: "Expected character \"=\""},
		{name: "authzid", in: "n,a=bob,n=,r=a", wantState: "0A000", wantDetail: "authorization identity"},
		{name: "garbage instead of authzid", in: "n,x,n=,r=a", wantState: "08P01",
			wantDetail: "Unexpected attribute \"x\" in client-first-message."},
		{name: "mandatory extension", in: "n,,m=ext,n=,r=a", wantState: "0A000", wantDetail: "unsupported SCRAM extension"},
		{name: "missing user", in: "n,,r=a", wantState: "08P01", wantDetail: "Expected attribute \"n\" but found \"r\"."},
		{name: "missing nonce", in: "n,,n=u", wantState: "08P01", wantDetail: "Expected attribute \"r\" but found end of string."},
		{name: "non-printable nonce", in: "n,,n=,r=a b", wantState: "08P01", wantDetail: "non-printable characters"},
		{name: "trailing comma", in: "n,,n=,r=abc,", wantState: "08P01", wantDetail: "found end of string"},
		{name: "bad extension name", in: "n,,n=,r=abc,1=2", wantState: "08P01", wantDetail: "invalid character \"1\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseClientFirst([]byte(tt.in))
			if tt.wantState != "" {
				if err == nil || err.Code != tt.wantState || !strings.Contains(err.Message+" "+err.Detail, tt.wantDetail) {
					t.Fatalf("parseClientFirst(%q) error = %v, want %s %q", tt.in, err, tt.wantState, tt.wantDetail)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseClientFirst(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseClientFirst(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseClientFinal(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       clientFinal
		wantDetail string
	}{
		{name: "plain", in: "c=biws,r=abc,p=" + proof32, want: clientFinal{binding: "biws", nonce: "abc"}},
		{name: "extensions", in: "c=biws,r=abc,x=1,y=2,p=" + proof32,
			want: clientFinal{binding: "biws", nonce: "abc", extensions: ",x=1,y=2"}},
		{name: "empty", in: "", wantDetail: "The message is empty."},
		{name: "nul byte", in: "c=biws,r=abc,p=" + proof32 + "\x00", wantDetail: "Message length"},
		{name: "no binding", in: "r=abc,p=" + proof32, wantDetail: "Expected attribute \"c\" but found \"r\"."},
		{name: "no nonce", in: "c=biws,p=" + proof32, wantDetail: "Expected attribute \"r\" but found \"p\"."},
		{name: "no proof", in: "c=biws,r=abc", wantDetail: "Attribute expected, but found end of string."},
		{name: "short proof", in: "c=biws,r=abc,p=" + base64.StdEncoding.EncodeToString(make([]byte, 31)),
			wantDetail: "Malformed proof"},
		{name: "proof not base64", in: "c=biws,r=abc,p=***", wantDetail: "Malformed proof"},
		{name: "garbage after proof", in: "c=biws,r=abc,p=" + proof32 + ",x=1", wantDetail: "Garbage found at the end"},
		{name: "trailing comma", in: "c=biws,r=abc,p=" + proof32 + ",", wantDetail: "found end of string"},
		{name: "attribute without equals", in: "c=biws,r=abc,pxyz", wantDetail: "Expected character \"=\" for attribute \"p\"."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseClientFinal([]byte(tt.in))
			if tt.wantDetail != "" {
				if err == nil || err.Code != "08P01" || !strings.Contains(err.Detail, tt.wantDetail) {
					t.Fatalf("parseClientFinal(%q) error = %v, want 08P01 %q", tt.in, err, tt.wantDetail)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseClientFinal(%q): %v", tt.in, err)
			}
			if got.binding != tt.want.binding || got.nonce != tt.want.nonce || got.extensions != tt.want.extensions ||
				len(got.proof) != 32 {
				t.Errorf("parseClientFinal(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q, want the input %q", got.String(), tt.in)
			}
		})
	}
}

func FuzzSCRAMClientFirst(f *testing.F) {
	for _, s := range []string{"n,,n=,r=abc", "y,,n=user,r=abc", "p=tls-server-end-point,,n=,r=abc,x=y",
		"n,a=x,n=,r=a", "n,,m=x", "p=,,", "n,,n=,r=", "", ",", "n,,n=,r=a,", "n,,n=,r=a,b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := parseClientFirst(in)
		if err != nil {
			if err.Code != pgerrcode.ProtocolViolation && err.Code != pgerrcode.FeatureNotSupported {
				t.Fatalf("parseClientFirst(%q): SQLSTATE %s", in, err.Code)
			}
			return
		}
		if got := m.gs2Header() + m.bare(); got != string(in) {
			t.Fatalf("parseClientFirst(%q) formats back as %q", in, got)
		}
		if !strings.ContainsRune("nyp", rune(m.cbindFlag)) || !isPrintable(m.nonce) || strings.Contains(m.user, ",") {
			t.Fatalf("parseClientFirst(%q) = %+v", in, m)
		}
		if m.cbindFlag == 'p' && m.cbindType != cbindTypeEndPoint {
			t.Fatalf("parseClientFirst(%q) accepted channel-binding type %q", in, m.cbindType)
		}
		again, err := parseClientFirst([]byte(m.gs2Header() + m.bare()))
		if err != nil || again != m {
			t.Fatalf("re-parsing %q: %+v, %v", in, again, err)
		}
	})
}

func FuzzSCRAMClientFinal(f *testing.F) {
	for _, s := range []string{"c=biws,r=abc,p=" + proof32, "c=eSws,r=abc,x=1,p=" + proof32, "c=,r=,p=",
		"c=biws,r=abc,p=" + proof32 + ",", "c=biws,r=abc,p=" + proof32 + "x", "", "p=" + proof32} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := parseClientFinal(in)
		if err != nil {
			if err.Code != pgerrcode.ProtocolViolation {
				t.Fatalf("parseClientFinal(%q): SQLSTATE %s", in, err.Code)
			}
			return
		}
		if len(m.proof) != keyLen {
			t.Fatalf("parseClientFinal(%q) accepted a %d-byte proof", in, len(m.proof))
		}
		if m.String() != string(in) {
			t.Fatalf("parseClientFinal(%q) formats back as %q", in, m.String())
		}
		if strings.Contains(m.binding, ",") || strings.Contains(m.nonce, ",") {
			t.Fatalf("parseClientFinal(%q) = %+v", in, m)
		}
	})
}

// String formats the message back, the inverse of parseClientFinal.
func (m clientFinal) String() string {
	return m.withoutProof() + ",p=" + base64.StdEncoding.EncodeToString(m.proof)
}
