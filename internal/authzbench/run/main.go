// Command run is `make bench-authz`: a gRPC load generator against the
// Gatehouse authorizer and against the same policy evaluated the way
// opa-envoy-plugin does it, with the same requests and tokens.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

func main() {
	duration := flag.Duration("duration", 20*time.Second, "measured time per implementation (after 1 s of warm-up)")
	concurrency := flag.Int("concurrency", 16, "concurrent in-flight checks")
	flag.Parse()
	if err := run(*duration, *concurrency); err != nil {
		fmt.Fprintln(os.Stderr, "bench-authz:", err)
		os.Exit(1)
	}
}

func run(duration time.Duration, concurrency int) error {
	ctx := context.Background()
	f, err := authzbench.NewFixture()
	if err != nil {
		return err
	}
	fast, err := f.FastPath(ctx)
	if err != nil {
		return err
	}
	plugin, err := f.NewPluginStyle(ctx)
	if err != nil {
		return err
	}
	// Both must decide alike before their speed is compared.
	for i, req := range f.Requests {
		a, _ := fast.Check(ctx, req)
		b, err := plugin.Check(ctx, req)
		if err != nil {
			return fmt.Errorf("plugin-style request %d: %w", i, err)
		}
		if a.GetStatus().GetCode() != b.GetStatus().GetCode() {
			return fmt.Errorf("request %d: gatehouse %d, plugin-style %d: the comparison would be unfair", i, a.GetStatus().GetCode(), b.GetStatus().GetCode())
		}
	}
	fmt.Printf("bench-authz: %d APIs, %d distinct requests, %d tokens, %d concurrent checks, %v per implementation, GOMAXPROCS=%d\n",
		len(f.Compiled.APIs), len(f.Requests), len(f.Tokens), concurrency, duration, runtime.GOMAXPROCS(0))
	var results []authzbench.Result
	addr, stop, err := authzbench.Serve(fast)
	if err != nil {
		return err
	}
	r, err := f.Load(ctx, "gatehouse (fast path)", addr, concurrency, duration)
	stop()
	if err != nil {
		return err
	}
	results = append(results, r)
	addr, stop, err = authzbench.Serve(plugin)
	if err != nil {
		return err
	}
	r, err = f.Load(ctx, "opa-envoy-plugin style (one query)", addr, concurrency, duration)
	stop()
	if err != nil {
		return err
	}
	results = append(results, r)
	authzbench.Report(os.Stdout, results...)
	return nil
}
