package session

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
)

var errEOF = errors.New("connection closed by peer")

// Tenant is what the relay knows of a tenant: its names and the setup SQL that puts a backend in its
// context. A Tenant is immutable once handed to the Engine; a reload hands over new values.
type Tenant struct {
	Name   string
	Schema string
	// SetupSQL sets role, search_path and the tenant setting, e.g.
	// `SET ROLE "tenant_acme"; SET search_path TO "acme", "public"; SET tenantproxy.tenant TO 'acme'`.
	SetupSQL string
	// VerifySQL returns one boolean: whether the backend is in this tenant's context (the tripwire).
	VerifySQL string
	// AllowedSchemas are the schemas a client of this tenant may put on its search_path.
	AllowedSchemas []string
	// Suspended tenants get no new leases.
	Suspended bool
	// Limits are the tenant's own limits; they change at runtime through SetTenants or the Engine's
	// setters and take effect at the next lease or connection, without dropping anyone.
	Limits TenantLimits

	// The fields below belong to the loop.
	active  int        // backends leased by this tenant's sessions now
	waiters []*Session // FIFO of sessions waiting for a backend
	// ringPrev and ringNext link the tenant into the fair queue's ring of tenants with waiters.
	ringPrev, ringNext *Tenant
	turns              int           // grants left in its turn of the weighted round (queue.nextWaiter)
	shared             *tenantShared // what the shards of a Group count together
	clients            int           // sessions of this tenant attached to this Engine
	paused             bool          // admin PAUSE: no new leases until RESUME
	disabled           bool          // admin DISABLE: no new clients until ENABLE
	stats              TenantStats   // of the sessions that closed; live sessions' are added at snapshot time
}

// TenantLimits are one tenant's limits. Zero means the pool's default for that limit.
type TenantLimits struct {
	// Weight is the tenant's share of the backends freed while several tenants wait: a tenant of weight
	// 2 is served twice per round of the fair queue where one of weight 1 is served once (default 1).
	Weight int
	// MaxBackends caps the backends the tenant holds at once (default Config.TenantMaxBackends).
	MaxBackends int
	// MaxClients caps the tenant's attached clients (default Config.TenantMaxClients; 0 there: none).
	MaxClients int
	// StatementTimeout is applied to the tenant's leases; a client's own statement_timeout may only be
	// lower (0: none).
	StatementTimeout time.Duration
}

// TenantStats are the counters of a tenant's traffic, in the units of pgbouncer's SHOW STATS.
type TenantStats struct {
	XactCount, QueryCount         int64 // transactions and statements completed
	BytesReceived, BytesSent      int64 // from and to the clients
	XactTime, QueryTime, WaitTime time.Duration
	ServerAssignments             int64 // leases of a backend
	ParseCount, BindCount         int64 // extended-protocol Parse and Bind messages
	Refused, Switches             int64 // statements the guard refused; leases that applied the context
}

func (a *TenantStats) add(b TenantStats) {
	a.XactCount += b.XactCount
	a.QueryCount += b.QueryCount
	a.BytesReceived += b.BytesReceived
	a.BytesSent += b.BytesSent
	a.XactTime += b.XactTime
	a.QueryTime += b.QueryTime
	a.WaitTime += b.WaitTime
	a.ServerAssignments += b.ServerAssignments
	a.ParseCount += b.ParseCount
	a.BindCount += b.BindCount
	a.Refused += b.Refused
	a.Switches += b.Switches
}

// ClientInfo is what the front door learned about a client before handing it to the Engine.
type ClientInfo struct {
	User    string
	Tenant  string
	Profile string
	Addr    string
	TLS     bool
	// Params are the client's startup settings that the relay tracks and applies on every lease, by
	// lower-case name: every setting the guard would allow as SET (the front door judged them), with the
	// value to SET. The Engine keeps them in its own shared form and drops the map after Attach.
	Params map[string]string
	// Opened is when the client connected.
	Opened time.Time
}

// BackendConn is a freshly authenticated server connection handed to the Engine: a raw non-blocking fd
// that the Engine now owns.
type BackendConn struct {
	Fd     int
	PID    uint32
	Secret []byte
	// Params are the ParameterStatus values the server reported at login.
	Params map[string]string
}

// Dialer opens backend connections as the pool role.
type Dialer interface {
	Dial(ctx context.Context) (*BackendConn, error)
	// Cancel asks the server to cancel the query running on the backend with this pid and secret.
	Cancel(ctx context.Context, pid uint32, secret []byte) error
}

// Emulation names a statement the relay answers itself.
type Emulation uint8

// Emulations.
const (
	EmulateNone Emulation = iota
	// EmulateDiscardAll resets the client's own tracked state and keeps the tenant context.
	EmulateDiscardAll
	// EmulateResetAll resets the client's tracked settings to its startup values.
	EmulateResetAll
	// EmulateDeallocateAll forgets the client's protocol-level prepared statements.
	EmulateDeallocateAll
	// EmulateDeallocate forgets one of them (Verdict.Name); a name the relay does not know goes to the
	// server, where it may be a statement of SQL PREPARE.
	EmulateDeallocate
)

// Setting is a session setting set with plain SET (or RESET) that the relay tracks and replays.
type Setting struct {
	Name   string
	Values []string // unquoted; several for list settings such as search_path
	Reset  bool
	// Savepoint marks SAVEPOINT, RELEASE or ROLLBACK TO of the savepoint Name, in order with the SETs,
	// so that a SET undone by ROLLBACK TO is not kept.
	Savepoint SavepointOp
}

// SavepointOp is a savepoint command among tracked settings.
type SavepointOp uint8

// Savepoint commands.
const (
	NoSavepoint SavepointOp = iota
	SavepointDefine
	SavepointRelease
	SavepointRollback
	// CommitChain is COMMIT AND CHAIN: the SETs so far are committed though a transaction goes on.
	CommitChain
	// RollbackChain is ROLLBACK AND CHAIN: the SETs so far are undone though a transaction goes on.
	RollbackChain
)

// Verdict is what the statement guard decided about one Query or Parse message.
type Verdict struct {
	Refused bool
	Code    string // SQLSTATE of the refusal
	Message string
	// Position is the ErrorResponse Position field of a refusal that is the server's own error (a syntax
	// error): 1-based, in characters; 0 for none. The relay sends it as field 'P'.
	Position int
	// Plain is set for one plain DML or query statement (SELECT, INSERT, UPDATE, DELETE, WITH, VALUES,
	// TABLE) with nothing the relay must act on: no transaction control, setting, pin or rewrite. Such a
	// simple Query may carry the tenant switch (Session.applyContext).
	Plain bool
	// Terminate is set for SELECT pg_terminate_backend(pg_backend_pid()): the statement runs, the server
	// ends the backend with FATAL 57P01, and the relay passes that FATAL to the client, closes the client
	// and never reuses the backend.
	Terminate bool
	// Emulate is set when the relay answers the statement itself.
	Emulate Emulation
	// Name is the statement name of EmulateDeallocate.
	Name string
	// Pin is non-empty when the statement leaves session state that outlives its transaction (temp
	// table, WITH HOLD cursor, LISTEN, session advisory lock, SQL PREPARE): the backend then stays with
	// the client (transaction pooling) until the client leaves. It names the state.
	Pin string
	// Sets are the tracked settings the statement changes, applied once it succeeds.
	Sets []Setting
	// Rewrite, when set, is the statement text sent instead of the client's (tenant-scoped channels).
	Rewrite string
	// Prepares and Executes name the statements of SQL-level PREPARE and EXECUTE (also inside EXPLAIN or
	// CREATE TABLE AS): a client may execute only what it prepared itself, since the server's namespace of
	// statements is shared by every client a backend serves.
	Prepares, Executes []string
}

// Guard classifies statements before they reach a shared backend.
type Guard interface {
	Check(sql string, profile string, t *Tenant, parse bool) Verdict
}

// Config configures an Engine.
type Config struct {
	// Mode is "transaction" or "session".
	Mode              string
	PoolSize          int
	TenantMaxBackends int
	// TenantMaxClients caps each tenant's attached clients unless the tenant has its own limit (0: none).
	TenantMaxClients int
	MaxClients       int
	WaitTimeout      time.Duration
	IdleTimeout      time.Duration
	MaxLifetime      time.Duration
	// QueryTimeout closes a leased backend that sends nothing for this long while a reply is due.
	QueryTimeout          time.Duration
	MaxMessageSize        int
	MaxPreparedStatements int
	// MaxClientPreparedStatements and MaxClientPreparedBytes bound one client's named statements.
	MaxClientPreparedStatements int
	MaxClientPreparedBytes      int
	// TripwireSampleRate is the fraction of tenant switches after which the backend's identity is checked.
	TripwireSampleRate float64
	// AuditStatementText puts a refused statement's full text in its audit record (off: fingerprint only).
	AuditStatementText bool
	// PoolRole is the role backends log in as, used by the tripwire.
	PoolRole string
	Dialer   Dialer
	Guard    Guard
	Logger   *zap.Logger
	Metrics  *Metrics

	// PeerID is [peers] id (0..255): the top 8 bits of every cancel key's pid, so that a cancel request
	// reaching another process sharing the address can be forwarded here.
	PeerID uint32
}

// setupStatements is how many statements SetupSQL has: policy.Context.SetupSQL joins them with "; ", and
// the identifiers and literals in them are validated names, which never hold a semicolon.
func (t *Tenant) setupStatements() int { return strings.Count(t.SetupSQL, ";") + 1 }

// weight is the tenant's weight in the fair queue.
func (t *Tenant) weight() int {
	if t.Limits.Weight > 0 {
		return t.Limits.Weight
	}
	return 1
}
