// Command report runs the referee scenarios of issue 10 (../shared/referee/tenants.sh, idle.sh and
// bench/ab.sh, as they are), keeps their raw output in bench/results/<date>-<commit>/, and writes
// bench/REPORT.md with PNG charts and a targets table whose pass/fail is computed from the figures.
//
//	go run ./bench/report -scale full            # the exact commands (long)
//	go run ./bench/report -scale quick           # short smoke run into bench/results/tmp/ (not a report)
//	go run ./bench/report -render DIR            # re-render REPORT.md and charts from a results folder
//
// `make bench-report` wraps it (SCALE=quick|full, default full).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Manifest records, in each results folder, what ran: the report is rendered from it alone.
type Manifest struct {
	Commit  string      `json:"commit"`
	Started time.Time   `json:"started"`
	Scale   string      `json:"scale"`
	Machine string      `json:"machine"` // CPUs, model and load average when the run started
	Runs    []RunRecord `json:"runs"`
}

// RunRecord is one scenario that ran: its command, output file, exit status and duration.
type RunRecord struct {
	Scenario
	File    string  `json:"file"`
	RC      int     `json:"rc"`
	Seconds float64 `json:"seconds"`
}

func main() {
	scale := flag.String("scale", "full", "full (the issue's exact commands) or quick (short smoke run)")
	referee := flag.String("referee", "../shared/referee", "referee directory, relative to the project root")
	tp := flag.String("tp", "bin/tenantproxy", "tenantproxy binary, relative to the project root (make build)")
	nofair := flag.String("nofair", "", "TP_EXTRA lines that turn the proxy's fairness off: adds a noisy-neighbour run without fairness")
	only := flag.String("only", "", "comma-separated scenario ids to run (default all)")
	timeout := flag.Duration("timeout", 45*time.Minute, "longest a single command may run before it is stopped (its figures are then missing)")
	render := flag.String("render", "", "render from this results folder instead of running")
	out := flag.String("report", "", "report path (default bench/REPORT.md for a full run of everything, else <results>/REPORT.md)")
	flag.Parse()

	root, err := gitOut("rev-parse", "--show-toplevel")
	if err != nil {
		fatal("not in a git checkout: %v", err)
	}
	// Paths given on the command line are relative to where it was typed; everything else to the root.
	dir, report := fromRoot(root, *render), fromRoot(root, *out)
	if err := os.Chdir(root); err != nil {
		fatal("%v", err)
	}
	if dir == "" {
		sc, ok := Scales[*scale]
		if !ok {
			fatal("unknown -scale %q (full or quick)", *scale)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		dir, err = runAll(ctx, sc, Scenarios(sc, *referee, *tp, *nofair), *only, *timeout)
		stop()
		if err != nil {
			fatal("%v", err)
		}
	}
	m, err := readManifest(dir)
	if err != nil {
		fatal("%v", err)
	}
	if report == "" {
		report = "bench/REPORT.md"
		if m.Scale != "full" || *only != "" {
			// A smoke run or a partial one is no report: it stays next to its raw output.
			report = filepath.Join(dir, "REPORT.md")
		}
	}
	if err := Render(dir, m, report); err != nil {
		fatal("%v", err)
	}
	fmt.Fprintf(os.Stderr, "report: wrote %s (charts and raw output in %s)\n", report, dir)
}

// fromRoot makes path (relative to the working directory) relative to root, where it may be.
func fromRoot(root, path string) string {
	if path == "" {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(root, abs); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return abs
}

func runAll(ctx context.Context, sc Scale, scenarios []Scenario, only string, timeout time.Duration) (string, error) {
	commit, err := Commit()
	if err != nil {
		return "", err
	}
	started := time.Now().UTC()
	name := started.Format("20060102T1504Z") + "-" + strings.ReplaceAll(commit, "+", "-")
	dir := filepath.Join("bench", "results", name)
	if sc.Name != "full" {
		// Smoke runs stay out of git (bench/results/tmp/ is ignored): their numbers are no report.
		dir = filepath.Join("bench", "results", "tmp", name+"-"+sc.Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	want := map[string]bool{}
	for _, id := range strings.Split(only, ",") {
		if id = strings.TrimSpace(id); id != "" {
			want[id] = true
		}
	}
	m := Manifest{Commit: commit, Started: started, Scale: sc.Name, Machine: machine()}
	for _, s := range scenarios {
		if len(want) > 0 && !want[s.ID] {
			continue
		}
		rec := RunRecord{Scenario: s, File: s.ID + ".txt"}
		fmt.Fprintf(os.Stderr, "report: %s: %s\n", s.ID, s.Cmd)
		f, err := os.Create(filepath.Join(dir, rec.File))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(f, "$ %s\n", s.Cmd)
		t0 := time.Now()
		err = runOne(ctx, s.Cmd, f, timeout)
		rec.Seconds = time.Since(t0).Seconds()
		if err != nil {
			rec.RC = -1
			if ee, ok := err.(*exec.ExitError); ok {
				rec.RC = ee.ExitCode()
			}
			fmt.Fprintf(os.Stderr, "report: %s failed (%v); its figures will be missing\n", s.ID, err)
		}
		f.Close()
		m.Runs = append(m.Runs, rec)
		// Written after every run, so an interrupted report can still be rendered.
		if err := writeManifest(dir, m); err != nil {
			return "", err
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("interrupted; render what ran with -render %s", dir)
		}
	}
	return dir, nil
}

// runOne runs a command line with bash in its own process group, output to out. When it runs past timeout
// or ctx ends, the whole group gets SIGTERM (the referee scripts' traps then stop their servers), and
// SIGKILL 30 s later.
func runOne(ctx context.Context, line string, out *os.File, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", line)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fmt.Fprintf(out, "report: stopped after %v\n", timeout)
	}
	if err != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers of the group, if any
	}
	return err
}

// machine describes the CPUs and how busy they were, for the reader of the report to judge the figures.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("%d CPUs (%s), load average %s at the start", runtime.NumCPU(), model, load)
}

// Commit is the short hash of HEAD, with "+dirty" when the working tree has changes.
func Commit() (string, error) {
	c, err := gitOut("rev-parse", "--short", "HEAD")
	if err != nil {
		return "", err
	}
	st, err := gitOut("status", "--porcelain")
	if err != nil {
		return "", err
	}
	if st != "" {
		c += "+dirty"
	}
	return c, nil
}

func gitOut(args ...string) (string, error) {
	b, err := exec.Command("git", args...).Output()
	return strings.TrimSpace(string(b)), err
}

func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644)
}

func readManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "report: "+format+"\n", args...)
	os.Exit(1)
}
