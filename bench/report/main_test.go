package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunOneStopsACommandThatRunsPastItsTimeoutAndItsChildren(t *testing.T) {
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	pidfile := filepath.Join(dir, "child.pid")
	// The shell's EXIT trap is how the referee scripts stop their servers: it must get to run.
	line := "trap 'echo cleaned up' EXIT; sleep 300 & echo $! > " + pidfile + "; wait"
	t0 := time.Now()
	err = runOne(context.Background(), line, out, 300*time.Millisecond)
	if err == nil {
		t.Fatal("a command stopped by its timeout reported success")
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Fatalf("took %v to stop", d)
	}
	b, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(b), "cleaned up") || !strings.Contains(string(b), "report: stopped after 300ms") {
		t.Errorf("output %q", b)
	}
	pb, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil {
		t.Fatal(err)
	}
	// The background sleep was in the command's process group: it is gone (or a zombie being reaped).
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunOneReportsTheExitStatus(t *testing.T) {
	out, err := os.Create(filepath.Join(t.TempDir(), "out.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := runOne(context.Background(), "echo hi; exit 0", out, time.Minute); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	if err := runOne(context.Background(), "exit 3", out, time.Minute); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("exit 3: %v", err)
	}
}
