package tenants

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/config"
)

// A lifecycle command is audited with its command line, tenant, admin user and failure.
func TestLifecycleCommandsAreAudited(t *testing.T) {
	cfg, err := config.Parse("[backend]\nport = 1\n[admin]\nuser = \"dba\"\n")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := audit.NewWriter(&buf, 16, nil)
	audit.Log.Set(w)
	code := Main(context.Background(), cfg, []string{"tenant", "create", "acme"}, io.Discard, io.Discard)
	audit.Log.Unset(w)
	w.Close()
	if code != ExitFailure {
		t.Fatalf("tenant create against a closed port: exit %d", code)
	}
	var ev audit.Event
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &ev); err != nil {
		t.Fatalf("audit output %q: %v", buf.String(), err)
	}
	if ev.Event != audit.KindLifecycle || ev.User != "dba" || ev.Tenant != "acme" || ev.Command != "tenant create acme" || ev.Reason == "" {
		t.Errorf("audit event %+v", ev)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("want one line, got %q", buf.String())
	}
}
