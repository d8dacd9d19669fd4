package drivers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/integration/pgtest"
)

// scenarioTimeout bounds one external scenario; a healthy one takes a few seconds.
const scenarioTimeout = 45 * time.Second

// jdbcJar is the PostgreSQL JDBC driver of Debian's libpostgresql-jdbc-java.
const jdbcJar = "/usr/share/java/postgresql.jar"

// debianPython is Debian's interpreter, which sees python3-psycopg and python3-asyncpg (a python3 earlier on
// PATH, such as a pyenv one, does not).
const debianPython = "/usr/bin/python3"

// externalDriver is a driver whose scenario is a program of its own.
type externalDriver struct {
	name string
	// command returns the scenario's program, or an error naming what is missing from the machine.
	command func(t *testing.T) (*exec.Cmd, error)
}

// TestDriverMatrix runs the scenario of every driver that is not written in Go, in each pool mode, each as a
// program with the TP_* environment, and fails with the program's output when it exits non-zero. A runtime or
// driver missing from the machine fails the test: scripts/install-deps.sh installs them.
func TestDriverMatrix(t *testing.T) {
	drivers := []externalDriver{
		{name: "node-pg", command: nodeScenario("pg_scenario.js", "pg", "pg-copy-streams")},
		{name: "postgresjs", command: nodeScenario("postgresjs_scenario.js", "postgres")},
		{name: "psycopg", command: pythonScenario("psycopg_scenario.py", "psycopg")},
		{name: "asyncpg", command: pythonScenario("asyncpg_scenario.py", "asyncpg")},
		{name: "jdbc", command: jdbcScenario},
		{name: "psql", command: shellScenario("psql_scenario.sh", "PSQL", "psql")},
		{name: "pgbench", command: shellScenario("pgbench_scenario.sh", "PGBENCH", "pgbench")},
	}
	forEachMode(t, func(t *testing.T, mode string) {
		for _, d := range drivers {
			t.Run(d.name, func(t *testing.T) {
				cmd, err := d.command(t)
				if err != nil {
					t.Fatalf("%s: %v\nrun scripts/install-deps.sh (as root) to install the driver matrix's runtimes", d.name, err)
				}
				runScenario(t, cmd, startTarget(t, mode).env())
			})
		}
	})
}

// runScenario runs cmd with env (followed by cmd.Env) and fails the test with its output unless it exits 0
// having printed its "ok" line.
func runScenario(t *testing.T, cmd *exec.Cmd, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	run := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	run.Dir = cmd.Dir
	run.Env = append(append([]string(nil), env...), cmd.Env...)
	run.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	run.Stdout = &out
	run.Stderr = &out
	start := time.Now()
	err := run.Run()
	took := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("%s: no result after %v\n%s", strings.Join(cmd.Args, " "), scenarioTimeout, out.String())
	}
	if err != nil {
		t.Fatalf("%s: %v after %v\n%s", strings.Join(cmd.Args, " "), err, took, out.String())
	}
	if !bytes.Contains(out.Bytes(), []byte("\nok ")) && !bytes.HasPrefix(out.Bytes(), []byte("ok ")) {
		t.Fatalf("%s exited 0 without printing its ok line\n%s", strings.Join(cmd.Args, " "), out.String())
	}
	t.Logf("%v\n%s", took, strings.TrimSpace(out.String()))
}

// scenarioDir returns the absolute directory of the scenarios (this package's directory).
func scenarioDir(t *testing.T, sub string) string {
	t.Helper()
	dir, err := filepath.Abs(sub)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func nodeScenario(file string, modules ...string) func(t *testing.T) (*exec.Cmd, error) {
	return func(t *testing.T) (*exec.Cmd, error) {
		node, err := exec.LookPath("node")
		if err != nil {
			return nil, errors.New("no node on PATH")
		}
		dir := scenarioDir(t, "node")
		for _, m := range modules {
			if _, err := os.Stat(filepath.Join(dir, "node_modules", m, "package.json")); err != nil {
				return nil, fmt.Errorf("npm package %s is not installed in %s/node_modules", m, dir)
			}
		}
		cmd := exec.Command(node, filepath.Join(dir, file))
		cmd.Dir = dir
		return cmd, nil
	}
}

func pythonScenario(file, module string) func(t *testing.T) (*exec.Cmd, error) {
	return func(t *testing.T) (*exec.Cmd, error) {
		if out, err := exec.Command(debianPython, "-c", "import "+module).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s cannot import %s (Debian package python3-%s): %v\n%s", debianPython, module, module, err, out)
		}
		return exec.Command(debianPython, filepath.Join(scenarioDir(t, "python"), file)), nil
	}
}

// jdbcClasses is JdbcScenario compiled once for the package's run, into scratch.
var jdbcClasses struct {
	once sync.Once
	dir  string
	err  error
}

// jdbcScenario compiles JdbcScenario.java against Debian's JDBC driver, once per run of the package.
func jdbcScenario(t *testing.T) (*exec.Cmd, error) {
	if _, err := os.Stat(jdbcJar); err != nil {
		return nil, fmt.Errorf("no JDBC driver at %s (Debian package libpostgresql-jdbc-java)", jdbcJar)
	}
	javac, err := exec.LookPath("javac")
	if err != nil {
		return nil, errors.New("no javac on PATH (a Java 17 JDK)")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errors.New("no java on PATH (a Java 17 JDK)")
	}
	src := filepath.Join(scenarioDir(t, "java"), "JdbcScenario.java")
	jdbcClasses.once.Do(func() {
		dir := filepath.Join(scratch, "jdbc")
		if out, err := exec.Command(javac, "-cp", jdbcJar, "-d", dir, src).CombinedOutput(); err != nil {
			jdbcClasses.err = fmt.Errorf("javac %s: %v\n%s", src, err, out)
			return
		}
		jdbcClasses.dir = dir
	})
	if jdbcClasses.err != nil {
		t.Fatal(jdbcClasses.err)
	}
	return exec.Command(java, "-cp", jdbcClasses.dir+string(os.PathListSeparator)+jdbcJar, "JdbcScenario"), nil
}

// shellScenario runs a bash script that finds its PostgreSQL client program in the variable envVar, set to
// the program of the same installation as the test clusters when there is one.
func shellScenario(file, envVar, program string) func(t *testing.T) (*exec.Cmd, error) {
	return func(t *testing.T) (*exec.Cmd, error) {
		bin, err := clientProgram(program)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command("/bin/bash", filepath.Join(scenarioDir(t, "."), file))
		cmd.Env = []string{envVar + "=" + bin}
		return cmd, nil
	}
}

// clientProgram finds a PostgreSQL client program beside the server binaries pgtest uses, else on PATH.
func clientProgram(name string) (string, error) {
	if dir, err := pgtest.BinDir(); err == nil {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no %s beside the PostgreSQL server binaries or on PATH (Debian package postgresql-client-15)", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
