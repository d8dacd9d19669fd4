package config

import (
	"strings"
	"testing"
	"time"
)

func TestMetricsKeys(t *testing.T) {
	for _, tc := range []struct {
		name, section string
		series        int
		interval      time.Duration
		wantErr       string
	}{
		{"defaults: 100 tenant series, no schema collector", "", 100, 0, ""},
		{"both set", "tenant_series = 7\nschema_stats_interval = \"60s\"", 7, time.Minute, ""},
		{"collector off explicitly", "schema_stats_interval = \"0s\"", 100, 0, ""},
		{"negative tenant_series", "tenant_series = -1", 0, 0, "[metrics] tenant_series"},
		{"negative interval", "schema_stats_interval = \"-5s\"", 0, 0, "[metrics] schema_stats_interval"},
		{"bad interval", "schema_stats_interval = \"often\"", 0, 0, "often"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(minimal + "\n[metrics]\n" + tc.section + "\n")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Metrics.TenantSeries != tc.series || c.Metrics.SchemaStatsInterval.Duration != tc.interval {
				t.Errorf("tenant_series %d, schema_stats_interval %v; want %d, %v", c.Metrics.TenantSeries, c.Metrics.SchemaStatsInterval.Duration, tc.series, tc.interval)
			}
		})
	}
}
