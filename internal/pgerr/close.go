package pgerr

// CloseReason says why a client session or a backend connection closed. Its values are the reason field
// of the "session closed" and "backend closed" log lines and the reason label of
// tenantproxy_backend_closed_total, so they are few and fixed: the detail of a particular close (which
// write failed, which SQLSTATE) goes into a separate log field, never into the reason.
type CloseReason string

// Why a backend connection closed. The values are the label values tenantproxy_backend_closed_total has
// always had; dashboards match them.
const (
	// CloseSetupFailed: applying the tenant context (role, search_path, setting) failed.
	CloseSetupFailed CloseReason = "setup failed"
	// CloseIdleOrLifetime: idle longer than [backend] idle_timeout, or past max_lifetime while idle.
	CloseIdleOrLifetime CloseReason = "idle_timeout or max_lifetime"
	// CloseMaxLifetime: past [backend] max_lifetime when released.
	CloseMaxLifetime CloseReason = "max_lifetime"
	// CloseShutdown: the proxy is shutting down.
	CloseShutdown CloseReason = "shutdown"
	// CloseTripwire: the tripwire found the connection's tenant context changed behind the proxy.
	CloseTripwire CloseReason = "tripwire"
	// CloseRebalance: the pool gave the slot to a tenant that waits.
	CloseRebalance CloseReason = "rebalance"
	// CloseTerminated: its client ended it with pg_terminate_backend(pg_backend_pid()).
	CloseTerminated CloseReason = "terminated"
	// CloseReconnect: admin RECONNECT or KILL marked it to close instead of serving again.
	CloseReconnect CloseReason = "reconnect"
	// CloseError: the server connection failed (lost, protocol violation, write error).
	CloseError CloseReason = "error"
)

// Why a client session closed.
const (
	// CloseClientTerminated: the client sent Terminate.
	CloseClientTerminated CloseReason = "client terminated"
	// CloseClientGone: the client's connection failed or closed without Terminate.
	CloseClientGone CloseReason = "client gone"
	// CloseServerLost: the session's backend failed in the middle of a message, so the session cannot go on.
	CloseServerLost CloseReason = "server lost"
	// CloseFatal: the proxy sent the client a FATAL error (the log line carries its SQLSTATE).
	CloseFatal CloseReason = "fatal error"
)

// BackendCloseReasons are the reasons a backend connection closes, in the order of the constants.
var BackendCloseReasons = []CloseReason{CloseSetupFailed, CloseIdleOrLifetime, CloseMaxLifetime, CloseShutdown,
	CloseTripwire, CloseRebalance, CloseTerminated, CloseReconnect, CloseError}

// SessionCloseReasons are the reasons a client session closes, plus CloseShutdown.
var SessionCloseReasons = []CloseReason{CloseClientTerminated, CloseClientGone, CloseServerLost, CloseFatal, CloseShutdown}

// Valid reports whether r is one of the constants.
func (r CloseReason) Valid() bool {
	for _, set := range [][]CloseReason{BackendCloseReasons, SessionCloseReasons} {
		for _, x := range set {
			if r == x {
				return true
			}
		}
	}
	return false
}

// Label is r as a metric label: r itself when valid, else CloseError, so a label set never grows.
func (r CloseReason) Label() string {
	if r.Valid() {
		return string(r)
	}
	return string(CloseError)
}

// String returns r's value.
func (r CloseReason) String() string { return string(r) }
