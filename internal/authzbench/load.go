package authzbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Result of one load run.
type Result struct {
	Name string
	// Checks completed inside the measured window (the throughput's
	// numerator); Allowed and Errors are among them.
	Checks, Allowed, Errors int64
	// Duration is the measured window.
	Duration time.Duration
	// Latencies of the checks started (closed loop) or due (open loop) in
	// the window, open loop measured from the intended send time.
	P50, P90, P99, Max time.Duration
	// Late (open loop) is how many checks due in the window had not been
	// answered at the cutoff (the window's end plus its length); they enter
	// the percentiles as their wait so far, so these are lower bounds.
	Late int64
}

// PerSecond is the throughput.
func (r Result) PerSecond() float64 { return float64(r.Checks) / r.Duration.Seconds() }

// Serve runs an ext_authz implementation on a loopback port.
func Serve(srv authv3.AuthorizationServer) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go gs.Serve(ln)
	return ln.Addr().String(), gs.Stop, nil
}

// LoadOptions describe one load run.
type LoadOptions struct {
	Name, Addr string
	// Conns is the number of gRPC connections (default 2).
	Conns int
	// InFlight is the closed loop's concurrent checks; in an open loop the
	// cap on outstanding checks (default 4096), past which sends wait (and
	// their latency still counts from the intended time).
	InFlight int
	// Rate > 0 makes an open loop at Rate checks a second.
	Rate float64
	// Warmup runs before the measured window of Duration.
	Warmup, Duration time.Duration
	// Mark, when set, is called just before the window opens (end false)
	// and just after it closes (end true), for reading server counters.
	Mark func(end bool)
}

// record is one check: send (closed loop) or intended (open loop) and
// completion times as offsets from the run's start.
type record struct {
	start, done int64
	allowed     bool
	failed      bool
}

// Load sends the fixture's requests to addr from concurrency goroutines
// for duration (after a 1 s warm-up) and measures every check's latency.
func (f *Fixture) Load(ctx context.Context, name, addr string, concurrency int, duration time.Duration) (Result, error) {
	return f.Run(ctx, LoadOptions{Name: name, Addr: addr, InFlight: concurrency, Warmup: time.Second, Duration: duration})
}

// LoadRate is Load at a fixed rate (an open loop with at most
// concurrency checks outstanding); rate 0 is Load.
func (f *Fixture) LoadRate(ctx context.Context, name, addr string, concurrency int, duration time.Duration, rate float64) (Result, error) {
	return f.Run(ctx, LoadOptions{Name: name, Addr: addr, InFlight: concurrency, Rate: rate, Warmup: time.Second, Duration: duration})
}

// Run is one load run: a closed loop (InFlight checks always outstanding)
// or an open loop (checks due at a fixed rate whatever the answers, the
// latency counted from when each was due so that a slow server cannot hide
// its queue: no coordinated omission).
func (f *Fixture) Run(ctx context.Context, o LoadOptions) (Result, error) {
	if o.Conns <= 0 {
		o.Conns = 2
	}
	if o.InFlight <= 0 {
		o.InFlight = 16
		if o.Rate > 0 {
			o.InFlight = 4096
		}
	}
	clients := make([]authv3.AuthorizationClient, o.Conns)
	for i := range clients {
		c, err := grpc.NewClient(o.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		clients[i] = authv3.NewAuthorizationClient(c)
	}
	// Connect every connection before the clock starts.
	for _, c := range clients {
		if _, err := c.Check(ctx, f.Requests[0]); err != nil {
			return Result{}, fmt.Errorf("%s: first check: %w", o.Name, err)
		}
	}
	begin := time.Now()
	since := func() int64 { return int64(time.Since(begin)) }
	var winStart, winEnd atomic.Int64
	var over atomic.Bool // the window closed
	winStart.Store(int64(o.Warmup))
	winEnd.Store(int64(o.Warmup + o.Duration))
	// The window's edges are taken when they are marked.
	markDone := make(chan struct{})
	go func() {
		defer close(markDone)
		time.Sleep(time.Until(begin.Add(o.Warmup)))
		if o.Mark != nil {
			o.Mark(false)
		}
		winStart.Store(since())
		time.Sleep(time.Until(begin.Add(time.Duration(winStart.Load()) + o.Duration)))
		winEnd.Store(since())
		over.Store(true)
		if o.Mark != nil {
			o.Mark(true)
		}
	}()
	check := func(i int, rec *record) {
		res, err := clients[i%len(clients)].Check(ctx, f.Requests[i%len(f.Requests)])
		rec.done = since()
		rec.failed = err != nil
		rec.allowed = err == nil && res.GetStatus().GetCode() == 0
	}
	var records []record
	// An open loop waits for answers until cut.
	cut := begin.Add(2*o.Duration + o.Warmup + time.Second)
	if o.Rate <= 0 {
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		for w := 0; w < o.InFlight; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				mine := make([]record, 0, 1<<14)
				for i := w; ctx.Err() == nil; i += o.InFlight {
					if over.Load() {
						break
					}
					start := since()
					rec := record{start: start}
					check(i, &rec)
					mine = append(mine, rec)
				}
				mu.Lock()
				records = append(records, mine...)
				mu.Unlock()
			}(w)
		}
		wg.Wait()
		<-markDone
	} else {
		n := int(o.Rate * (o.Warmup + o.Duration).Seconds())
		records = make([]record, n)
		for i := range records {
			records[i].start = int64(float64(i) / o.Rate * float64(time.Second))
			records[i].done = -1
		}
		sem := make(chan struct{}, o.InFlight)
		cutC := time.After(time.Until(cut))
		var (
			wg     sync.WaitGroup
			recMu  sync.Mutex
			closed bool
		)
	dispatch:
		for i := range records {
			if wait := time.Until(begin.Add(time.Duration(records[i].start))); wait > 0 {
				time.Sleep(wait)
			}
			select {
			case sem <- struct{}{}:
			case <-cutC:
				cutC = nil // fired
				break dispatch
			case <-ctx.Done():
				break dispatch
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				var rec record
				check(i, &rec)
				recMu.Lock()
				if !closed {
					records[i].done, records[i].failed, records[i].allowed = rec.done, rec.failed, rec.allowed
				}
				recMu.Unlock()
			}(i)
		}
		<-markDone
		// Wait for the checks due in the window until the cutoff; the
		// ones still unanswered are late.
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		if cutC != nil {
			select {
			case <-done:
			case <-cutC:
			}
		}
		recMu.Lock()
		closed = true
		recMu.Unlock()
	}
	ws, we := winStart.Load(), winEnd.Load()
	r := Result{Name: o.Name, Duration: time.Duration(we - ws)}
	var lat []time.Duration
	for _, rec := range records {
		if rec.done >= ws && rec.done <= we {
			r.Checks++
			if rec.failed {
				r.Errors++
			} else if rec.allowed {
				r.Allowed++
			}
		}
		if rec.start < ws || rec.start >= we {
			continue
		}
		if rec.done < 0 {
			r.Late++
			lat = append(lat, cut.Sub(begin)-time.Duration(rec.start))
			continue
		}
		if !rec.failed {
			lat = append(lat, time.Duration(rec.done-rec.start))
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	r.P50, r.P90, r.P99 = pct(.50), pct(.90), pct(.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r, nil
}

// Report prints results as a table, with the throughput ratio against the
// first.
func Report(w io.Writer, results ...Result) {
	fmt.Fprintf(w, "%-34s %10s %10s %10s %10s %10s %8s %7s\n", "implementation", "checks/s", "p50", "p90", "p99", "max", "allowed", "errors")
	for _, r := range results {
		fmt.Fprintf(w, "%-34s %10.0f %10s %10s %10s %10s %7.0f%% %7d\n", r.Name, r.PerSecond(),
			r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond),
			100*float64(r.Allowed)/float64(max(r.Checks, 1)), r.Errors)
	}
	if len(results) > 1 && results[1].PerSecond() > 0 {
		fmt.Fprintf(w, "throughput ratio %s / %s: %.2fx\n", results[0].Name, results[1].Name, results[0].PerSecond()/results[1].PerSecond())
	}
}
