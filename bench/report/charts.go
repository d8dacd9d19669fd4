package main

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Series is one named set of values of a chart: Y per category for bars, Y per X for lines.
type Series struct {
	Name string
	X, Y []float64
}

const chartW, chartH = 16 * vg.Centimeter, 10 * vg.Centimeter

// LineChart writes a PNG of one line per series; logX/logY use log scales (non-positive points are left out
// there, a NaN point anywhere).
func LineChart(path, title, xlabel, ylabel string, logX, logY bool, series []Series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	if logX {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	if logY {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	drawn := 0
	for i, s := range series {
		var xys plotter.XYs
		for j := range s.X {
			x, y := s.X[j], s.Y[j]
			if math.IsNaN(x) || math.IsNaN(y) || math.IsInf(y, 0) || (logX && x <= 0) || (logY && y <= 0) {
				continue
			}
			xys = append(xys, plotter.XY{X: x, Y: y})
		}
		if len(xys) == 0 {
			continue
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color, pts.Color = plotutil.Color(i), plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
		p.Add(l, pts)
		p.Legend.Add(s.Name, l, pts)
		drawn++
	}
	if drawn == 0 {
		return fmt.Errorf("%s: no data to draw", path)
	}
	// Room above the data for the legend; linear axes start at zero so that ratios read off the picture.
	if logY {
		p.Y.Max *= 3
	} else {
		p.Y.Min = 0
		p.Y.Max *= 1.2
	}
	return p.Save(chartW, chartH, path)
}

// BarChart writes a PNG of grouped bars: one group per category, one bar per series in it. A NaN value
// draws as an empty bar. limit, when not NaN, draws a horizontal line labelled limitName (a target).
func BarChart(path, title, ylabel string, categories []string, series []Series, limit float64, limitName string) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	if len(categories) == 0 || len(series) == 0 {
		return fmt.Errorf("%s: no data to draw", path)
	}
	// Bars fill 70 % of each category's share of the width, at most 40 points each.
	w := vg.Points(math.Min(40, 0.7*float64(chartW.Points())/float64(len(categories)*len(series))))
	drew := false
	for i, s := range series {
		vals := make(plotter.Values, len(categories))
		for j := range categories {
			if j < len(s.Y) && !math.IsNaN(s.Y[j]) && !math.IsInf(s.Y[j], 0) {
				vals[j] = s.Y[j]
				drew = true
			}
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		b.Color = plotutil.Color(i)
		b.LineStyle.Width = 0
		b.Offset = w * vg.Length(float64(i)-float64(len(series)-1)/2)
		p.Add(b)
		p.Legend.Add(s.Name, b)
	}
	if !drew {
		return fmt.Errorf("%s: no data to draw", path)
	}
	if !math.IsNaN(limit) {
		f := plotter.NewFunction(func(float64) float64 { return limit })
		f.Color = plotutil.Color(len(series))
		f.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(f)
		p.Legend.Add(limitName, f)
		if limit*1.1 > p.Y.Max {
			p.Y.Max = limit * 1.1
		}
	}
	p.NominalX(categories...)
	// Half a category of margin on each side, so that the outer bars are not cut at the axes.
	p.X.Min, p.X.Max = -0.5, float64(len(categories))-0.5
	p.Y.Min = 0
	p.Y.Max *= 1.3 // room for the legend
	return p.Save(chartW, chartH, path)
}
