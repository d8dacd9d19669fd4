package admin

import (
	"context"
	"html/template"
	"net/http"
	"sort"
	"time"
)

// StatusRefresh is how often the status page reloads itself.
const StatusRefresh = 5 * time.Second

// StatusTopTenants is how many tenants the status page lists.
const StatusTopTenants = 20

// statusPage is the data the page template renders.
type statusPage struct {
	Snap     *Snapshot
	Refresh  int
	RelayErr string
	Pool     poolSummary
	Top      []Tenant
	Waiting  []Tenant
	Refusing []Tenant
	Tenants  int
}

type poolSummary struct {
	ClActive, ClWaiting, SvActive, SvIdle, SvUsed, SvLogin int64
	MaxWait                                                time.Duration
}

// StatusHandler serves GET /status: a plain HTML page rendered on the server from one snapshot of src,
// with no scripts and no external assets, that refreshes itself every StatusRefresh.
func StatusHandler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		snap, err := src.Snapshot(ctx)
		if err != nil {
			http.Error(w, "snapshot failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		page := buildStatus(snap)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		statusTemplate.Execute(w, page)
	})
}

func buildStatus(s *Snapshot) *statusPage {
	p := &statusPage{Snap: s, Refresh: int(StatusRefresh / time.Second), Tenants: len(s.Databases)}
	if s.RelayErr != nil {
		p.RelayErr = s.RelayErr.Error()
		return p
	}
	for _, x := range s.Pools {
		p.Pool.ClActive += x.ClActive
		p.Pool.ClWaiting += x.ClWaiting
		p.Pool.SvActive += x.SvActive
		p.Pool.SvIdle += x.SvIdle
		p.Pool.SvUsed += x.SvUsed
		p.Pool.SvLogin += x.SvLogin
		p.Pool.MaxWait = max(p.Pool.MaxWait, x.MaxWait)
	}
	top := append([]Tenant(nil), s.Tenants...)
	sort.SliceStable(top, func(i, j int) bool {
		ai, aj := top[i].XactPerSec+top[i].QueryPerSec, top[j].XactPerSec+top[j].QueryPerSec
		if ai != aj {
			return ai > aj
		}
		if top[i].Clients != top[j].Clients {
			return top[i].Clients > top[j].Clients
		}
		return top[i].Name < top[j].Name
	})
	p.Top = top[:min(len(top), StatusTopTenants)]
	for _, t := range s.Tenants {
		if t.Waiting > 0 || t.MaxWait > 0 {
			p.Waiting = append(p.Waiting, t)
		}
		if t.Refused > 0 {
			p.Refusing = append(p.Refusing, t)
		}
	}
	sort.SliceStable(p.Waiting, func(i, j int) bool { return p.Waiting[i].MaxWait > p.Waiting[j].MaxWait })
	sort.SliceStable(p.Refusing, func(i, j int) bool { return p.Refusing[i].Refused > p.Refusing[j].Refused })
	p.Waiting = p.Waiting[:min(len(p.Waiting), StatusTopTenants)]
	p.Refusing = p.Refusing[:min(len(p.Refusing), StatusTopTenants)]
	return p
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms":   func(d time.Duration) string { return d.Round(time.Microsecond).String() },
	"rate": formatRate,
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"yn":   yesNo,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>tenantproxy status</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse;margin:.4em 0}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
.warn{background:#fff3cd;padding:.5em;border:1px solid #e0c36a}
.meta{color:#666}
</style>
</head>
<body>
<h1>tenantproxy status</h1>
<p class="meta" id="meta">{{.Snap.Version}} · snapshot {{when .Snap.Taken}} · {{.Tenants}} tenants · state: {{if .Snap.State.ShuttingDown}}shutting down{{else if .Snap.State.Paused}}paused{{else}}active{{end}} · refreshes every {{.Refresh}}s</p>
{{if .RelayErr}}<p class="warn" id="relay-error">Relay figures not available: {{.RelayErr}}</p>{{else}}
<h2>Pool</h2>
<table id="pool">
<tr><th>clients active</th><th>clients waiting</th><th>backends active</th><th>backends idle</th><th>backends used</th><th>backends opening</th><th>longest wait</th></tr>
<tr><td>{{.Pool.ClActive}}</td><td>{{.Pool.ClWaiting}}</td><td>{{.Pool.SvActive}}</td><td>{{.Pool.SvIdle}}</td><td>{{.Pool.SvUsed}}</td><td>{{.Pool.SvLogin}}</td><td>{{ms .Pool.MaxWait}}</td></tr>
</table>
<h2>Top tenants by activity</h2>
<table id="top">
<tr><th>tenant</th><th>clients</th><th>waiting</th><th>backends</th><th>xact/s</th><th>query/s</th><th>avg wait</th><th>max wait</th><th>refused</th><th>suspended</th><th>paused</th></tr>
{{range .Top}}<tr><td>{{.Name}}</td><td>{{.Clients}}</td><td>{{.Waiting}}</td><td>{{.Backends}}</td><td>{{rate .XactPerSec}}</td><td>{{rate .QueryPerSec}}</td><td>{{ms .AvgWait}}</td><td>{{ms .MaxWait}}</td><td>{{.Refused}}</td><td>{{yn .Suspended}}</td><td>{{yn .Paused}}</td></tr>
{{else}}<tr><td colspan="11">no tenants</td></tr>
{{end}}</table>
<h2>Waits</h2>
<table id="waits">
<tr><th>tenant</th><th>waiting</th><th>max wait</th><th>avg wait</th></tr>
{{range .Waiting}}<tr><td>{{.Name}}</td><td>{{.Waiting}}</td><td>{{ms .MaxWait}}</td><td>{{ms .AvgWait}}</td></tr>
{{else}}<tr><td colspan="4">no client is waiting</td></tr>
{{end}}</table>
<h2>Refusals</h2>
<table id="refusals">
<tr><th>tenant</th><th>refused statements</th></tr>
{{range .Refusing}}<tr><td>{{.Name}}</td><td>{{.Refused}}</td></tr>
{{else}}<tr><td colspan="2">no statement refused</td></tr>
{{end}}</table>
{{end}}
</body>
</html>
`))

func formatRate(f float64) string {
	return string(encodeValue(f))
}
