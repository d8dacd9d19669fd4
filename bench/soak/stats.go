package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// stats is what the clients saw, shared by all of them.
type stats struct {
	tx       atomic.Int64 // operations that succeeded
	connects atomic.Int64
	cross    atomic.Int64 // rows of another tenant
	// lostCancels counts queries that ran to their end although the driver sent a CancelRequest.
	lostCancels atomic.Int64

	mu       sync.Mutex
	errs     map[string]int     // unexpected errors by SQLSTATE ("none: ..." without one)
	sample   map[string]string  // one message per SQLSTATE
	provoked map[string]int     // the errors the clients provoked on purpose
	hung     int                // operations that took longer than opTimeout
	acked    map[string][]int32 // acknowledged insert ids by tenant
}

func newStats() *stats {
	return &stats{errs: map[string]int{}, sample: map[string]string{}, provoked: map[string]int{}, acked: map[string][]int32{}}
}

// failed records an unexpected error of an operation.
func (s *stats) failed(what string, err error, hung bool) {
	code := sqlstate(err)
	if code == "" {
		code = "none"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[code]++
	if _, ok := s.sample[code]; !ok {
		s.sample[code] = what + ": " + err.Error()
	}
	if hung {
		s.hung++
	}
}

// expected records an error a client provoked on purpose.
func (s *stats) expected(code string) {
	s.mu.Lock()
	s.provoked[code]++
	s.mu.Unlock()
}

// ack records an acknowledged insert.
func (s *stats) ack(tenant string, id int32) {
	s.mu.Lock()
	s.acked[tenant] = append(s.acked[tenant], id)
	s.mu.Unlock()
}

// writeCounts prints a count map in key order, with a sample message for each key when samples is set.
func writeCounts(w io.Writer, m map[string]int, samples map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		fmt.Fprintln(w, "    none")
	}
	for _, k := range keys {
		fmt.Fprintf(w, "    %-16s %8d", k, m[k])
		if msg := samples[k]; msg != "" {
			if len(msg) > 160 {
				msg = msg[:160] + "..."
			}
			fmt.Fprintf(w, "   e.g. %s", msg)
		}
		fmt.Fprintln(w)
	}
}

// rssBytes is this process's resident set size; the proxy runs in it.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
