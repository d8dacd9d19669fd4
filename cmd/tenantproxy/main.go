// Command tenantproxy is a PostgreSQL wire-protocol proxy that gives schema-per-tenant applications one
// safe front door to one shared PostgreSQL server, and the tools that provision, harden, migrate and
// back up its tenants.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `tenantproxy — one safe front door for schema-per-tenant PostgreSQL

Usage:
  tenantproxy serve   --config PATH      run the proxy
  tenantproxy demo    [--port N]         throwaway PostgreSQL with AgenticHR tenants behind the proxy
  tenantproxy version                    print the version

Tenant lifecycle (all read --config PATH, default ./config.toml):
  tenantproxy init                       create roles and the catalog, harden the server (idempotent)
  tenantproxy doctor                     check the server's hardening and every tenant
  tenantproxy tenant create|list|suspend|resume|drop|backup|restore|set ...
  tenantproxy user create|passwd|bind|unbind|drop|list ...   ([auth] users = "database")
  tenantproxy migrate up|status|down|repair ...
  tenantproxy analytics refresh          rebuild the cross-tenant views of schema analytics
  tenantproxy rls status|enable|disable TABLE

Run "tenantproxy COMMAND --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, stop context.CancelFunc, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		stop() // serve handles its own signals: SIGTERM drains, SIGHUP reloads
		return serveCmd(args[1:], stdout, stderr)
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "tenantproxy", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "init", "doctor", "tenant", "migrate", "analytics", "rls", "user":
		return lifecycleCmd(ctx, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "tenantproxy: unknown command %q\n\n%s", args[0], usage)
	return 2
}
