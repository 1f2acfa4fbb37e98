package authzbench_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse-dev/gatehouse/internal/authzbench"
)

// stuck answers nothing until the test ends.
type stuck struct {
	authv3.UnimplementedAuthorizationServer
	release chan struct{}
}

func (s *stuck) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return authzbench.Empty{}.Check(ctx, nil)
}

func TestClosedLoopCountsAnswersInTheWindow(t *testing.T) {
	f, err := authzbench.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := authzbench.Serve(authzbench.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	marks := 0
	r, err := f.Run(context.Background(), authzbench.LoadOptions{Name: "empty", Addr: addr, InFlight: 4,
		Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond, Mark: func(bool) { marks++ }})
	if err != nil {
		t.Fatal(err)
	}
	if marks != 2 || r.Checks == 0 || r.Errors != 0 || r.Allowed != r.Checks || r.Late != 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Fatalf("marks %d, result %+v", marks, r)
	}
}

// An open loop against a server that never answers reports no checks and
// every check due in the window as late, with at least the wait until the
// cutoff: a stalled server cannot hide its queue.
func TestOpenLoopCountsUnansweredChecksAsLate(t *testing.T) {
	f, err := authzbench.NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	srv := &stuck{release: make(chan struct{})}
	addr, stop, err := authzbench.Serve(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// The first check of each connection must be answered.
	go func() {
		for i := 0; i < 2; i++ {
			srv.release <- struct{}{}
		}
	}()
	r, err := f.Run(context.Background(), authzbench.LoadOptions{Name: "stuck", Addr: addr, Rate: 100,
		Warmup: 100 * time.Millisecond, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Checks != 0 || r.Late == 0 || r.P50 < time.Second {
		t.Fatalf("result %+v", r)
	}
	close(srv.release)
}
