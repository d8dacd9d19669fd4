package policy

import (
	"fmt"
	"strings"

	"github.com/tenantproxy/tenantproxy/internal/pgident"
)

// Profile is what a user may do inside its tenant: it is chosen per user in the configuration
// ([[users]] profile).
type Profile int

const (
	// ProfileApp is the default: queries, DML, temporary objects and session settings; no DDL.
	ProfileApp Profile = iota
	// ProfileReadonly is for BI tools and analysts: read statements only.
	ProfileReadonly
	// ProfileOwner may also run DDL (the server's grants keep it inside the tenant's own schema).
	ProfileOwner
)

// ParseProfile returns the Profile named by a configuration string: "app", "readonly" (or "analytics")
// or "owner".
func ParseProfile(s string) (Profile, error) {
	switch s {
	case "app":
		return ProfileApp, nil
	case "readonly", "analytics":
		// An analytics user is a read-only user whose session reads the analytics schema only.
		return ProfileReadonly, nil
	case "owner":
		return ProfileOwner, nil
	}
	return 0, fmt.Errorf("unknown profile %q: want app, readonly or owner", s)
}

// String returns the configuration name of p.
func (p Profile) String() string {
	switch p {
	case ProfileApp:
		return "app"
	case ProfileReadonly:
		return "readonly"
	case ProfileOwner:
		return "owner"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// SQLSTATE codes of the guard's refusals.
const (
	// SQLStatePolicy (insufficient_privilege) refuses an escape or a statement the profile may not run.
	SQLStatePolicy = "42501"
	// SQLStateReadOnly (read_only_sql_transaction) refuses a statement that a read-only user may not run,
	// as the server itself does inside a read-only transaction.
	SQLStateReadOnly = "25006"
	// SQLStateSyntax (syntax_error) refuses text that the parser cannot parse.
	SQLStateSyntax = "42601"
	// SQLStateInvalidValue (invalid_parameter_value) refuses a SET whose arguments cannot be a value.
	SQLStateInvalidValue = "22023"
)

// EffectKind is what a statement does that the session must act on.
type EffectKind uint8

// The kinds of Effect.
const (
	// EffectNone is never stored in Analysis.Effects: an ordinary statement has no effect.
	EffectNone EffectKind = iota
	// EffectSetTracked is a plain SET (or RESET, or SET ... TO DEFAULT, then Reset is true) of an allowed
	// setting: the session keeps the client's value and replays it on every lease (ReplaySQL).
	EffectSetTracked
	// EffectSetLocal is SET LOCAL of an allowed setting: it ends with the transaction, nothing to track.
	EffectSetLocal
	// EffectDiscardAll is DISCARD ALL, always the only statement of its message: the session emulates it
	// (drops the client's tracked state and session state, keeps the tenant context) instead of sending it.
	EffectDiscardAll
	// EffectResetAll is RESET ALL, always the only statement of its message: the session emulates it
	// (drops the client's tracked settings, keeps the tenant context) instead of sending it.
	EffectResetAll
	// EffectDiscardTemp is DISCARD TEMP (also part of DISCARD ALL): the client's temporary objects are gone.
	EffectDiscardTemp
	// EffectTempTable creates a temporary table, view, sequence or other object in pg_temp (Name is the
	// object's name): it outlives the transaction unless Transient (ON COMMIT DROP).
	EffectTempTable
	// EffectHoldCursor is DECLARE ... WITH HOLD (Name is the cursor): it outlives the transaction.
	EffectHoldCursor
	// EffectClose is CLOSE of a cursor (Name; empty for CLOSE ALL).
	EffectClose
	// EffectListen is LISTEN (Name is the channel). Channels are database-wide: shared by all tenants.
	EffectListen
	// EffectUnlisten is UNLISTEN (Name is the channel; empty for UNLISTEN *).
	EffectUnlisten
	// EffectNotify is NOTIFY (Name is the channel, Value the payload) or a call of pg_notify() (Name is the
	// channel when it is a string constant, empty otherwise).
	EffectNotify
	// EffectAdvisoryLock is a call of a session-level advisory lock function anywhere in the statement
	// (Name is the function): the lock outlives the transaction.
	EffectAdvisoryLock
	// EffectAdvisoryUnlock is a call of pg_advisory_unlock, pg_advisory_unlock_shared or
	// pg_advisory_unlock_all (Name is the function).
	EffectAdvisoryUnlock
	// EffectPrepare is SQL-level PREPARE (Name is the statement name).
	EffectPrepare
	// EffectExecute is SQL-level EXECUTE (Name is the statement name).
	EffectExecute
	// EffectDeallocate is SQL-level DEALLOCATE (Name; empty for DEALLOCATE ALL).
	EffectDeallocate
	// EffectBegin is BEGIN or START TRANSACTION.
	EffectBegin
	// EffectCommit is COMMIT (or END); Chain is set for COMMIT AND CHAIN.
	EffectCommit
	// EffectRollback is ROLLBACK (or ABORT); Chain is set for ROLLBACK AND CHAIN.
	EffectRollback
	// EffectSavepoint is SAVEPOINT (Name is the savepoint).
	EffectSavepoint
	// EffectRelease is RELEASE SAVEPOINT (Name is the savepoint).
	EffectRelease
	// EffectRollbackTo is ROLLBACK TO SAVEPOINT (Name is the savepoint): settings changed after it revert.
	EffectRollbackTo
	// EffectTerminateSelf is SELECT pg_terminate_backend(pg_backend_pid()): the client ends its own
	// session, which the session answers as PostgreSQL does (FATAL 57P01), closing the backend.
	EffectTerminateSelf
)

var effectNames = [...]string{
	EffectNone: "none", EffectSetTracked: "set", EffectSetLocal: "set local", EffectDiscardAll: "discard all",
	EffectResetAll: "reset all", EffectDiscardTemp: "discard temp", EffectTempTable: "temp object",
	EffectHoldCursor: "hold cursor", EffectClose: "close", EffectListen: "listen", EffectUnlisten: "unlisten",
	EffectNotify: "notify", EffectAdvisoryLock: "advisory lock", EffectAdvisoryUnlock: "advisory unlock",
	EffectPrepare: "prepare", EffectExecute: "execute", EffectDeallocate: "deallocate", EffectBegin: "begin",
	EffectCommit: "commit", EffectRollback: "rollback", EffectSavepoint: "savepoint", EffectRelease: "release",
	EffectRollbackTo: "rollback to", EffectTerminateSelf: "terminate self",
}

// String returns a short lower-case name of k for logs.
func (k EffectKind) String() string {
	if int(k) < len(effectNames) {
		return effectNames[k]
	}
	return fmt.Sprintf("EffectKind(%d)", int(k))
}

// Effect is one thing a statement of a message does that the session must act on.
type Effect struct {
	Kind EffectKind
	// Stmt is the index, from 0, of the statement of the message that has this effect. A statement may
	// have several effects (SET SESSION CHARACTERISTICS sets up to three settings).
	Stmt int
	// Name is the setting's canonical lower-case name (EffectSetTracked, EffectSetLocal), or the name of the
	// object, statement, cursor, channel, function or savepoint the Kind describes.
	Name string
	// Value is, for EffectSetTracked and EffectSetLocal, the setting's new value as PostgreSQL receives it
	// (string constants unquoted, identifiers folded, numbers as written, the arguments of a list setting
	// joined with ", "); for search_path it is List quoted as identifiers and joined with ", ". For
	// EffectNotify it is the payload.
	Value string
	// List holds, for search_path, the schema names exactly as PostgreSQL resolves them.
	List []string
	// Reset is set for RESET name and SET name TO DEFAULT: the client's value is dropped.
	Reset bool
	// Transient is set for a temporary table created ON COMMIT DROP: it ends with the transaction.
	Transient bool
	// Chain is set for COMMIT AND CHAIN and ROLLBACK AND CHAIN: a new transaction begins at once.
	Chain bool
}

// ReplaySQL returns the statement that sets a tracked setting to the client's value on a backend:
// "SET name TO 'value'" (the value quoted as a literal), or "SET search_path TO "a", "b"" for search_path.
// It returns "" for any other effect and for a reset, which has nothing to replay.
func (e Effect) ReplaySQL() string {
	if e.Kind != EffectSetTracked || e.Reset {
		return ""
	}
	if e.Name == "search_path" {
		return "SET search_path TO " + e.Value
	}
	return "SET " + e.Name + " TO " + pgident.QuoteLiteral(e.Value)
}

// Analysis is the guard's verdict on one message.
type Analysis struct {
	// Refused is set when the message must not reach a backend; the client gets an ErrorResponse with
	// SQLState and Reason, and nothing of the message runs.
	Refused bool
	// SQLState is 42501 (policy), 25006 (a read-only user), 42601 (unparsable text) or 22023 (a SET with
	// an impossible value) when Refused.
	SQLState string
	// Reason is the message for the client, naming what is refused and why. A refusal of tenantproxy's own
	// starts with "tenantproxy: "; an error the server itself would raise (ServerError) is worded exactly
	// as the server words it.
	Reason string
	// ServerError is set when the refusal is an error PostgreSQL itself would raise for the text (a syntax
	// error, several commands in one Parse): the client must get it exactly as the server sends it.
	ServerError bool
	// Position is, for a ServerError with a cursor position, the ErrorResponse Position field: 1-based, in
	// characters of the text; 0 when there is none.
	Position int
	// Statement is the index, from 0, of the refused statement; -1 when the whole message is refused, and
	// when nothing is.
	Statement int
	// Statements is the number of statements in the message (0 for an empty query).
	Statements int
	// Effects lists, in statement order, what the statements do that the session must act on. It is shared
	// by every caller of the same text and must not be modified.
	Effects []Effect
	// Spans are where the statements lie in the text, one per statement (when it is not refused), for
	// rewriting one statement of several. Shared like Effects.
	Spans []Span
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// TenantSetting is the custom setting that carries the tenant, for example "tenantproxy.tenant". It is
	// refused like every other setting with a dot in its name; naming it gives it its own message.
	TenantSetting string
	// CacheSize is the number of statement texts whose classification is cached; 10000 when zero.
	CacheSize int
	// MaxCachedLen is the longest text, in bytes, that is cached; 32 KiB when zero. Longer texts are parsed
	// every time, so the cache's memory stays bounded by about CacheSize × MaxCachedLen.
	MaxCachedLen int
}

// Guard classifies statements with PostgreSQL's own grammar and decides, per profile and tenant, what may
// run. It caches classifications by statement text and is safe for concurrent use.
type Guard struct {
	tenantSetting string
	cache         *verdictCache
}

// NewGuard returns a Guard configured by cfg.
func NewGuard(cfg GuardConfig) *Guard {
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.MaxCachedLen <= 0 {
		cfg.MaxCachedLen = 32 << 10
	}
	tenant, _ := NormalizeSettingName(cfg.TenantSetting)
	return &Guard{tenantSetting: tenant, cache: newVerdictCache(cfg.CacheSize, cfg.MaxCachedLen)}
}

// TenantSetting returns the guard's tenant setting, lower-cased ("" when none is configured).
func (g *Guard) TenantSetting() string { return g.tenantSetting }

// Check decides whether a simple Query message with text sql may run for a user of profile p whose tenant
// owns allowedSchemas (the only schemas search_path may name, as PostgreSQL spells them: unquoted
// lower-case names). A cached verdict costs a map lookup and does not allocate.
func (g *Guard) Check(sql string, p Profile, allowedSchemas []string) Analysis {
	return g.Classify(sql).Decide(p, allowedSchemas)
}

// CheckParse decides whether a Parse message with text sql may be prepared. A Parse message holds at most
// one statement, as PostgreSQL requires; an empty text is allowed, as in PostgreSQL.
func (g *Guard) CheckParse(sql string, p Profile, allowedSchemas []string) Analysis {
	c := g.Classify(sql)
	if c.refusal == nil && len(c.stmts) > 1 {
		// The server's own error, word for word (it has no position).
		return Analysis{Refused: true, SQLState: SQLStateSyntax, Statement: 1, Statements: len(c.stmts), ServerError: true,
			Reason: "cannot insert multiple commands into a prepared statement"}
	}
	return c.Decide(p, allowedSchemas)
}

// Classify returns the tenant-independent classification of sql, from the cache when it is there.
func (g *Guard) Classify(sql string) *Classification {
	if c := g.cache.get(sql); c != nil {
		return c
	}
	c := g.classify(sql)
	g.cache.put(sql, c)
	return c
}

// Cached returns the classification of sql when it is in the cache, and nil otherwise; it never parses
// and does not allocate.
func (g *Guard) Cached(sql string) *Classification {
	return g.cache.get(sql)
}

// level is the least profile a statement needs.
type level uint8

const (
	levelRead  level = iota // every profile
	levelWrite              // app and owner: DML, temporary objects
	levelOwner              // owner: DDL
)

// stmtInfo is what Decide needs of one statement.
type stmtInfo struct {
	level level
	// tag names the statement in messages, for example "INSERT" or "CREATE TABLE".
	tag string
	// appReason, when set, replaces the general reason why the app profile may not run the statement.
	appReason string
	// readWrite is set when the statement turns read-only transactions off (BEGIN READ WRITE,
	// SET default_transaction_read_only = off, ...), which a read-only user may not do.
	readWrite bool
	// schemas are the schemas the statement puts on a search_path; each must be one of the tenant's.
	schemas []string
}

// refusal is a tenant- and profile-independent refusal.
type refusal struct {
	sqlState string
	reason   string
	stmt     int
	// server is set for an error the server would raise itself; position is its cursor position.
	server   bool
	position int
}

// Classification is the tenant-independent result of parsing one message text. It is immutable and shared
// by every caller of the same text.
type Classification struct {
	refusal *refusal
	stmts   []stmtInfo
	effects []Effect
	spans   []Span
}

// Span is where one statement of a message lies in its text: bytes [Start, End), without the semicolon
// that ends it.
type Span struct{ Start, End int }

// Statements returns the number of statements in the text (0 when it cannot be parsed).
func (c *Classification) Statements() int { return len(c.stmts) }

// Decide returns the verdict on the classified message for a user of profile p whose tenant owns
// allowedSchemas. It does not allocate unless it refuses.
func (c *Classification) Decide(p Profile, allowedSchemas []string) Analysis {
	if r := c.refusal; r != nil {
		return Analysis{Refused: true, SQLState: r.sqlState, Reason: r.reason, Statement: r.stmt, Statements: len(c.stmts),
			ServerError: r.server, Position: r.position}
	}
	if p != ProfileApp && p != ProfileReadonly && p != ProfileOwner {
		return Analysis{Refused: true, SQLState: SQLStatePolicy, Statement: -1, Statements: len(c.stmts),
			Reason: "tenantproxy: the user's profile is unknown, so no statement may run"}
	}
	for i := range c.stmts {
		s := &c.stmts[i]
		if reason, state := s.profileRefusal(p); reason != "" {
			return Analysis{Refused: true, SQLState: state, Reason: reason, Statement: i, Statements: len(c.stmts)}
		}
		for _, schema := range s.schemas {
			if reason := schemaRefusal(schema, allowedSchemas); reason != "" {
				return Analysis{Refused: true, SQLState: SQLStatePolicy, Reason: reason, Statement: i, Statements: len(c.stmts)}
			}
		}
	}
	return Analysis{Statement: -1, Statements: len(c.stmts), Effects: c.effects, Spans: c.spans}
}

// profileRefusal returns why profile p may not run the statement, and the SQLSTATE, or "" when it may.
func (s *stmtInfo) profileRefusal(p Profile) (string, string) {
	switch p {
	case ProfileReadonly:
		if s.level > levelRead {
			return "tenantproxy: " + s.tag + " is not allowed: the user is read-only", SQLStateReadOnly
		}
		if s.readWrite {
			return "tenantproxy: " + s.tag + " is not allowed: the user is read-only, so transactions stay read-only", SQLStateReadOnly
		}
	case ProfileApp:
		if s.level > levelWrite {
			if s.appReason != "" {
				return "tenantproxy: " + s.tag + " is not allowed: " + s.appReason, SQLStatePolicy
			}
			return "tenantproxy: " + s.tag + " is not allowed: schema changes need the owner profile", SQLStatePolicy
		}
	}
	return "", ""
}

// schemaRefusal returns why schema may not be on the search_path of a tenant owning allowed, or "".
func schemaRefusal(schema string, allowed []string) string {
	if schema == "$user" {
		return `tenantproxy: search_path may not name "$user": it may name only the tenant's schemas (` + strings.Join(allowed, ", ") + ")"
	}
	for _, a := range allowed {
		if a == schema {
			return ""
		}
	}
	return "tenantproxy: search_path may name only the tenant's schemas (" + strings.Join(allowed, ", ") + "): " +
		pgident.Quote(schema) + " is not one of them"
}
