package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/jackc/pgerrcode"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgerr"
	"github.com/tenantproxy/tenantproxy/routing"
)

// userLookupLimit bounds one catalog user lookup.
const userLookupLimit = 5 * time.Second

// lookupUser finds the user a client claims: first in [[users]], then in Users (the catalog). ok is false
// when the catalog cannot be asked; u is nil for an unknown (or expired) user, who then fails
// authentication like any unknown user.
func (s *Server) lookupUser(snap *routing.Snapshot, id routing.Identity, log *zap.Logger) (u *config.User, ok bool) {
	if u := snap.User(id.User); u != nil || s.Users == nil {
		return u, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), userLookupLimit)
	defer cancel()
	u, err := s.Users.Lookup(ctx, id.User, id.Tenant)
	if err != nil {
		log.Error("user lookup in the catalog failed", zap.Error(err))
		return nil, false
	}
	return u, true
}

// refuseAddr refuses a client whose address is outside the allow list of its user or tenant: 28000,
// naming neither (the log and the audit record do).
func (s *Server) refuseAddr(conn net.Conn, id routing.Identity, addr string, log *zap.Logger) {
	const msg = "tenantproxy: connections from this address are not allowed"
	log.Warn("connection refused", zap.Bool("audit", true), zap.String("event", "address_refused"))
	s.AuthFail.Add(1)
	s.authFailed(id.User, addr, id.Tenant, pgerrcode.InvalidAuthorizationSpecification, "client address not in the allow list")
	time.Sleep(s.cfg.Load().Auth.FailureDelay.Duration)
	s.fatal(conn, pgerr.Fatal(pgerrcode.InvalidAuthorizationSpecification, msg))
}

// clientAddr is the client's IP address (the zero Addr, which no allow list contains, when it has none).
func clientAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
