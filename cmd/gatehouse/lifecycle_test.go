package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// logBuffer collects log lines safely.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLifecycle(timeout time.Duration) (*lifecycle, *logBuffer) {
	var out logBuffer
	lc := newLifecycle(slog.New(slog.NewJSONHandler(&out, nil)), "test ", timeout, func(stuck []string) error {
		return fmt.Errorf("cut off: %s", strings.Join(stuck, ", "))
	})
	return lc, &out
}

// waitForCtx is a component that serves until its context ends.
func waitForCtx(stopped *atomic.Bool) component {
	return componentFunc(func(ctx context.Context) error {
		<-ctx.Done()
		stopped.Store(true)
		return nil
	})
}

// run runs lc in the background; the channel receives its result.
func run(ctx context.Context, lc *lifecycle) <-chan error {
	done := make(chan error, 1)
	go func() { done <- lc.run(ctx) }()
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the lifecycle did not return")
		return nil
	}
}

// The first component to fail stops the others; the process's error is
// the failure, named after its component.
func TestFirstFailureStopsEveryComponent(t *testing.T) {
	lc, logs := testLifecycle(time.Minute)
	var a, b atomic.Bool
	lc.add("a", waitForCtx(&a))
	lc.add("b", waitForCtx(&b), lc.add("c", componentFunc(func(context.Context) error { return errors.New("boom") })))
	err := result(t, run(context.Background(), lc))
	if err == nil || err.Error() != "c: boom" {
		t.Fatalf("run: %v, want c: boom", err)
	}
	if !a.Load() || !b.Load() {
		t.Fatalf("stopped: a %v, b %v", a.Load(), b.Load())
	}
	if !strings.Contains(logs.String(), `"msg":"test shutting down"`) || strings.Contains(logs.String(), `"msg":"test stopped"`) {
		t.Fatalf("log:\n%s", logs)
	}
}

// A component that returns before being told to stop is a failure.
func TestComponentThatEndsOnItsOwnIsAFailure(t *testing.T) {
	lc, _ := testLifecycle(time.Minute)
	var a atomic.Bool
	lc.add("a", waitForCtx(&a))
	lc.add("quitter", componentFunc(func(context.Context) error { return nil }))
	if err := result(t, run(context.Background(), lc)); err == nil || err.Error() != "quitter stopped unexpectedly" {
		t.Fatalf("run: %v", err)
	}
	if !a.Load() {
		t.Fatal("the others kept running")
	}
}

// A stop (the parent context ends) stops everything and is no error; a
// component added after others is stopped only once they have returned.
func TestStopOrder(t *testing.T) {
	lc, logs := testLifecycle(time.Minute)
	var first atomic.Bool
	release, firstStopping := make(chan struct{}), make(chan struct{})
	a := lc.add("first", componentFunc(func(ctx context.Context) error {
		<-ctx.Done()
		close(firstStopping)
		<-release
		first.Store(true)
		return nil
	}))
	var other atomic.Bool
	b := lc.add("other", waitForCtx(&other))
	lc.add("last", componentFunc(func(ctx context.Context) error {
		<-ctx.Done()
		if !first.Load() || !other.Load() {
			return errors.New("told to stop before the components it comes after returned")
		}
		return nil
	}), a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, lc)
	cancel()
	<-firstStopping
	close(release)
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"msg":"test shutting down","timeout":"1m0s"`) || !strings.Contains(logs.String(), `"msg":"test stopped"`) {
		t.Fatalf("log:\n%s", logs)
	}
}

// A component still busy at the shutdown deadline is cut off and named;
// the components after it are stopped at the deadline all the same.
func TestCutOffAtTheDeadline(t *testing.T) {
	lc, _ := testLifecycle(50 * time.Millisecond)
	stuck := func(ctx context.Context) error {
		<-ctx.Done()
		<-lc.deadline().Done()
		return errCutOff
	}
	a, b := lc.add("zeta", componentFunc(stuck)), lc.add("alpha", componentFunc(stuck))
	var later atomic.Bool
	lc.add("later", waitForCtx(&later), a, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, lc)
	cancel()
	if err := result(t, done); err == nil || err.Error() != "cut off: alpha, zeta" {
		t.Fatalf("run: %v", err)
	}
	if !later.Load() {
		t.Fatal("the component after the stuck ones was not stopped")
	}
}

// The admin API's listener releases its waiting requests (drain) before it
// shuts down: a long poll is answered, and the shutdown is graceful.
func TestHTTPServerDrainsBeforeShuttingDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	drained, parked := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(parked)
		<-drained // a long poll: it waits until drained
		io.WriteString(w, "released")
	})}
	lc, _ := testLifecycle(5 * time.Second)
	lc.add("http", &httpServerComponent{srv: srv, ln: ln, drain: func() { close(drained) }, deadline: lc.deadline})
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, lc)
	answer := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			answer <- err.Error()
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		answer <- fmt.Sprint(res.StatusCode, " ", string(body))
	}()
	<-parked
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("run: %v (a shutdown before the drain waits for the long poll until the deadline)", err)
	}
	if got := <-answer; got != "200 released" {
		t.Fatalf("the long poll got %q", got)
	}
}

// A listener that fails is the process's error.
func TestHTTPServerFailureIsReported(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at once
	lc, _ := testLifecycle(time.Minute)
	var other atomic.Bool
	lc.add("other", waitForCtx(&other))
	lc.add("http", &httpServerComponent{srv: &http.Server{}, ln: ln, deadline: lc.deadline})
	err = result(t, run(context.Background(), lc))
	if err == nil || !strings.HasPrefix(err.Error(), "http: ") || !other.Load() {
		t.Fatalf("run: %v (other stopped: %v)", err, other.Load())
	}
}
