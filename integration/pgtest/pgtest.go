// Package pgtest starts throwaway PostgreSQL clusters for tests and benchmarks. It is a thin test-facing
// wrapper over internal/pgcluster (which the demo uses without linking testing): New ties a cluster to a
// test's lifetime and MustExec fails the test on error; everything else is pgcluster's.
package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/internal/pgcluster"
)

// Options configure a cluster (see pgcluster.Options).
type Options = pgcluster.Options

// Cluster is one running throwaway PostgreSQL server: a pgcluster.Cluster with test helpers.
type Cluster struct {
	*pgcluster.Cluster
}

// BinDir finds the PostgreSQL server binaries (see pgcluster.BinDir).
func BinDir() (string, error) { return pgcluster.BinDir() }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) { return pgcluster.FreePort() }

// Start initialises and starts a new cluster; the caller stops it.
func Start(opts Options) (*Cluster, error) {
	c, err := pgcluster.Start(opts)
	if err != nil {
		return nil, err
	}
	return &Cluster{Cluster: c}, nil
}

// New starts a cluster for a test or benchmark and stops it when the test ends.
func New(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := Start(opts)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() { c.Stop() })
	return c
}

// MustExec is Exec that fails the test on error.
func (c *Cluster) MustExec(tb testing.TB, db, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Exec(ctx, db, sql); err != nil {
		tb.Fatalf("pgtest: exec %q: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + "..."
	}
	return s
}
