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
