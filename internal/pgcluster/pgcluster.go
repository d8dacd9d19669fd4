// Package pgcluster starts throwaway PostgreSQL clusters for the demo, benchmarks and tests. A cluster lives
// in a temporary directory with its own free port and socket directory, runs as the OS user "postgres"
// when the process is root (initdb refuses root), and is removed by Stop.
//
// It does not import testing, so the shipped binary (tenantproxy demo) can use it; tests use the thin
// wrapper integration/pgtest, which adds New and MustExec.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Options configure a cluster.
type Options struct {
	// Auth is "trust" (default) or "scram-sha-256" for TCP connections.
	Auth string
	// Password is the superuser's password (default "postgres"); used by scram-sha-256 auth.
	Password string
	// Conf lines are appended to postgresql.conf.
	Conf []string
	// KeepDir leaves the data directory in place after Stop (for debugging).
	KeepDir bool
}

// Cluster is one running throwaway PostgreSQL server.
type Cluster struct {
	Dir      string // temporary directory holding data/, the socket and server.log
	BinDir   string // where initdb, pg_ctl, psql and friends live
	Host     string // always 127.0.0.1
	Port     int
	User     string // the superuser, "postgres"
	Password string

	opts    Options
	mu      sync.Mutex
	stopped bool
}

// BinDir finds the PostgreSQL server binaries: the directory of pg_ctl on PATH, else the newest
// /usr/lib/postgresql/*/bin.
func BinDir() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		// Follow links (some images link pg_ctl into /usr/local/bin): psql and pgbench live beside the target.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) < versionOf(dirs[j]) })
	for k := len(dirs) - 1; k >= 0; k-- {
		if _, err := os.Stat(filepath.Join(dirs[k], "pg_ctl")); err == nil {
			return dirs[k], nil
		}
	}
	return "", errors.New("pgcluster: no PostgreSQL server binaries (pg_ctl) on PATH or under /usr/lib/postgresql/*/bin")
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start initialises and starts a new cluster.
func Start(opts Options) (*Cluster, error) {
	if opts.Auth == "" {
		opts.Auth = "trust"
	}
	if opts.Auth != "trust" && opts.Auth != "scram-sha-256" {
		return nil, fmt.Errorf("pgcluster: unsupported auth %q", opts.Auth)
	}
	if opts.Password == "" {
		opts.Password = "postgres"
	}
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, BinDir: bin, Host: "127.0.0.1", User: "postgres", Password: opts.Password, opts: opts}
	if err := c.init(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) init() error {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgcluster: running as root needs the OS user postgres: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.Dir, uid, gid); err != nil {
			return err
		}
		if err := os.Chmod(c.Dir, 0o755); err != nil {
			return err
		}
	}
	pwfile := filepath.Join(c.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o644); err != nil {
		return err
	}
	if err := c.chownToPostgres(pwfile); err != nil {
		return err
	}
	args := []string{"-D", c.DataDir(), "-U", c.User, "-E", "UTF8", "--locale=C.UTF-8", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=" + c.opts.Auth, "--no-sync"}
	if out, err := c.run("initdb", args...); err != nil {
		return fmt.Errorf("pgcluster: initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	for attempt := 0; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		c.Port = port
		conf := []string{
			"port = " + strconv.Itoa(port),
			"listen_addresses = '127.0.0.1'",
			"unix_socket_directories = '" + c.Dir + "'",
			"max_connections = 300",
			"shared_buffers = 128MB",
			"fsync = off", "full_page_writes = off", // synchronous_commit stays on: fault tests count acknowledged writes across crashes
			"log_min_messages = warning",
			"password_encryption = 'scram-sha-256'",
		}
		conf = append(conf, c.opts.Conf...)
		auto := filepath.Join(c.DataDir(), "postgresql.auto.conf")
		if err := os.WriteFile(auto, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		if err := c.chownToPostgres(auto); err != nil {
			return err
		}
		if err := c.StartServer(); err == nil {
			return nil
		} else if attempt >= 3 {
			return err
		}
	}
}

func (c *Cluster) chownToPostgres(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return filepath.Join(c.Dir, "data") }

// LogFile is the server's log.
func (c *Cluster) LogFile() string { return filepath.Join(c.Dir, "server.log") }

// run executes a server binary, as the OS user postgres when the process is root.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(c.BinDir, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.Bytes(), err
}

// StartServer starts the server (again) and waits until it accepts connections.
func (c *Cluster) StartServer() error {
	out, err := c.run("pg_ctl", "-D", c.DataDir(), "-l", c.LogFile(), "-w", "-t", "60", "start")
	if err != nil {
		log, _ := os.ReadFile(c.LogFile())
		return fmt.Errorf("pgcluster: pg_ctl start: %v\n%s\n%s", err, out, tail(string(log), 2000))
	}
	c.mu.Lock()
	c.stopped = false
	c.mu.Unlock()
	return nil
}

// StopServer stops the server with the given pg_ctl mode ("smart", "fast" or "immediate") and keeps the
// data directory, so StartServer can bring it back.
func (c *Cluster) StopServer(mode string) error {
	out, err := c.run("pg_ctl", "-D", c.DataDir(), "-m", mode, "-w", "-t", "60", "stop")
	if err != nil {
		return fmt.Errorf("pgcluster: pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Stop stops the server and removes its directory. It is safe to call twice.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	c.run("pg_ctl", "-D", c.DataDir(), "-m", "immediate", "-w", "stop")
	if c.opts.KeepDir {
		return nil
	}
	return os.RemoveAll(c.Dir)
}

// DSN returns a keyword/value connection string for db as user (superuser when user is empty).
func (c *Cluster) DSN(db, user string) string {
	if user == "" {
		user = c.User
	}
	if db == "" {
		db = "postgres"
	}
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable", c.Host, c.Port, db, user)
	if user == c.User {
		dsn += " password=" + c.Password
	}
	return dsn
}

// Connect opens a pgx connection to db as the superuser.
func (c *Cluster) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, c.DSN(db, ""))
}

// Exec runs SQL (one or more statements, simple protocol) in db as the superuser.
func (c *Cluster) Exec(ctx context.Context, db, sql string) error {
	conn, err := c.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	return err
}

// Bin returns the path of a client binary such as psql or pgbench of the same installation.
func (c *Cluster) Bin(name string) string {
	if p := filepath.Join(c.BinDir, name); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
