package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/app"
	"github.com/tenantproxy/tenantproxy/internal/pgcluster"
	"github.com/tenantproxy/tenantproxy/internal/pgident"
	"github.com/tenantproxy/tenantproxy/migrations"
	"github.com/tenantproxy/tenantproxy/tenants"
)

// demoCmd starts a throwaway PostgreSQL, provisions the config's tenants with the lifecycle commands,
// seeds AgenticHR data, and serves them through the proxy until interrupted.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fsx := flag.NewFlagSet("demo", flag.ContinueOnError)
	fsx.SetOutput(stderr)
	path := fsx.String("config", "config.toml", "configuration to run the demo with")
	port := fsx.Int("port", 0, "proxy port (default: the port of [listen] addr)")
	exitAfterStart := fsx.Bool("exit", false, "stop right after the demo is up (for tests)")
	fsx.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tenantproxy demo [--config PATH] [--port N]\n\nStarts a throwaway PostgreSQL with the AgenticHR tenants of the config (acme, globex, initech),\nhardens and provisions it with the lifecycle commands, and serves it through tenantproxy until Ctrl-C.")
		fsx.PrintDefaults()
	}
	if err := fsx.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy demo:", err)
		return 1
	}
	if *port != 0 {
		host, _, _ := net.SplitHostPort(cfg.Listen.Addr)
		cfg.Listen.Addr = net.JoinHostPort(host, strconv.Itoa(*port))
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	say("starting a throwaway PostgreSQL ...")
	cluster, err := pgcluster.Start(pgcluster.Options{})
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy demo:", err)
		return 1
	}
	defer cluster.Stop()
	cfg.Backend.Host, cfg.Backend.Port = cluster.Host, cluster.Port
	cfg.Backend.PasswordEnv, cfg.Backend.Password = "", randomPassword()
	cfg.Admin.User, cfg.Admin.PasswordEnv, cfg.Admin.Password = cluster.User, "", cluster.Password
	if _, err := os.Stat(cfg.Migrations.Dir); cfg.Migrations.Dir == "" || err != nil {
		dir, err := writeEmbeddedMigrations()
		if err != nil {
			fmt.Fprintln(stderr, "tenantproxy demo:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.Migrations.Dir = dir
	}
	if err := cluster.Exec(ctx, "postgres", "CREATE DATABASE "+pgident.Quote(cfg.Backend.Database)); err != nil {
		fmt.Fprintln(stderr, "tenantproxy demo:", err)
		return 1
	}
	// init checks the tenants it knows of; they exist only after tenant create.
	bare := *cfg
	bare.Tenants = nil
	say("$ tenantproxy init")
	if code := tenants.Main(ctx, &bare, []string{"init"}, stdout, stderr); code != 0 {
		return code
	}
	// The demo's tenants get opaque schema and role names, as `tenant create` gives by default: the catalog
	// (not the config) holds them, so a tenant listing schemas or roles learns nothing of the others.
	names := make([]string, len(cfg.Tenants))
	for i, t := range cfg.Tenants {
		names[i] = t.Name
	}
	cfg.Tenancy.Catalog, cfg.Tenants = config.CatalogDatabase, nil
	for _, name := range names {
		step := []string{"tenant", "create", name}
		say("$ tenantproxy %s", joinArgs(step))
		if code := tenants.Main(ctx, cfg, step, stdout, stderr); code != 0 {
			return code
		}
	}
	if err := seed(ctx, cluster, cfg, names); err != nil {
		fmt.Fprintln(stderr, "tenantproxy demo: seeding:", err)
		return 1
	}
	log, err := newLogger(cfg, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy demo:", err)
		return 1
	}
	p, err := app.Start(cfg, log, version)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	defer p.Shutdown(2 * time.Second)
	_, pport, _ := net.SplitHostPort(p.Addr())
	say("\ntenantproxy is serving the AgenticHR tenants on %s (PostgreSQL %s:%d behind it).", p.Addr(), cluster.Host, cluster.Port)
	say("Each user sees only its own tenant's employees, departments and leave_requests:\n")
	for _, u := range cfg.Users {
		if u.Profile == config.ProfileAnalytics {
			continue
		}
		for _, t := range u.Tenants {
			say("  psql %q", dsn(u.Name+cfg.Tenancy.UserSeparator+t, u.Password, "127.0.0.1", pport, cfg.Backend.Database))
			if u.Profile == config.ProfileReadonly {
				break
			}
		}
	}
	for _, u := range cfg.Users {
		if u.Profile == config.ProfileAnalytics {
			say("  psql %q   # every tenant at once: SELECT tenant, count(*) FROM employees GROUP BY 1", dsn(u.Name, u.Password, "127.0.0.1", pport, config.Analytics))
		}
	}
	say("\n  pgbench -n -S -T 5 %q   # any tool, any driver", dsn("alice"+cfg.Tenancy.UserSeparator+"acme", "secret", "127.0.0.1", pport, cfg.Backend.Database))
	if cfg.Metrics.Addr != "" {
		say("  curl -s http://%s/metrics | grep tenantproxy_", cfg.Metrics.Addr)
	}
	say("\nPress Ctrl-C to stop; the throwaway server is removed.")
	if *exitAfterStart {
		return 0
	}
	<-ctx.Done()
	say("stopping ...")
	return 0
}

// seed fills every tenant's tables with a few AgenticHR rows.
func seed(ctx context.Context, cluster *pgcluster.Cluster, cfg *config.Config, names []string) error {
	conn, err := cluster.Connect(ctx, cfg.Backend.Database)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	people := []string{"Ada", "Grace", "Linus", "Barbara", "Ken"}
	for _, name := range names {
		t := config.Tenant{Name: name}
		if err := conn.QueryRow(ctx, "SELECT schema FROM tenantproxy.tenants WHERE name = $1", name).Scan(&t.Schema); err != nil {
			return fmt.Errorf("tenant %s: %w", name, err)
		}
		q := pgident.Quote(t.Schema) + "."
		batch := &pgx.Batch{}
		batch.Queue("INSERT INTO " + q + "departments (name) VALUES ('Engineering'), ('People')")
		for i, p := range people {
			batch.Queue("INSERT INTO "+q+"employees (name, email, department_id) VALUES ($1, $2, $3)",
				p+" of "+t.Name, fmt.Sprintf("%s@%s.example", p, t.Name), 1+i%2)
		}
		batch.Queue("INSERT INTO " + q + "leave_requests (employee_id, starts_on, ends_on, kind) VALUES (1, current_date + 7, current_date + 11, 'vacation'), (2, current_date, current_date, 'sick')")
		if err := conn.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("tenant %s: %w", t.Name, err)
		}
	}
	return nil
}

func writeEmbeddedMigrations() (string, error) {
	dir, err := os.MkdirTemp("", "tenantproxy-migrations-")
	if err != nil {
		return "", err
	}
	err = fs.WalkDir(migrations.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := migrations.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(p)), b, 0o644)
	})
	return dir, err
}

func randomPassword() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}
