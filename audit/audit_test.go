package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func readLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestEveryEventKindIsOneJSONLineWithItsFields(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 16, nil)
	var g Global
	g.Set(w)
	c := Conn{Tenant: "acme", User: "alice", Addr: "10.0.0.1:5000", Session: 77}
	g.Connect(c)
	g.Disconnect(c, "idle timeout")
	g.AuthFailed(Conn{User: "mallory", Addr: "10.0.0.9:1"}, "28P01", "password authentication failed")
	g.Refused(c, "42501", "SET ROLE is not allowed", "a1b2c3", "")
	g.Tripwire(c, "backend in tenant globex's context")
	g.AdminCommand(Admin{User: "root", Addr: "10.0.0.2:1", Tenant: "acme", Command: "PAUSE acme"})
	g.Lifecycle("postgres", "acme", "tenant create acme", "")
	w.Close()
	lines := readLines(t, buf.Bytes())
	want := []struct {
		event  string
		fields map[string]any
	}{
		{KindConnect, map[string]any{"tenant": "acme", "user": "alice", "addr": "10.0.0.1:5000", "session": 77.0}},
		{KindDisconnect, map[string]any{"reason": "idle timeout", "session": 77.0}},
		{KindAuthFailed, map[string]any{"user": "mallory", "sqlstate": "28P01", "tenant": "", "session": 0.0}},
		{KindRefused, map[string]any{"sqlstate": "42501", "reason": "SET ROLE is not allowed", "fingerprint": "a1b2c3"}},
		{KindTripwire, map[string]any{"reason": "backend in tenant globex's context"}},
		{KindAdmin, map[string]any{"user": "root", "tenant": "acme", "command": "PAUSE acme"}},
		{KindLifecycle, map[string]any{"user": "postgres", "tenant": "acme", "command": "tenant create acme"}},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, w := range want {
		l := lines[i]
		if l["event"] != w.event {
			t.Errorf("line %d: event %v, want %s", i, l["event"], w.event)
		}
		for _, k := range []string{"time", "tenant", "user", "addr", "session"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line %d (%s) lacks %s", i, w.event, k)
			}
		}
		if ts, _ := l["time"].(string); ts == "" {
			t.Errorf("line %d: no time", i)
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("line %d: time %q: %v", i, ts, err)
		}
		for k, v := range w.fields {
			if l[k] != v {
				t.Errorf("line %d (%s): %s = %v, want %v", i, w.event, k, l[k], v)
			}
		}
	}
	if _, ok := lines[3]["statement"]; ok {
		t.Error("a refused statement's text was written although none was given")
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestWritingNeverBlocksAndDropsAreCountedAndLogged(t *testing.T) {
	out := &blockingWriter{release: make(chan struct{})}
	core, logs := observer.New(zap.WarnLevel)
	w := NewWriter(out, 8, zap.New(core))
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.counter)
	const n = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			w.Write(Event{Event: KindConnect, User: "u"})
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked behind a stuck output")
	}
	// Only the queue and what fits the writer's 64 KiB buffer get through; the rest are dropped.
	dropped := w.Dropped()
	if dropped < n/2 || dropped > n {
		t.Errorf("dropped %d of %d with a queue of 8", dropped, n)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "tenantproxy_audit_dropped_total" {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	if got := mfs[0].GetMetric()[0].GetCounter().GetValue(); int64(got) != dropped {
		t.Errorf("tenantproxy_audit_dropped_total = %v, Dropped() = %d", got, dropped)
	}
	if logs.FilterMessage("audit log queue full; events dropped").Len() == 0 {
		t.Error("drops were not logged")
	}
	close(out.release)
	w.Close()
	out.mu.Lock()
	written := int64(len(readLines(t, out.buf.Bytes())))
	out.mu.Unlock()
	if written+dropped != n {
		t.Errorf("written %d + dropped %d != %d", written, dropped, n)
	}
}

func TestCloseWritesOutTheQueueAndLaterEventsAreDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, prometheus.NewRegistry(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		w.Write(Event{Event: KindConnect})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Write(Event{Event: KindDisconnect})
	w.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(readLines(t, b)); got != 100 {
		t.Errorf("%d lines after Close, want 100", got)
	}
	if w.Dropped() != 1 {
		t.Errorf("an event after Close: dropped %d, want 1", w.Dropped())
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", fi.Mode().Perm())
	}
	// Reopening appends.
	w, err = Open(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(Event{Event: KindConnect})
	w.Close()
	b, _ = os.ReadFile(path)
	if got := len(readLines(t, b)); got != 101 {
		t.Errorf("%d lines after reopening, want 101", got)
	}
}

func TestOpenRefusesAnUnwritablePathNamingTheKey(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "audit.log"), nil, nil)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("[audit] path")) {
		t.Errorf("got %v", err)
	}
}

func TestTheGlobalLogIsANoOpUntilSetAndSafeAcrossGoroutines(t *testing.T) {
	var g Global
	g.Connect(Conn{User: "nobody"}) // no writer: nothing happens, nothing panics
	if g.Enabled() {
		t.Fatal("enabled without a writer")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, 4096, nil)
	g.Set(w)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				g.Refused(Conn{Tenant: "acme"}, "42501", "r", "f", "")
			}
		}()
	}
	wg.Wait()
	g.Unset(newWriterForTest(t)) // not the installed one: stays
	if !g.Enabled() {
		t.Fatal("Unset of another writer removed the installed one")
	}
	g.Unset(w)
	g.Connect(Conn{})
	w.Close()
	if got := int64(len(readLines(t, buf.Bytes()))); got+w.Dropped() != 800 {
		t.Errorf("%d lines + %d dropped, want 800", got, w.Dropped())
	}
}

// newWriterForTest is a Writer of a discarded output, closed when t ends.
func newWriterForTest(t *testing.T) *Writer {
	w := NewWriter(&bytes.Buffer{}, 1, nil)
	t.Cleanup(func() { w.Close() })
	return w
}
