package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium returns the headless browser the status page is tested in (Debian package chromium,
// installed by scripts/install-deps.sh).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run scripts/install-deps.sh (Debian package chromium)")
	return ""
}

// browse loads url in headless Chromium and returns the DOM it rendered, or writes a screenshot. A
// browser that dies by a signal (it segfaults now and then on a loaded machine, before loading anything)
// is started again, at most three times in all; any other failure fails the test at once.
func browse(t *testing.T, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr strings.Builder
	for attempt := 1; ; attempt++ {
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
			"--user-data-dir=" + t.TempDir()}, extra...)
		if len(extra) == 0 {
			args = append(args, "--dump-dom")
		}
		cmd := exec.CommandContext(ctx, chromium(t), append(args, url)...)
		stderr.Reset()
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return string(out)
		}
		var exit *exec.ExitError
		crashed := errors.As(err, &exit) && !exit.Exited() && ctx.Err() == nil
		if !crashed || attempt == 3 {
			t.Fatalf("chromium (attempt %d): %v\n%s", attempt, err, stderr.String())
		}
		t.Logf("chromium died (%v); starting it again", err)
	}
}

// cells returns the text of each row's cells of the table with this id.
func cells(dom, id string) [][]string {
	start := strings.Index(dom, `<table id="`+id+`"`)
	if start < 0 {
		return nil
	}
	end := strings.Index(dom[start:], "</table>")
	table := dom[start : start+end]
	var rows [][]string
	cell := regexp.MustCompile(`<t[dh][^>]*>(.*?)</t[dh]>`)
	for _, tr := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(table, -1) {
		var row []string
		for _, c := range cell.FindAllStringSubmatch(tr[1], -1) {
			row = append(row, c[1])
		}
		rows = append(rows, row)
	}
	return rows
}

func TestStatusPageInHeadlessChromium(t *testing.T) {
	snap := sampleSnapshot()
	snap.Databases = append(snap.Databases, Database{Name: "globex"}, Database{Name: "initech"})
	snap.Pools = append(snap.Pools, Pool{Database: "globex", ClActive: 1, SvActive: 2, SvIdle: 3, MaxWait: 5 * time.Second})
	snap.Tenants = append(snap.Tenants,
		Tenant{Name: "globex", Clients: 1, XactPerSec: 99, QueryPerSec: 100, MaxWait: 5 * time.Second, Waiting: 1},
		Tenant{Name: "initech", Clients: 0, Refused: 12},
		Tenant{Name: "<script>alert(1)</script>", Clients: 0})
	src := &fakeSource{snap: snap}
	srv := httptest.NewServer(StatusHandler(src))
	defer srv.Close()

	dom := browse(t, srv.URL+"/status")
	if !strings.Contains(dom, "tenantproxy 9.9.9") || !strings.Contains(dom, "3 tenants") || !strings.Contains(dom, "state: paused") {
		t.Errorf("the header lacks version, tenant count or state:\n%s", dom)
	}
	if !regexp.MustCompile(`<meta http-equiv="refresh" content="5">`).MatchString(dom) {
		t.Error("the page does not refresh itself")
	}
	pool := cells(dom, "pool")
	if len(pool) != 2 {
		t.Fatalf("pool table: %v", pool)
	}
	// Sums over the tenants' pools: cl_active 4+1, cl_waiting 2, sv_active 3+2, sv_idle 1+3; the longest wait 5s.
	if got := strings.Join(pool[1], " "); got != "5 2 5 4 0 0 5s" {
		t.Errorf("pool row = %q", got)
	}
	top := cells(dom, "top")
	if len(top) < 3 || top[1][0] != "globex" || top[2][0] != "acme" {
		t.Fatalf("top tenants are not by activity: %v", top)
	}
	if top[1][4] != "99.00" || top[2][1] != "6" || top[2][8] != "4" || top[2][10] != "yes" {
		t.Errorf("top tenant rows: %v", top[1:3])
	}
	waits := cells(dom, "waits")
	if len(waits) != 3 || waits[1][0] != "globex" || waits[1][2] != "5s" || waits[2][0] != "acme" {
		t.Errorf("waits: %v", waits)
	}
	refusals := cells(dom, "refusals")
	if len(refusals) != 3 || refusals[1][0] != "initech" || refusals[1][1] != "12" || refusals[2][1] != "4" {
		t.Errorf("refusals: %v", refusals)
	}
	if strings.Contains(dom, "<script>") {
		t.Error("a tenant name was rendered as markup")
	}
	if !strings.Contains(dom, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the tenant with markup in its name is missing")
	}
	// The figures move with the snapshot.
	src.mu.Lock()
	src.snap.Pools[0].ClWaiting = 7
	src.mu.Unlock()
	if got := cells(browse(t, srv.URL+"/status"), "pool")[1][1]; got != "7" {
		t.Errorf("after the snapshot changed, clients waiting = %s", got)
	}

	if path := os.Getenv("TENANTPROXY_STATUS_SCREENSHOT"); path != "" {
		// docs/status.png is this page without the markup tenant:
		// TENANTPROXY_STATUS_SCREENSHOT=$PWD/docs/status.png go test -run StatusPageInHeadless ./admin/
		src.mu.Lock()
		src.snap.Tenants = src.snap.Tenants[:3]
		src.mu.Unlock()
		browse(t, srv.URL+"/status", "--screenshot="+path, "--window-size=1100,700", "--hide-scrollbars")
	}
}

func TestStatusPageSaysWhatTheRelayDoesNotReport(t *testing.T) {
	snap := sampleSnapshot()
	snap.RelayErr = ErrNotAvailable
	srv := httptest.NewServer(StatusHandler(&fakeSource{snap: snap}))
	defer srv.Close()
	dom := browse(t, srv.URL+"/status")
	if !strings.Contains(dom, `id="relay-error"`) || !strings.Contains(dom, ErrNotAvailable.Message) {
		t.Errorf("the page hides the relay's error:\n%s", dom)
	}
	if strings.Contains(dom, `id="pool"`) {
		t.Error("the page shows pool figures it does not have")
	}
}

func TestStatusPageRefusesOtherMethodsAndFailedSnapshots(t *testing.T) {
	src := &fakeSource{snap: sampleSnapshot()}
	srv := httptest.NewServer(StatusHandler(src))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	src.mu.Lock()
	src.snapErr = fmt.Errorf("relay gone")
	src.mu.Unlock()
	resp, err = http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("failed snapshot: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("failed snapshot content type %q", ct)
	}
}
