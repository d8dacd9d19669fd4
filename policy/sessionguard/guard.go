// Package sessionguard adapts the statement guard of package policy to the relay of package session: it
// turns the guard's analysis of a message into the session.Verdict the relay acts on — refuse, emulate,
// pin, rewrite, or track settings — and scopes notification channels to the tenant.
package sessionguard

import (
	"fmt"
	"strings"
	"sync"

	"github.com/tenantproxy/tenantproxy/internal/pgident"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// Verdict and Tenant are the relay's.
type (
	Verdict = session.Verdict
	Tenant  = session.Tenant
	Setting = session.Setting
)

// Guard adapts the statement guard of package policy to the relay: it turns the guard's analysis of
// a message into what the session does — refuse, emulate, pin, or track settings.
//
// Simple-protocol clients inline their values, so every text differs and a cache by text would never hit
// (pgbench -M simple, ORMs without bind parameters). Guard therefore also remembers, by the text with
// its constants replaced, the single DML or SELECT statements the guard allowed with no effect at all: by
// shapeKey, a narrow scanner that answers only where its tokens are certainly PostgreSQL's (a few tens of
// nanoseconds), else by PostgreSQL's own normalization (policy.Normalize, over a microsecond). Only constants differ between such texts, and the
// guard's verdict on a plain statement depends on its structure, functions and names, never on constant
// values; statements whose verdict may depend on values (SET, COPY, utility statements, anything with an
// effect or a refusal) are never remembered this way.
type Guard struct {
	G     *policy.Guard
	plain plainCache
}

// New returns a Guard over g.
func New(g *policy.Guard) *Guard { return &Guard{G: g} }

var _ session.Guard = (*Guard)(nil)

// plainCache holds the shapes (shapeKey) and, for texts shapeKey declines, the normalized texts of allowed
// plain statements, per profile.
type plainCache struct {
	mu     sync.RWMutex
	shapes [3]map[string]struct{}
	norms  [3]map[string]struct{}
}

const plainCacheMax = 20000

func (c *plainCache) has(p policy.Profile, shape bool, key []byte) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m := c.norms[p]
	if shape {
		m = c.shapes[p]
	}
	_, ok := m[string(key)]
	return ok
}

func (c *plainCache) add(p policy.Profile, shape bool, key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := &c.norms[p]
	if shape {
		m = &c.shapes[p]
	}
	if *m == nil || len(*m) >= plainCacheMax {
		*m = make(map[string]struct{}, 1024)
	}
	(*m)[string(key)] = struct{}{}
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

// Check implements session.Guard.
func (pg *Guard) Check(sql string, profile string, t *Tenant, parse bool) Verdict {
	p, err := policy.ParseProfile(profile)
	if err != nil {
		return Verdict{Refused: true, Code: policy.SQLStatePolicy, Message: "tenantproxy: the user's profile is unknown, so no statement may run"}
	}
	if c := pg.G.Cached(sql); c != nil {
		var a policy.Analysis
		if parse {
			a = pg.G.CheckParse(sql, p, t.AllowedSchemas)
		} else {
			a = c.Decide(p, t.AllowedSchemas)
		}
		return pg.verdict(sql, a, t)
	}
	var keyBuf [256]byte
	var key []byte
	shape := false
	if !parse && plainPrefix(sql) && int(p) < len(pg.plain.shapes) {
		if k, ok := shapeKey(keyBuf[:0], sql); ok {
			key, shape = k, true
		} else if norm, err := policy.Normalize(sql); err == nil {
			key = []byte(norm)
		}
		if key != nil && pg.plain.has(p, shape, key) {
			return Verdict{}
		}
	}
	var a policy.Analysis
	if parse {
		a = pg.G.CheckParse(sql, p, t.AllowedSchemas)
	} else {
		a = pg.G.Check(sql, p, t.AllowedSchemas)
	}
	if !a.Refused && len(a.Effects) == 0 && key != nil && a.Statements == 1 {
		pg.plain.add(p, shape, key)
	}
	return pg.verdict(sql, a, t)
}

// verdict turns the guard's analysis into what the relay does.
func (pg *Guard) verdict(sql string, a policy.Analysis, t *Tenant) Verdict {
	if a.Refused {
		return Verdict{Refused: true, Code: a.SQLState, Message: a.Reason, Position: a.Position}
	}
	if len(a.Effects) == 0 {
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
		case policy.EffectCommit:
			if e.Chain {
				v.Sets = append(v.Sets, Setting{Savepoint: session.CommitChain})
			}
		case policy.EffectRollback:
			if e.Chain {
				v.Sets = append(v.Sets, Setting{Savepoint: session.RollbackChain})
			}
		case policy.EffectSavepoint:
			v.Sets = append(v.Sets, Setting{Name: e.Name, Savepoint: session.SavepointDefine})
		case policy.EffectRelease:
			v.Sets = append(v.Sets, Setting{Name: e.Name, Savepoint: session.SavepointRelease})
		case policy.EffectRollbackTo:
			v.Sets = append(v.Sets, Setting{Name: e.Name, Savepoint: session.SavepointRollback})
		case policy.EffectDiscardAll:
			v.Emulate = session.EmulateDiscardAll
		case policy.EffectResetAll:
			v.Emulate = session.EmulateResetAll
		case policy.EffectTempTable:
			if !e.Transient {
				v.Pin = "temporary object " + e.Name
			}
		case policy.EffectHoldCursor:
			v.Pin = "WITH HOLD cursor " + e.Name
		case policy.EffectListen, policy.EffectUnlisten, policy.EffectNotify:
			return scopeChannel(sql, a.Statements, e, t, v)
		case policy.EffectAdvisoryLock:
			v.Pin = "session advisory lock (" + e.Name + ")"
		case policy.EffectPrepare:
			v.Pin = "SQL PREPARE " + e.Name
			v.Prepares = append(v.Prepares, e.Name)
		case policy.EffectExecute:
			v.Executes = append(v.Executes, e.Name)
		case policy.EffectDeallocate:
			if a.Statements == 1 {
				v.Emulate, v.Name = session.EmulateDeallocateAll, ""
				if e.Name != "" {
					v.Emulate, v.Name = session.EmulateDeallocate, e.Name
				}
			}
		}
	}
	return v
}

// Notification channels are database-wide, so the relay gives each tenant its own: LISTEN, UNLISTEN and
// NOTIFY are rewritten to the channel "<tenant>.<channel>", and the channel of every notification is given
// back to the client without the prefix. A client never hears another tenant's notifications, nor sends
// to their channels. pg_notify() inside an expression cannot be rewritten and is refused.

// channelSep separates the tenant from the client's channel name on the server.
const channelSep = session.ChannelSeparator

// scopeChannel rewrites a lone LISTEN, UNLISTEN or NOTIFY to the tenant's channel.
func scopeChannel(sql string, statements int, e policy.Effect, t *Tenant, v Verdict) Verdict {
	refuse := func(code, msg string) Verdict {
		return Verdict{Refused: true, Code: code, Message: msg}
	}
	kw := firstKeyword(sql)
	if e.Kind == policy.EffectNotify && kw != "notify" {
		return refuse("42501", "tenantproxy: pg_notify() is not allowed: channels are shared by all tenants; use NOTIFY, which the proxy keeps within the tenant")
	}
	if statements != 1 {
		return refuse("0A000", "tenantproxy: LISTEN, UNLISTEN and NOTIFY must be sent alone, one statement per message, so the proxy can keep channels within the tenant")
	}
	if e.Kind == policy.EffectUnlisten && e.Name == "" {
		v.Rewrite = "UNLISTEN *"
		return v
	}
	channel := t.Name + channelSep + e.Name
	if len(channel) > 63 {
		return refuse("42622", fmt.Sprintf("tenantproxy: channel name %q is too long: with the tenant's prefix it must fit in 63 bytes", e.Name))
	}
	switch e.Kind {
	case policy.EffectListen:
		v.Pin = "LISTEN " + e.Name
		v.Rewrite = "LISTEN " + pgident.Quote(channel)
	case policy.EffectUnlisten:
		v.Rewrite = "UNLISTEN " + pgident.Quote(channel)
	case policy.EffectNotify:
		v.Rewrite = "NOTIFY " + pgident.Quote(channel)
		if e.Value != "" {
			v.Rewrite += ", " + pgident.QuoteLiteral(e.Value)
		}
	}
	return v
}

// firstKeyword returns the first word of sql, lower-cased, after white space and comments.
func firstKeyword(sql string) string {
	i := 0
	for i < len(sql) {
		switch {
		case sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '(':
			i++
		case strings.HasPrefix(sql[i:], "--"):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case strings.HasPrefix(sql[i:], "/*"):
			depth := 0
			for i < len(sql) {
				if strings.HasPrefix(sql[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(sql[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			j := i
			for j < len(sql) && (sql[j]|0x20 >= 'a' && sql[j]|0x20 <= 'z') {
				j++
			}
			return strings.ToLower(sql[i:j])
		}
	}
	return ""
}
