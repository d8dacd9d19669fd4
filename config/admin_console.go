package config

import (
	"fmt"
	"net"
	"sort"
	"strconv"
)

// AdminConsole is who may use the admin console (the virtual databases "pgbouncer" and "tenantproxy").
// Both kinds of user authenticate as any [[users]] entry does and need no tenants.
type AdminConsole struct {
	// AdminUsers may run SHOW and every control command (pgbouncer's admin_users).
	AdminUsers []string `toml:"admin_users"`
	// StatsUsers may run SHOW only (pgbouncer's stats_users).
	StatsUsers []string `toml:"stats_users"`
}

// Audit is the audit log.
type Audit struct {
	// Path is a JSON-lines file appended to, "-" for stdout, or "" for no audit log.
	Path string `toml:"path"`
}

// MaxPeerID is the largest peer id: the id lives in the top 8 bits of a cancel key's process id.
const MaxPeerID = 255

// Peers is cancel-request forwarding between processes sharing one listen address (pgbouncer's
// peering): a cancel key names the process that issued it, and a cancel request that reached another
// process is forwarded to it.
type Peers struct {
	// ID is this process's peer id (1..255); 0 turns peering off.
	ID int `toml:"id"`
	// Addrs maps each peer's id to the address it accepts forwarded cancel requests on; this process
	// listens on its own entry (each process needs its own address: the shared one balances).
	Addrs map[string]string `toml:"addrs"`
}

// PeerAddrs returns Addrs keyed by number; Validate has checked the keys.
func (p Peers) PeerAddrs() map[int]string {
	out := make(map[int]string, len(p.Addrs))
	for k, v := range p.Addrs {
		id, _ := strconv.Atoi(k)
		out[id] = v
	}
	return out
}

func (c *Config) validateOperations(bad func(key, format string, a ...any)) {
	users := map[string]bool{}
	for _, u := range c.Users {
		users[u.Name] = true
	}
	for key, list := range map[string][]string{"[admin_console] admin_users": c.AdminConsole.AdminUsers, "[admin_console] stats_users": c.AdminConsole.StatsUsers} {
		for _, u := range list {
			if !users[u] {
				bad(key, "user %q is not in [[users]]", u)
			}
		}
	}
	for _, t := range c.Tenants {
		if t.Name == "pgbouncer" || t.Name == "tenantproxy" {
			bad(fmt.Sprintf("[[tenants]] %s name", t.Name), "%q is the admin console's database name", t.Name)
		}
	}
	if c.Peers.ID < 0 || c.Peers.ID > MaxPeerID {
		bad("[peers] id", "must be 0 (off) to %d, got %d", MaxPeerID, c.Peers.ID)
	}
	keys := make([]string, 0, len(c.Peers.Addrs))
	for k := range c.Peers.Addrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		id, err := strconv.Atoi(k)
		if err != nil || id < 1 || id > MaxPeerID {
			bad("[peers] addrs", "key %q must be a peer id 1..%d", k, MaxPeerID)
			continue
		}
		if _, _, err := net.SplitHostPort(c.Peers.Addrs[k]); err != nil {
			bad("[peers] addrs", "peer %s: %v", k, err)
		}
	}
	if c.Peers.ID != 0 && len(c.Peers.Addrs) > 0 {
		if _, ok := c.Peers.Addrs[strconv.Itoa(c.Peers.ID)]; !ok {
			bad("[peers] addrs", "has no address for this process's id %d", c.Peers.ID)
		}
	}
	if c.Peers.ID == 0 && len(c.Peers.Addrs) > 0 {
		bad("[peers] id", "must be set when [peers] addrs is")
	}
}
