package main

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// decodePNG fails the test unless path is a PNG of a real size.
func decodePNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("%s: %v", path, b)
	}
}

func TestChartsRenderNonEmptyPNGs(t *testing.T) {
	dir := t.TempDir()
	nan := math.NaN()
	tests := []struct {
		name string
		draw func(path string) error
	}{
		{"line, log x", func(p string) error {
			return LineChart(p, "tps", "tenants", "tps", true, false, []Series{
				{Name: "pgbouncer", X: []float64{1, 10, 100, 1000, 10000}, Y: []float64{38000, 30000, 396, 281, 100}},
				{Name: "tenantproxy", X: []float64{1, 10, 100, 1000, 10000}, Y: []float64{23000, 20000, 13000, 8640, 8000}},
			})
		}},
		{"line, log x and y, gaps and zeros skipped", func(p string) error {
			return LineChart(p, "p99", "tenants", "ms", true, true, []Series{
				{Name: "a", X: []float64{1, 10, 100}, Y: []float64{0, nan, 4.2}},
				{Name: "b", X: []float64{1, 10, 100}, Y: []float64{3, 4, 5}},
			})
		}},
		{"bars with a target line", func(p string) error {
			return BarChart(p, "idle", "KiB", []string{"pgbouncer", "tenantproxy"}, []Series{{Name: "KiB", Y: []float64{0.85, 4.44}}}, 2, "target")
		}},
		{"grouped bars, one value missing", func(p string) error {
			return BarChart(p, "noisy", "ms", []string{"simple p50", "simple p99"}, []Series{{Name: "-n 0", Y: []float64{1, 4}}, {Name: "-n 200", Y: []float64{nan}}}, nan, "")
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i))+".png")
			if err := tc.draw(p); err != nil {
				t.Fatal(err)
			}
			decodePNG(t, p)
		})
	}
}

func TestChartsWithoutDataAreAnErrorNotAnEmptyPicture(t *testing.T) {
	dir := t.TempDir()
	nan := math.NaN()
	tests := []struct {
		name string
		draw func(path string) error
	}{
		{"line without points", func(p string) error { return LineChart(p, "t", "x", "y", true, false, []Series{{Name: "a"}}) }},
		{"line with only NaN", func(p string) error {
			return LineChart(p, "t", "x", "y", false, false, []Series{{Name: "a", X: []float64{1}, Y: []float64{nan}}})
		}},
		{"bars without categories", func(p string) error { return BarChart(p, "t", "y", nil, []Series{{Name: "a"}}, nan, "") }},
		{"bars with only NaN", func(p string) error {
			return BarChart(p, "t", "y", []string{"a"}, []Series{{Name: "a", Y: []float64{nan}}}, nan, "")
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i))+".png")
			if err := tc.draw(p); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(p); err == nil {
				t.Error("a picture was written anyway")
			}
		})
	}
}
