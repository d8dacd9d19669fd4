// Command soak runs tenantproxy in-process in front of a throwaway PostgreSQL cluster for a set time,
// with many tenants and clients mixing reads, writes, prepared statements, errors, cancels and
// disconnects, while a pool backend is terminated every so often and the server is restarted once. Every
// row a client reads must be its own tenant's, and every insert whose commit was acknowledged must be in
// the database at the end. It prints the operations, the errors by SQLSTATE, cross-tenant reads, lost
// writes, and the process's RSS and goroutines (the proxy runs in this process) over time, and exits
// with status 1 when a row crossed tenants, a write was lost or an operation hung.
//
//	go run ./bench/soak -tenants 100 -clients 200 -duration 10m -kill-every 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/app"
)

func main() { os.Exit(run()) }

// options are the command's flags.
type options struct {
	tenants, clients, pool int
	duration, killEvery    time.Duration
	restartAt, reportEvery time.Duration
	mode, logLevel         string
	seed                   uint64
	memProfile             string
}

func parseFlags() options {
	var o options
	flag.IntVar(&o.tenants, "tenants", 100, "number of tenants")
	flag.IntVar(&o.clients, "clients", 200, "number of concurrent clients, spread over the tenants")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the clients work")
	flag.DurationVar(&o.killEvery, "kill-every", 30*time.Second, "terminate a random pool backend (pg_terminate_backend) this often; 0 never")
	flag.DurationVar(&o.restartAt, "restart-at", 0, "stop the server (fast) and start it again this long after the start; 0 at half time, negative never")
	flag.StringVar(&o.mode, "mode", string(config.ModeTransaction), "pool mode: transaction or session")
	flag.IntVar(&o.pool, "pool", 0, "backend pool_size (0: 20 in transaction mode, one per client in session mode)")
	flag.DurationVar(&o.reportEvery, "report-every", 30*time.Second, "print a progress line this often")
	flag.StringVar(&o.logLevel, "log-level", "error", "the proxy's log level (debug, info, warn, error)")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the clients' random choices")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile to this file at the end, with no client connected")
	flag.Parse()
	if o.pool == 0 {
		o.pool = 20
		if config.PoolMode(o.mode) == config.ModeSession {
			o.pool = o.clients
		}
	}
	if o.restartAt == 0 {
		o.restartAt = o.duration / 2
	}
	return o
}

func run() int {
	o := parseFlags()
	ctx := context.Background()
	level, err := zap.ParseAtomicLevel(o.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: -log-level:", err)
		return 2
	}
	zc := zap.NewProductionConfig()
	zc.Level = level
	log, err := zc.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	fmt.Printf("soak: provisioning a cluster with %d tenants\n", o.tenants)
	f, err := startFixture(ctx, o.tenants, o.mode, o.pool)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	defer f.cluster.Stop()
	a, err := app.Start(f.cfg, log, "soak")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak: start the proxy:", err)
		return 2
	}
	defer a.Shutdown(5 * time.Second)
	fmt.Printf("soak: proxy on %s, %s mode, pool_size %d; %d clients for %s, a backend terminated every %s, server restart at %s\n",
		a.Addr(), o.mode, o.pool, o.clients, o.duration, o.killEvery, o.restartAt)

	startRSS, startG, startHeap := sample()
	st := newStats()
	runCtx, stop := context.WithTimeout(ctx, o.duration)
	defer stop()
	var wg sync.WaitGroup
	for i := 0; i < o.clients; i++ {
		t := i % o.tenants
		c := &client{id: i, tenant: f.tenants[t], url: f.url(a.Addr(), t), simple: i%4 == 0, st: st,
			rng: rand.New(rand.NewPCG(o.seed, uint64(i)))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(runCtx)
		}()
	}
	faults := &faults{f: f, st: st}
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		faults.run(runCtx, o.killEvery, o.restartAt)
	}()
	peakRSS, peakG := progress(runCtx, a, st, o.reportEvery)
	wg.Wait()
	fwg.Wait()

	// Settle: every client is gone; give the relay a moment to close their sessions.
	for end := time.Now().Add(10 * time.Second); a.Engine().Stats().Clients > 0 && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
	}
	endRSS, endG, endHeap := sample()
	if o.memProfile != "" {
		if err := writeHeapProfile(o.memProfile); err != nil {
			fmt.Fprintln(os.Stderr, "soak: -memprofile:", err)
		}
	}
	lost, acked, verr := verifyWrites(f, st)

	st.mu.Lock()
	defer st.mu.Unlock()
	fmt.Println()
	fmt.Println("soak: results")
	fmt.Printf("  duration                %s, %d tenants, %d clients, %s mode, pool_size %d\n", o.duration, o.tenants, o.clients, o.mode, o.pool)
	fmt.Printf("  operations              %d (%.0f/s), each a transaction or a statement; %d connects\n", st.tx.Load(), float64(st.tx.Load())/o.duration.Seconds(), st.connects.Load())
	fmt.Printf("  faults                  %d backends terminated, %d server restarts (down %s)\n", faults.kills, faults.restarts, faults.down.Round(time.Millisecond))
	fmt.Println("  errors provoked on purpose, by SQLSTATE:")
	writeCounts(os.Stdout, st.provoked, nil)
	fmt.Println("  errors from the faults, by SQLSTATE:")
	writeCounts(os.Stdout, st.errs, st.sample)
	fmt.Printf("  cancels lost            %d (pg_sleep(2) ran to its end although its CancelRequest was sent)\n", st.lostCancels.Load())
	fmt.Printf("  operations that hung    %d (longer than %s)\n", st.hung, opTimeout)
	fmt.Printf("  cross-tenant reads      %d\n", st.cross.Load())
	fmt.Printf("  acknowledged inserts    %d\n", acked)
	if verr != nil {
		fmt.Printf("  lost writes             unknown: %v\n", verr)
	} else {
		fmt.Printf("  lost writes             %d\n", lost)
	}
	fmt.Printf("  RSS                     start %d MiB, peak %d MiB, end %d MiB (clients included: they run in this process)\n", startRSS>>20, peakRSS>>20, endRSS>>20)
	fmt.Printf("  Go heap in use          start %d MiB, end %d MiB\n", startHeap>>20, endHeap>>20)
	fmt.Printf("  goroutines              start %d, peak %d, end %d\n", startG, peakG, endG)
	fmt.Printf("  relay at the end        %+v\n", a.Engine().Stats())
	if st.cross.Load() > 0 || lost > 0 || verr != nil || st.hung > 0 {
		fmt.Println("soak: FAIL")
		return 1
	}
	fmt.Println("soak: PASS")
	return 0
}

// sample returns the RSS, the goroutine count and the Go heap in use, after returning freed memory to the
// operating system, so that figures taken at different times compare live memory.
func sample() (rss int64, goroutines int, heap uint64) {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return rssBytes(), runtime.NumGoroutine(), ms.HeapInuse
}

// writeHeapProfile writes the live heap to path (go tool pprof -sample_index=inuse_space).
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// progress prints a line every interval until ctx ends, and returns the peak RSS and goroutine count.
func progress(ctx context.Context, a *app.App, st *stats, every time.Duration) (peakRSS int64, peakG int) {
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	peek := time.NewTicker(time.Second)
	defer peek.Stop()
	var lastTx int64
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case <-peek.C:
			peakRSS = max(peakRSS, rssBytes())
			peakG = max(peakG, runtime.NumGoroutine())
		case now := <-tick.C:
			tx := st.tx.Load()
			st.mu.Lock()
			errs := 0
			for _, n := range st.errs {
				errs += n
			}
			st.mu.Unlock()
			fmt.Printf("  %6s  ops %9d (%5.0f/s)  errors %6d  cross %d  RSS %4d MiB  goroutines %5d  relay %+v\n",
				now.Sub(start).Round(time.Second), tx, float64(tx-lastTx)/now.Sub(last).Seconds(), errs, st.cross.Load(),
				rssBytes()>>20, runtime.NumGoroutine(), a.Engine().Stats())
			lastTx, last = tx, now
		}
	}
}

// faults terminates pool backends and restarts the server.
type faults struct {
	f               *fixture
	st              *stats
	kills, restarts int
	down            time.Duration
}

// run terminates a random pool backend every killEvery and restarts the server once at restartAt, until
// ctx ends.
func (fl *faults) run(ctx context.Context, killEvery, restartAt time.Duration) {
	var kill <-chan time.Time
	if killEvery > 0 {
		t := time.NewTicker(killEvery)
		defer t.Stop()
		kill = t.C
	}
	var restart <-chan time.Time
	if restartAt > 0 {
		t := time.NewTimer(restartAt)
		defer t.Stop()
		restart = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-kill:
			kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := fl.f.cluster.Exec(kctx, database, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE usename = 'tenantproxy_pool' AND backend_type = 'client backend' ORDER BY random() LIMIT 1`)
			cancel()
			switch {
			case err == nil:
				fl.kills++
			case ctx.Err() == nil:
				fmt.Printf("  soak: terminate a backend: %v\n", err)
			}
		case <-restart:
			start := time.Now()
			if err := fl.f.cluster.StopServer("fast"); err != nil {
				fmt.Printf("  soak: stop the server: %v\n", err)
			}
			if err := fl.f.cluster.StartServer(); err != nil {
				fmt.Printf("  soak: start the server: %v\n", err)
				continue
			}
			fl.restarts++
			fl.down = time.Since(start)
			fmt.Printf("  soak: server restarted (down %s)\n", fl.down.Round(time.Millisecond))
		}
	}
}

// verifyWrites counts the acknowledged inserts missing from the database.
func verifyWrites(f *fixture, st *stats) (lost, acked int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := f.cluster.Connect(ctx, database)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	st.mu.Lock()
	defer st.mu.Unlock()
	for tenant, ids := range st.acked {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+tenant+".employees WHERE id = ANY($1)", ids).Scan(&n); err != nil {
			return 0, 0, err
		}
		acked += len(ids)
		lost += len(ids) - n
	}
	return lost, acked, nil
}
