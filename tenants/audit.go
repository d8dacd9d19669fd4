package tenants

import (
	"strings"

	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/config"
)

// auditLifecycle writes the audit record of a lifecycle command (a no-op without [audit] path): the
// admin role that ran it, the tenant it named, the command line (never a password: none is an
// argument) and its error.
func auditLifecycle(cfg *config.Config, path string, args []string, err error) {
	if !audit.Log.Enabled() {
		return
	}
	tenant := ""
	if strings.HasPrefix(path, "tenant ") && len(args) > 0 {
		tenant = args[0]
	}
	failure := ""
	if err != nil {
		failure = err.Error()
	}
	audit.Log.Lifecycle(cfg.Admin.User, tenant, strings.TrimSpace(path+" "+strings.Join(args, " ")), failure)
}
