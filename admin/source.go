// Package admin is tenantproxy's admin console: the virtual databases "pgbouncer" and "tenantproxy",
// spoken over the simple query protocol with pgbouncer 1.25's commands, columns and errors, so that the
// tools written for pgbouncer (exporters, dashboards, scripts that parse SHOW output) work unchanged. In
// the console one "database" is one tenant.
//
// The console reads everything it shows from a Source and asks the Source to carry out every control
// command; it knows nothing of the relay's internals.
package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgerrcode"
)

// Source is what the proxy provides to the console and to the status page.
//
// Snapshot is called once per SHOW (and once per status page); the relay answers it from its own event
// loop thread: it is handed a request, fills the relay sections of a Snapshot between two events and
// hands it back, so a snapshot is consistent within one relay thread and costs the relay no locks.
// Control carries out one command; it returns nil once the command has taken effect (for PAUSE and
// WAIT_CLOSE: once the condition holds, or ctx ends) or an *Error with the SQLSTATE the client gets.
type Source interface {
	Snapshot(ctx context.Context) (*Snapshot, error)
	Control(ctx context.Context, cmd Command) error
}

// Snapshot is the whole state the console shows, taken at one moment.
type Snapshot struct {
	// Taken is when the snapshot was taken; SHOW CLIENTS' wait columns are measured against it.
	Taken time.Time
	// Version is the proxy's name and version, "tenantproxy 1.2.3" (SHOW VERSION).
	Version string
	// State is the process-wide pause state (SHOW STATE).
	State State
	// Config lists the settings (SHOW CONFIG), in the order shown.
	Config []Setting
	// Users are the configured client users (SHOW USERS).
	Users []User
	// Databases are the tenants, one row each (SHOW DATABASES).
	Databases []Database
	// Lists are the object counts of SHOW LISTS, in the order shown.
	Lists []ListItem
	// Peers are the [peers] this process forwards cancel requests to (SHOW PEERS).
	Peers []Peer

	// RelayErr, when set, says the relay could not fill the sections below (it is shutting down, or does
	// not report them): the SHOW commands that need them fail with it, the others are answered.
	RelayErr error
	// Pools are one per tenant (SHOW POOLS).
	Pools []Pool
	// Clients are the client connections attached to the relay (SHOW CLIENTS).
	Clients []Socket
	// Servers are the backend connections (SHOW SERVERS).
	Servers []Socket
	// Stats are one per tenant (SHOW STATS, STATS_TOTALS, STATS_AVERAGES).
	Stats []Stats
	// Tenants are one per tenant (SHOW TENANTS).
	Tenants []Tenant
	// Mem are the relay's object caches (SHOW MEM).
	Mem []Mem
}

// State is the pause state of the whole proxy.
type State struct {
	// Paused: PAUSE without a tenant is in force; no new leases are granted.
	Paused bool
	// Suspended: SUSPEND is in force (tenantproxy has no SUSPEND; false unless a Source adds it).
	Suspended bool
	// ShuttingDown: SHUTDOWN was issued or SIGTERM received; the proxy is draining.
	ShuttingDown bool
}

// Setting is one configuration key.
type Setting struct {
	// Key is pgbouncer's name where pgbouncer has the setting (max_client_conn, pool_mode, ...), else
	// "section.key" of config.toml.
	Key string
	// Value and Default are as config.toml would spell them.
	Value, Default string
	// Changeable: SET (and RELOAD) change it at runtime.
	Changeable bool
}

// User is one configured client user.
type User struct {
	Name string
	// PoolMode is the user's own pool mode; "" (NULL) when it inherits the proxy's.
	PoolMode string
	// MaxUserConnections caps the backends the user's clients hold; 0 = no own limit.
	MaxUserConnections int64
	// CurrentConnections is how many backends the user's clients hold now.
	CurrentConnections int64
	// MaxUserClientConnections caps the user's client connections; 0 = no own limit.
	MaxUserClientConnections int64
	// CurrentClientConnections is how many clients are logged in as the user now.
	CurrentClientConnections int64
}

// Database is one tenant as pgbouncer describes a database.
type Database struct {
	// Name is the tenant's name.
	Name string
	// Host and Port are the backend server's; Database is the backend database the tenant's schema lives in.
	Host     string
	Port     int64
	Database string
	// ForceUser is the pool role every backend logs in as.
	ForceUser string
	// PoolSize is the most backends the tenant may hold ([pool] tenant_max_backends or the tenant's own).
	PoolSize int64
	// MinPoolSize and ReservePoolSize are 0: tenantproxy keeps no per-tenant minimum or reserve.
	MinPoolSize, ReservePoolSize int64
	// ServerLifetime is [backend] max_lifetime.
	ServerLifetime time.Duration
	// PoolMode is the pool mode; "" shows NULL (inherits).
	PoolMode string
	// MaxConnections caps the tenant's backends (0: no own limit); CurrentConnections are held now.
	MaxConnections, CurrentConnections int64
	// MaxClientConnections caps the tenant's clients (0: no own limit); CurrentClientConnections are
	// connected now.
	MaxClientConnections, CurrentClientConnections int64
	// Paused: PAUSE tenant is in force. Disabled: DISABLE tenant is in force (or the tenant is suspended).
	Paused, Disabled bool
}

// Peer is one process that shares the listen address ([peers]).
type Peer struct {
	ID   int64
	Host string
	Port int64
	// PoolSize is 0: a peer gets cancel requests only.
	PoolSize int64
}

// ListItem is one row of SHOW LISTS.
type ListItem struct {
	Name  string
	Items int64
}

// Pool is one tenant's pool: its clients and the backends serving them.
type Pool struct {
	// Database is the tenant; User is the pool role the backends log in as.
	Database, User string
	// ClActive: clients linked to a backend or idle; ClWaiting: clients waiting for a backend.
	ClActive, ClWaiting int64
	// ClActiveCancelReq and ClWaitingCancelReq: cancel requests being forwarded / waiting to be.
	ClActiveCancelReq, ClWaitingCancelReq int64
	// SvActive: backends leased to this tenant's clients. SvActiveCancel and SvBeingCanceled: backends
	// carrying a cancel request / whose query is being canceled.
	SvActive, SvActiveCancel, SvBeingCanceled int64
	// SvIdle: idle backends in this tenant's context; SvUsed: idle backends to be reset before reuse;
	// SvTested: backends being reset or checked; SvLogin: backends being opened for this tenant.
	SvIdle, SvUsed, SvTested, SvLogin int64
	// MaxWait is how long the oldest waiting client has waited.
	MaxWait time.Duration
	// PoolMode is "transaction" or "session".
	PoolMode string
	// LoadBalanceHosts is "" (NULL): the backend is one host.
	LoadBalanceHosts string
}

// Socket is one client or backend connection (SHOW CLIENTS, SHOW SERVERS).
type Socket struct {
	// Server: a backend connection (type "S"); else a client ("C").
	Server bool
	// User is the client's user (for a backend: the pool role); Database its tenant ("" shows "(nodb)").
	User, Database string
	// State: for clients "active", "waiting", "active_cancel_req", "waiting_cancel_req"; for backends
	// "active", "idle", "used", "tested", "new", "active_cancel", "being_canceled".
	State string
	// Addr and Port are the remote end; LocalAddr and LocalPort the proxy's end.
	Addr      string
	Port      int64
	LocalAddr string
	LocalPort int64
	// ConnectTime is when it connected; RequestTime when its last request began.
	ConnectTime, RequestTime time.Time
	// Wait is how long the current request has waited (0 when none is waiting).
	Wait time.Duration
	// CloseNeeded: a backend to be closed once it is released (RECONNECT).
	CloseNeeded bool
	// Ptr identifies the connection; Link is the Ptr of the connection it is paired with ("" NULL).
	Ptr, Link string
	// RemotePID is the backend's process id (servers) or 0.
	RemotePID int64
	// TLS describes the TLS session ("" when plain), e.g. "TLSv1.3/TLS_AES_128_GCM_SHA256".
	TLS string
	// ApplicationName is the client's application_name.
	ApplicationName string
	// PreparedStatements is how many prepared statements the proxy keeps for it.
	PreparedStatements int64
	// ID is the connection's id: KILL_CLIENT takes it.
	ID int64
}

// Counters are a tenant's traffic figures. In Stats.Totals they are sums since the start; in
// Stats.Averages the counts and byte figures are per second over the last interval and the times are
// per transaction (XactTime), per query (QueryTime) and per second (WaitTime), as pgbouncer reports them.
type Counters struct {
	// ServerAssignments: times a backend was leased to a client.
	ServerAssignments int64
	// Xacts and Queries: transactions and queries relayed.
	Xacts, Queries int64
	// Received and Sent: bytes received from and sent to clients.
	Received, Sent int64
	// XactTime and QueryTime: time spent in transactions and queries; WaitTime: time clients waited
	// for a backend.
	XactTime, QueryTime, WaitTime time.Duration
	// ClientParses: Parse messages from clients; ServerParses: Parse messages sent to backends;
	// Binds: Bind messages.
	ClientParses, ServerParses, Binds int64
}

// Stats are one tenant's traffic.
type Stats struct {
	Database string
	Totals   Counters
	Averages Counters
}

// Tenant is one tenant's load, limits and state (SHOW TENANTS, the status page).
type Tenant struct {
	Name string
	// Clients connected; Waiting for a backend; Backends leased now.
	Clients, Waiting, Backends int64
	// XactPerSec and QueryPerSec over the last interval.
	XactPerSec, QueryPerSec float64
	// AvgWait is the mean lease wait over the last interval; MaxWait the longest current wait.
	AvgWait, MaxWait time.Duration
	// Refused is how many statements the guard refused since the start.
	Refused int64
	// Limits in force: MaxClients and MaxBackends (0: none), Weight, StatementTimeout (0: none).
	MaxClients, MaxBackends, Weight int64
	StatementTimeout                time.Duration
	// Suspended (the catalog's flag or DISABLE) and Paused (PAUSE tenant).
	Suspended, Paused bool
	// MigrationVersion is the tenant schema's migration version ("" when unknown).
	MigrationVersion string
}

// Mem is one object cache of SHOW MEM.
type Mem struct {
	Name string
	// Size of one object, Used and Free objects, MemTotal bytes.
	Size, Used, Free, MemTotal int64
}

// Op is a control command.
type Op string

// Control commands.
const (
	OpPause      Op = "PAUSE"
	OpResume     Op = "RESUME"
	OpDisable    Op = "DISABLE"
	OpEnable     Op = "ENABLE"
	OpKill       Op = "KILL"
	OpKillClient Op = "KILL_CLIENT"
	OpReconnect  Op = "RECONNECT"
	OpWaitClose  Op = "WAIT_CLOSE"
	OpReload     Op = "RELOAD"
	OpShutdown   Op = "SHUTDOWN"
	OpSet        Op = "SET"
)

// Command is one control command for a Source.
type Command struct {
	Op Op
	// Tenant is the command's tenant; "" for the whole proxy (PAUSE, RESUME, KILL, RECONNECT,
	// WAIT_CLOSE) and for SET of a global setting.
	Tenant string
	// ClientID is KILL_CLIENT's connection id (Socket.ID).
	ClientID int64
	// WaitForClients: SHUTDOWN WAIT_FOR_CLIENTS (stop accepting, exit when the last client has left).
	WaitForClients bool
	// Key and Value are SET's: Key a Setting.Key or, with Tenant set, a per-tenant limit
	// (max_clients, max_backends, weight, statement_timeout).
	Key, Value string
	// User is the console user who issued the command (for the audit log).
	User string
}

// Error is a console error with the SQLSTATE the client gets.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// asError turns any error into an *Error (internal_error for a plain one).
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: pgerrcode.InternalError, Message: err.Error()}
}
