package catalog

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
)

// UserSource finds the users that live in the database catalog ([auth] users = "database") for the proxy:
// routing.UserSource, plus Wait for the goroutine that follows the catalog's notifications.
type UserSource interface {
	Lookup(ctx context.Context, user, tenant string) (*config.User, error)
	// Wait returns once the source has stopped (its context ended).
	Wait()
}

// UserSourceFunc starts a UserSource.
type UserSourceFunc func(ctx context.Context, cfg *config.Config, log *zap.Logger) UserSource

var newUserSource UserSourceFunc

// RegisterUserSource installs what NewUserSource starts. Package tenants calls it from init, as it does
// RegisterHardening, so that serve finds catalog users without importing the lifecycle CLI.
func RegisterUserSource(f UserSourceFunc) { newUserSource = f }

// NewUserSource starts the catalog's user source, or fails when none is linked into the program.
func NewUserSource(ctx context.Context, cfg *config.Config, log *zap.Logger) (UserSource, error) {
	if newUserSource == nil {
		return nil, errors.New(`[auth] users = "database" needs the catalog user lookup, which this program does not include`)
	}
	return newUserSource(ctx, cfg, log), nil
}

// MigrationVersionsFunc reads every tenant's migration version ("0003", or "0003+0002" with a
// tenant-specific line) through the [admin] role.
type MigrationVersionsFunc func(ctx context.Context, cfg *config.Config) (map[string]string, error)

var migrationVersions MigrationVersionsFunc

// RegisterMigrationVersions installs what MigrationVersions runs; package tenants calls it from init.
func RegisterMigrationVersions(f MigrationVersionsFunc) { migrationVersions = f }

// MigrationVersions reads every tenant's migration version, or fails when the program does not include
// the lifecycle.
func MigrationVersions(ctx context.Context, cfg *config.Config) (map[string]string, error) {
	if migrationVersions == nil {
		return nil, errors.New("reading migration versions needs the lifecycle, which this program does not include")
	}
	return migrationVersions(ctx, cfg)
}
