package tenants

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cols ...string) {
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether w is a terminal. A character device is not enough: /dev/null is one too.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress draws `[=====>    ] 412/1000 failures=1 ETA 12s` on a terminal and nothing otherwise. It is
// used by one goroutine.
type progress struct {
	w                   io.Writer
	tty                 bool
	total, done, failed int
	start, drawn        time.Time
	redrawEvery         time.Duration
}

const progressWidth = 30

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTerminal(w), total: total, start: time.Now(), redrawEvery: 100 * time.Millisecond}
}

// render is the bar's text after elapsed time.
func (p *progress) render(elapsed time.Duration) string {
	filled := progressWidth
	if p.total > 0 {
		filled = progressWidth * p.done / p.total
	}
	bar := strings.Repeat("=", filled)
	if filled < progressWidth {
		bar += ">" + strings.Repeat(" ", progressWidth-filled-1)
	}
	eta := "?"
	if p.done > 0 {
		eta = (elapsed / time.Duration(p.done) * time.Duration(p.total-p.done)).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %d/%d failures=%d ETA %s", bar, p.done, p.total, p.failed, eta)
}

func (p *progress) draw() {
	fmt.Fprintf(p.w, "\r\033[K%s", p.render(time.Since(p.start)))
	p.drawn = time.Now()
}

// step counts one finished item.
func (p *progress) step(failed bool) {
	p.done++
	if failed {
		p.failed++
	}
	if p.tty && (time.Since(p.drawn) >= p.redrawEvery || p.done == p.total) {
		p.draw()
	}
}

// printf writes a line to w above the bar.
func (p *progress) printf(w io.Writer, format string, args ...any) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(w, format, args...)
	if p.tty && p.done > 0 {
		p.draw()
	}
}

// finish leaves the final bar on its own line.
func (p *progress) finish() {
	if !p.tty {
		return
	}
	if p.done < p.total {
		p.draw()
	}
	fmt.Fprintln(p.w)
}
