package session

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// seriesCount is how many series c has.
func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

func TestGuardRefusalsAreCountedByAClosedSetOfReasons(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	for _, tc := range []struct{ code, reason string }{
		{"42501", "policy"}, {"25006", "read_only"}, {"42601", "syntax"}, {"22023", "invalid_value"},
		{"0A000", "unsupported"}, {"42622", "name_too_long"}, {"XX000", "other"}, {"not a code", "other"},
	} {
		before := counterValue(t, m.Refusals.WithLabelValues(tc.reason))
		m.refused(tc.code)
		if got := counterValue(t, m.Refusals.WithLabelValues(tc.reason)) - before; got != 1 {
			t.Errorf("refusal %q: reason %q counted %v times, want 1", tc.code, tc.reason, got)
		}
	}
	if n := seriesCount(m.Refusals); n != len(RefusalReasons()) {
		t.Errorf("%d reason series, want the %d of RefusalReasons", n, len(RefusalReasons()))
	}
	if got := counterValue(t, m.Errors.WithLabelValues("42501", "proxy")); got != 1 {
		t.Errorf("errors_total{42501, proxy} = %v, want 1: a refusal is an error the client gets", got)
	}
}

func TestErrorCodesStayBounded(t *testing.T) {
	m := NewMetrics(nil)
	for i := 0; i < 3*maxErrorCodes; i++ {
		m.errored(fmt.Sprintf("%05d", i), "server")
	}
	m.errored("22012", "server") // a code first seen past the cap
	m.errored("bad", "server")
	m.errored("xx000", "server") // lower case is not a SQLSTATE
	if n := seriesCount(m.Errors); n > maxErrorCodes+1 {
		t.Errorf("%d sqlstate series, want at most %d", n, maxErrorCodes+1)
	}
	// 3×cap codes were counted: cap of them under their own code, the rest and the three above as other.
	if got, want := counterValue(t, m.Errors.WithLabelValues("other", "server")), float64(2*maxErrorCodes+3); got != want {
		t.Errorf("other = %v, want %v", got, want)
	}
	if got := counterValue(t, m.Errors.WithLabelValues("00007", "server")); got != 1 {
		t.Errorf("00007 = %v, want 1", got)
	}
}
