package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tenantproxy/tenantproxy/config"
)

// Failure is one hardening check that did not pass: what must hold and what was found.
type Failure struct {
	Name   string
	Detail string
}

// HardeningCheck runs the checks of `tenantproxy doctor` against the server cfg names and returns the
// failed ones. The error is non-nil only when the checks could not run.
type HardeningCheck func(ctx context.Context, cfg *config.Config) ([]Failure, error)

var (
	hardeningMu sync.Mutex
	hardening   HardeningCheck
)

// RegisterHardening installs the checks behind CheckHardening. Package tenants calls it from init; a
// second registration replaces the first.
func RegisterHardening(check HardeningCheck) {
	hardeningMu.Lock()
	defer hardeningMu.Unlock()
	hardening = check
}

// ErrNoHardeningCheck is returned by CheckHardening when no checks are registered: a binary that serves
// without linking package tenants cannot tell whether the server is hardened, so it does not start.
var ErrNoHardeningCheck = errors.New("no hardening checks are linked into this binary (package tenants registers them)")

// CheckHardening is the gate serve passes before accepting clients when [tenancy] require_hardening is
// on: nil when every check passes, else an error naming the first failed check and what to do.
func CheckHardening(ctx context.Context, cfg *config.Config) error {
	hardeningMu.Lock()
	check := hardening
	hardeningMu.Unlock()
	if check == nil {
		return fmt.Errorf("hardening check: %w (set [tenancy] require_hardening = false to start anyway)", ErrNoHardeningCheck)
	}
	failed, err := check(ctx, cfg)
	if err != nil {
		return fmt.Errorf("hardening check: %w (set [tenancy] require_hardening = false to start anyway)", err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("hardening check failed: %s: %s (run \"tenantproxy doctor\" for every check and its fix, or set [tenancy] require_hardening = false)", failed[0].Name, failed[0].Detail)
	}
	return nil
}
