package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tenantproxy/tenantproxy/audit"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// lifecycleCmd runs init, doctor, tenant, migrate and rls: it takes --config PATH from anywhere in args and
// hands the rest to package tenants.
func lifecycleCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	path, rest, err := takeConfigFlag(args)
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy:", err)
		return 2
	}
	for _, a := range rest {
		if a == "--help" || a == "-h" || a == "-help" {
			return tenants.Main(ctx, &config.Config{}, rest, stdout, stderr)
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy:", err)
		return 1
	}
	if cfg.Audit.Path != "" {
		// Lifecycle commands are audited ([audit] path); the log is written out before exit.
		w, err := audit.Open(cfg.Audit.Path, nil, nil)
		if err != nil {
			fmt.Fprintln(stderr, "tenantproxy:", err)
			return 1
		}
		audit.Log.Set(w)
		defer func() { audit.Log.Unset(w); w.Close() }()
	}
	return tenants.Main(ctx, cfg, rest, stdout, stderr)
}

// takeConfigFlag removes "--config PATH" or "--config=PATH" from args; the default is config.toml.
func takeConfigFlag(args []string) (string, []string, error) {
	path := "config.toml"
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return "", nil, fmt.Errorf("--config needs a path")
			}
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			path = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return path, rest, nil
}
