package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/app"
)

func serveCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.toml", "path of config.toml")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tenantproxy serve --config PATH\n\nRuns the proxy. SIGHUP reloads tenants and users; SIGTERM stops accepting, lets open transactions\nfinish ([pool] shutdown_timeout) and closes clients with 57P01.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy:", err)
		return 1
	}
	// Logs go to stdout: libpg_query briefly redirects stderr around each parse, and a line written to
	// stderr at that moment would be lost.
	log, err := newLogger(cfg, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "tenantproxy:", err)
		return 1
	}
	defer log.Sync()
	if path := os.Getenv("TENANTPROXY_CPUPROFILE"); path != "" {
		// For performance work: a CPU profile of the whole run, written at exit.
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	p, err := app.Start(cfg, log, version)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	for {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-p.Stopped(): // SHUTDOWN in the admin console
			log.Info("shut down by the admin console")
			return 0
		}
		if sig == syscall.SIGHUP {
			p.Reload(*path)
			continue
		}
		log.Info("shutting down", zap.String("signal", sig.String()), zap.Duration("timeout", cfg.Pool.ShutdownTimeout.Duration))
		if cfg.Listen.ReusePort && sig == syscall.SIGTERM {
			// A rolling restart (docs/operations.md): the next process already listens on the address.
			p.ShutdownWaitForClients(cfg.Pool.ShutdownTimeout.Duration)
			return 0
		}
		p.BeginShutdown()
		p.Shutdown(cfg.Pool.ShutdownTimeout.Duration)
		return 0
	}
}

func newLogger(cfg *config.Config, w io.Writer) (*zap.Logger, error) {
	var level zapcore.Level
	if err := level.Set(cfg.Log.Level); err != nil {
		return nil, fmt.Errorf("[log] level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if cfg.Log.Format == "console" {
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), level)), nil
}
