package session

import (
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgerrcode"
)

// tenantShared is what the shards of a Group count together for one tenant, so that a limit holds for the
// tenant as a whole: its attached clients.
type tenantShared struct {
	clients atomic.Int64
}

// admit gives session s to tenant t, or refuses it with FATAL when the tenant is disabled or at its
// client limit. Only an admitted session counts among the tenant's clients (sessionClosed undoes it).
func (e *Engine) admit(s *Session, t *Tenant) bool {
	refuse := func(code, msg string) bool {
		s.tenant = &Tenant{Name: t.Name} // counts nothing of t's
		s.fatal(code, msg)
		return false
	}
	if t.disabled {
		return refuse(pgerrcode.CannotConnectNow, fmt.Sprintf("tenantproxy: tenant %q is disabled (admin DISABLE); it accepts no new connections until ENABLE", t.Name))
	}
	limit := int64(t.Limits.MaxClients)
	if limit <= 0 {
		limit = int64(e.cfg.TenantMaxClients)
	}
	if n := t.shared.clients.Add(1); limit > 0 && n > limit {
		t.shared.clients.Add(-1)
		return refuse(pgerrcode.TooManyConnections, fmt.Sprintf("tenantproxy: too many client connections for tenant %q: max_clients is %d", t.Name, limit))
	}
	t.clients++
	s.tenant = t
	if t.Limits.StatementTimeout > 0 {
		s.rebuildSettingsSQL()
	}
	return true
}

// limitsChanged brings the sessions of t in line with new limits: their settings carry the tenant's
// statement_timeout from their next lease on, and waiters may now be served.
func (e *Engine) limitsChanged(t *Tenant) {
	for _, s := range e.sessions {
		if s.tenant == t {
			s.rebuildSettingsSQL()
		}
	}
	e.pool.dispatch()
}
