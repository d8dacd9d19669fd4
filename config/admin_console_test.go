package config

import (
	"strings"
	"testing"
)

func TestOperationsKeysParse(t *testing.T) {
	c, err := Parse(minimal + `
[listen]
reuse_port = true
[admin_console]
admin_users = ["alice"]
stats_users = ["alice"]
[audit]
path = "-"
[peers]
id = 2
[peers.addrs]
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Listen.ReusePort || c.AdminConsole.AdminUsers[0] != "alice" || c.Audit.Path != "-" || c.Peers.ID != 2 {
		t.Errorf("parsed %+v %+v %+v %+v", c.Listen, c.AdminConsole, c.Audit, c.Peers)
	}
	if got := c.Peers.PeerAddrs(); got[1] != "127.0.0.1:7001" || got[2] != "127.0.0.1:7002" || len(got) != 2 {
		t.Errorf("PeerAddrs = %v", got)
	}
}

func TestOperationsKeysRejectBadValuesNamingTheKey(t *testing.T) {
	cases := []struct {
		name, text, wantInErr string
	}{
		{"unknown admin user", minimal + "\n[admin_console]\nadmin_users = [\"root\"]\n", "[admin_console] admin_users"},
		{"unknown stats user", minimal + "\n[admin_console]\nstats_users = [\"root\"]\n", "[admin_console] stats_users"},
		{"tenant named like the console", minimal + "\n[[tenants]]\nname = \"pgbouncer\"\n", "admin console's database"},
		{"peer id too big", minimal + "\n[peers]\nid = 256\n", "[peers] id"},
		{"peer id negative", minimal + "\n[peers]\nid = -1\n", "[peers] id"},
		{"peer key not a number", minimal + "\n[peers]\nid = 1\n[peers.addrs]\nx = \"127.0.0.1:1\"\n1 = \"127.0.0.1:2\"\n", "key \"x\""},
		{"peer address without port", minimal + "\n[peers]\nid = 1\n[peers.addrs]\n1 = \"localhost\"\n", "[peers] addrs"},
		{"no address of its own", minimal + "\n[peers]\nid = 1\n[peers.addrs]\n2 = \"127.0.0.1:2\"\n", "this process's id 1"},
		{"addresses without an id", minimal + "\n[peers.addrs]\n2 = \"127.0.0.1:2\"\n", "[peers] id"},
		{"unknown audit key", minimal + "\n[audit]\nfile = \"x\"\n", "audit.file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("error %q does not name %q", err, tc.wantInErr)
			}
		})
	}
}
