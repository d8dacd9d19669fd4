package tenants

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// ConnectAdmin opens a connection to the [admin] database as the [admin] role, as the lifecycle commands
// do. The proxy's per-schema metrics collector reads the catalog through it.
func ConnectAdmin(ctx context.Context, cfg *config.Config) (*pgx.Conn, error) {
	return connectAdmin(ctx, cfg, "")
}
