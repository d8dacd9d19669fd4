package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
)

// ConnectAdmin opens a connection to database (the [admin] one when "") as the [admin] role: the
// lifecycle commands' connection, and the proxy's per-schema metrics collector's.
func ConnectAdmin(ctx context.Context, cfg *config.Config, database string) (*pgx.Conn, error) {
	if database == "" {
		database = cfg.Admin.Database
	}
	cc, err := pgx.ParseConfig(ConnString(cfg, database, cfg.Admin.User, cfg.AdminPassword(), "tenantproxy-admin"))
	if err != nil {
		return nil, fmt.Errorf("admin connection settings: %w", err)
	}
	cc.ConnectTimeout = cfg.Backend.ConnectTimeout.Duration
	// A lifecycle command runs each statement a few times at most, on a connection of its own: one round
	// trip per statement beats preparing it first.
	cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d database %q as admin role %q: %w",
			cfg.Backend.Host, cfg.Backend.Port, database, cfg.Admin.User, err)
	}
	// Every literal this package builds is quoted for standard_conforming_strings = on.
	if scs := conn.PgConn().ParameterStatus("standard_conforming_strings"); scs != "on" {
		conn.Close(context.Background())
		return nil, fmt.Errorf("server reports standard_conforming_strings = %q; tenantproxy needs it on", scs)
	}
	return conn, nil
}
