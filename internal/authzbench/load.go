package authzbench

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
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
	Name               string
	Checks             int64
	Allowed            int64
	Errors             int64
	Duration           time.Duration
	P50, P90, P99, Max time.Duration
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

// Load sends the fixture's requests to addr from concurrency goroutines
// for duration (after a short warm-up) and measures every check's latency.
func (f *Fixture) Load(ctx context.Context, name, addr string, concurrency int, duration time.Duration) (Result, error) {
	return f.LoadRate(ctx, name, addr, concurrency, duration, 0)
}

// LoadRate is Load at most rate checks a second (0: as fast as they are
// answered): each goroutine keeps to its share of a fixed schedule.
func (f *Fixture) LoadRate(ctx context.Context, name, addr string, concurrency int, duration time.Duration, rate float64) (Result, error) {
	conns := make([]*grpc.ClientConn, max(1, min(concurrency, runtime.GOMAXPROCS(0)*2)))
	for i := range conns {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	var (
		started atomic.Bool
		checks  atomic.Int64
		allowed atomic.Int64
		errors  atomic.Int64
		mu      sync.Mutex
		all     []time.Duration
		wg      sync.WaitGroup
	)
	warmup := time.Second
	begin := time.Now()
	deadline := begin.Add(warmup + duration)
	measureFrom := begin.Add(warmup)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := authv3.NewAuthorizationClient(conns[w%len(conns)])
			lat := make([]time.Duration, 0, 1<<16)
			for i := w; ; i += concurrency {
				if rate > 0 {
					if wait := time.Until(begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
						time.Sleep(wait)
					}
				}
				now := time.Now()
				if now.After(deadline) || ctx.Err() != nil {
					break
				}
				res, err := client.Check(ctx, f.Requests[i%len(f.Requests)])
				took := time.Since(now)
				if now.Before(measureFrom) {
					continue
				}
				started.Store(true)
				checks.Add(1)
				if err != nil {
					errors.Add(1)
					continue
				}
				if res.GetStatus().GetCode() == 0 {
					allowed.Add(1)
				}
				lat = append(lat, took)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	r := Result{Name: name, Checks: checks.Load(), Allowed: allowed.Load(), Errors: errors.Load(), Duration: duration,
		P50: pct(.50), P90: pct(.90), P99: pct(.99)}
	if len(all) > 0 {
		r.Max = all[len(all)-1]
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
