// Package sessionguard adapts the statement guard of package policy to the relay of package session: it
// turns the guard's analysis of a message into the session.Verdict the relay acts on — refuse, emulate,
// pin, rewrite, or track settings — and scopes notification channels to the tenant.
package sessionguard

import (
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgerrcode"

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
			return Verdict{Plain: true}
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
		return Verdict{Plain: a.Statements == 1 && plainPrefix(sql)}
	}
	var v Verdict
	var rw rewrites
	for _, e := range a.Effects {
		switch e.Kind {
		case policy.EffectSetTracked:
			st := Setting{Name: e.Name, Reset: e.Reset}
			if e.Name == "search_path" {
				st.Values = e.List
				if e.Reset {
					rw.add(e.Stmt, "SET search_path TO "+tenantSearchPath(t))
				}
			} else {
				st.Values = []string{e.Value}
			}
			v.Sets = append(v.Sets, st)
		case policy.EffectSetLocal:
			if e.Name == "search_path" && e.Reset {
				rw.add(e.Stmt, "SET LOCAL search_path TO "+tenantSearchPath(t))
			}
		case policy.EffectTerminateSelf:
			if a.Statements != 1 {
				return Verdict{Refused: true, Code: pgerrcode.FeatureNotSupported, Message: "tenantproxy: SELECT pg_terminate_backend(pg_backend_pid()) must be sent alone, one statement per message"}
			}
			v.Terminate = true
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
			text, pin, refused := scopeChannel(stmtOf(sql, a, e.Stmt), e, t)
			if refused != nil {
				return *refused
			}
			if pin != "" {
				v.Pin = pin
			}
			rw.add(e.Stmt, text)
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
	if len(rw) > 0 {
		text, ok := rw.apply(sql, a)
		if !ok {
			return Verdict{Refused: true, Code: pgerrcode.FeatureNotSupported, Message: "tenantproxy: LISTEN, UNLISTEN, NOTIFY and RESET search_path among other statements of a message with non-ASCII text must be sent alone, so the proxy can rewrite them for the tenant"}
		}
		v.Rewrite = text
	}
	return v
}

// tenantSearchPath is the tenant's own search_path, quoted: what RESET search_path restores.
func tenantSearchPath(t *Tenant) string {
	path := policy.TenantSearchPath(t.AllowedSchemas)
	if len(path) == 0 {
		return "''"
	}
	quoted := make([]string, len(path))
	for i, p := range path {
		quoted[i] = pgident.Quote(p)
	}
	return strings.Join(quoted, ", ")
}

// rewrites are statements of a message the relay sends in another form (tenant-scoped channels, the
// tenant's search_path for RESET search_path).
type rewrites []struct {
	stmt int
	text string
}

func (r *rewrites) add(stmt int, text string) {
	*r = append(*r, struct {
		stmt int
		text string
	}{stmt, text})
}

// apply returns the message text with each rewritten statement in place of the client's, the others as
// the client wrote them. A message of one statement is the rewritten statement alone. Several statements
// are rewritten in place only when the text is ASCII: the guard reads text converted to UTF-8 from the
// client's encoding, and the offsets of the other statements are those of that text.
func (r rewrites) apply(sql string, a policy.Analysis) (string, bool) {
	if a.Statements == 1 && len(r) == 1 {
		return r[0].text, true
	}
	if len(a.Spans) != a.Statements || !isASCII(sql) {
		return "", false
	}
	var b strings.Builder
	at := 0
	for _, w := range r {
		sp := a.Spans[w.stmt]
		if sp.Start < at || sp.End > len(sql) {
			return "", false
		}
		_, lead := keywordAt(sql[sp.Start:sp.End]) // the white space and comments before it stay
		b.WriteString(sql[at : sp.Start+lead])
		b.WriteString(w.text)
		at = sp.End
	}
	b.WriteString(sql[at:])
	return b.String(), true
}

// stmtOf returns the text of statement i of the message.
func stmtOf(sql string, a policy.Analysis, i int) string {
	if i < 0 || i >= len(a.Spans) {
		return sql
	}
	sp := a.Spans[i]
	if sp.Start < 0 || sp.End > len(sql) || sp.Start > sp.End {
		return sql
	}
	return sql[sp.Start:sp.End]
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Notification channels are database-wide, so the relay gives each tenant its own: LISTEN, UNLISTEN and
// NOTIFY are rewritten to the channel "<tenant>.<channel>", and the channel of every notification is given
// back to the client without the prefix. A client never hears another tenant's notifications, nor sends
// to their channels. pg_notify() inside an expression cannot be rewritten and is refused.

// channelSep separates the tenant from the client's channel name on the server.
const channelSep = session.ChannelSeparator

// scopeChannel returns the statement that stands for a LISTEN, UNLISTEN or NOTIFY (stmt is its text) on
// the tenant's channel, and the pin LISTEN needs; or the refusal.
func scopeChannel(stmt string, e policy.Effect, t *Tenant) (text, pin string, refused *Verdict) {
	refuse := func(code, msg string) (string, string, *Verdict) {
		return "", "", &Verdict{Refused: true, Code: code, Message: msg}
	}
	if e.Kind == policy.EffectNotify && firstKeyword(stmt) != "notify" {
		return refuse(pgerrcode.InsufficientPrivilege, "tenantproxy: pg_notify() is not allowed: channels are shared by all tenants; use NOTIFY, which the proxy keeps within the tenant")
	}
	if e.Kind == policy.EffectUnlisten && e.Name == "" {
		return "UNLISTEN *", "", nil
	}
	channel := t.Name + channelSep + e.Name
	if len(channel) > 63 {
		return refuse(pgerrcode.NameTooLong, fmt.Sprintf("tenantproxy: channel name %q is too long: with the tenant's prefix it must fit in 63 bytes", e.Name))
	}
	switch e.Kind {
	case policy.EffectListen:
		return "LISTEN " + pgident.Quote(channel), "LISTEN " + e.Name, nil
	case policy.EffectUnlisten:
		return "UNLISTEN " + pgident.Quote(channel), "", nil
	}
	text = "NOTIFY " + pgident.Quote(channel)
	if e.Value != "" {
		text += ", " + pgident.QuoteLiteral(e.Value)
	}
	return text, "", nil
}

// firstKeyword returns the first word of sql, lower-cased, after white space and comments.
func firstKeyword(sql string) string {
	kw, _ := keywordAt(sql)
	return kw
}

// keywordAt returns the first word of sql, lower-cased, and where it starts, after white space, comments
// and opening parentheses.
func keywordAt(sql string) (string, int) {
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
			return strings.ToLower(sql[i:j]), i
		}
	}
	return "", len(sql)
}
