package session

import (
	"sync"

	"github.com/tenantproxy/tenantproxy/policy"
)

// PolicyGuard adapts the statement guard of package policy to the relay: it turns the guard's analysis of
// a message into what the session does — refuse, emulate, pin, or track settings.
//
// Simple-protocol clients inline their values, so every text differs and a cache by text would never hit
// (pgbench -M simple, ORMs without bind parameters). PolicyGuard therefore also remembers, by the text with
// its constants replaced (PostgreSQL's own normalization through policy.Normalize, about a microsecond), the single DML or SELECT
// statements the guard allowed with no effect at all. Only constants differ between such texts, and the
// guard's verdict on a plain statement depends on its structure, functions and names, never on constant
// values; statements whose verdict may depend on values (SET, COPY, utility statements, anything with an
// effect or a refusal) are never remembered this way.
type PolicyGuard struct {
	G     *policy.Guard
	plain plainCache
}

// NewPolicyGuard returns a PolicyGuard over g.
func NewPolicyGuard(g *policy.Guard) *PolicyGuard { return &PolicyGuard{G: g} }

// plainCache holds normalized texts of allowed plain statements, per profile.
type plainCache struct {
	mu sync.RWMutex
	m  map[plainKey]struct{}
}

type plainKey struct {
	profile policy.Profile
	text    string
}

const plainCacheMax = 20000

func (c *plainCache) has(k plainKey) bool {
	c.mu.RLock()
	_, ok := c.m[k]
	c.mu.RUnlock()
	return ok
}

func (c *plainCache) add(k plainKey) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= plainCacheMax {
		c.m = make(map[plainKey]struct{}, 1024)
	}
	c.m[k] = struct{}{}
	c.mu.Unlock()
}

// plainPrefix reports whether sql starts with a key word of a plain DML or query statement.
func plainPrefix(sql string) bool {
	i := 0
	for i < len(sql) && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r') {
		i++
	}
	j := i
	for j < len(sql) && (sql[j]|0x20 >= 'a' && sql[j]|0x20 <= 'z') {
		j++
	}
	if j == i || j-i > 6 {
		return false
	}
	var w [6]byte
	for k := i; k < j; k++ {
		w[k-i] = sql[k] | 0x20
	}
	switch string(w[:j-i]) {
	case "select", "insert", "update", "delete", "with", "values", "table":
		return true
	}
	return false
}

// Check implements Guard.
func (pg *PolicyGuard) Check(sql string, profile string, t *Tenant, parse bool) Verdict {
	p, err := policy.ParseProfile(profile)
	if err != nil {
		return Verdict{Refused: true, Code: policy.SQLStatePolicy, Message: "tenantproxy: the user's profile is unknown, so no statement may run"}
	}
	var key plainKey
	if !parse && plainPrefix(sql) {
		if norm, err := policy.Normalize(sql); err == nil {
			key = plainKey{profile: p, text: norm}
			if pg.plain.has(key) {
				return Verdict{}
			}
		}
	}
	var a policy.Analysis
	if parse {
		a = pg.G.CheckParse(sql, p, t.AllowedSchemas)
	} else {
		a = pg.G.Check(sql, p, t.AllowedSchemas)
	}
	if a.Refused {
		return Verdict{Refused: true, Code: a.SQLState, Message: a.Reason}
	}
	if len(a.Effects) == 0 {
		if key.text != "" && a.Statements == 1 {
			pg.plain.add(key)
		}
		return Verdict{}
	}
	var v Verdict
	for _, e := range a.Effects {
		switch e.Kind {
		case policy.EffectSetTracked:
			st := Setting{Name: e.Name, Reset: e.Reset}
			if e.Name == "search_path" {
				st.Values = e.List
			} else {
				st.Values = []string{e.Value}
			}
			v.Sets = append(v.Sets, st)
		case policy.EffectDiscardAll:
			v.Emulate = EmulateDiscardAll
		case policy.EffectResetAll:
			v.Emulate = EmulateResetAll
		case policy.EffectTempTable:
			if !e.Transient {
				v.Pin = "temporary object " + e.Name
			}
		case policy.EffectHoldCursor:
			v.Pin = "WITH HOLD cursor " + e.Name
		case policy.EffectListen:
			v.Pin = "LISTEN " + e.Name
		case policy.EffectAdvisoryLock:
			v.Pin = "session advisory lock (" + e.Name + ")"
		case policy.EffectPrepare:
			v.Pin = "SQL PREPARE " + e.Name
		case policy.EffectDeallocate:
			if e.Name == "" && a.Statements == 1 {
				v.Emulate = EmulateDeallocateAll
			}
		}
	}
	return v
}
