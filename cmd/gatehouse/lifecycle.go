package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// A component is one part of a process (a listener, a feed follower, the
// bundle builds): Run serves until ctx ends, then stops gracefully within
// the shutdown deadline and returns. An error, or returning before ctx
// ends, is a failure: it stops the whole process.
type component interface {
	Run(ctx context.Context) error
}

// componentFunc is a function as a component.
type componentFunc func(ctx context.Context) error

// Run calls f.
func (f componentFunc) Run(ctx context.Context) error { return f(ctx) }

// errCutOff is what a component returns when its graceful stop did not
// finish by the shutdown deadline and what was left was cut off.
var errCutOff = errors.New("still busy at the shutdown deadline; cut off")

// lifecycle runs a process's components under one errgroup, in the
// manner of SpiceDB's server: every component runs at once, the first to
// fail cancels the others, and the process exits with that error. A
// signal (the parent context ending) stops them all the same way.
//
// Order at shutdown is explicit: a component added with after = B, C is
// told to stop only once B and C have returned (or the shutdown deadline
// has passed), so the background work the listeners rely on outlives
// them; everything else stops at once, concurrently. Within one
// component, the order is its Run's (e.g. release the waiting clients,
// then drain).
type lifecycle struct {
	log *slog.Logger
	// process prefixes the shutdown log lines ("" or "authorizer ").
	process string
	// timeout is the shutdown deadline, from the moment it begins.
	timeout time.Duration
	// cutOff is the error when components were cut off (stuck names
	// them, sorted).
	cutOff func(stuck []string) error
	units  []*unit

	stopOnce   sync.Once
	stopCtx    context.Context
	stopCancel context.CancelFunc
	stopStart  time.Time
}

// unit is a component as the lifecycle runs it.
type unit struct {
	name  string
	c     component
	after []*unit
	done  chan struct{} // closed when Run has returned
}

func newLifecycle(log *slog.Logger, process string, timeout time.Duration, cutOff func(stuck []string) error) *lifecycle {
	return &lifecycle{log: log, process: process, timeout: timeout, cutOff: cutOff}
}

// add registers a component under name (which its errors carry); it is
// stopped once the units of after have returned.
func (l *lifecycle) add(name string, c component, after ...*unit) *unit {
	u := &unit{name: name, c: c, after: slices.Clone(after), done: make(chan struct{})}
	l.units = append(l.units, u)
	return u
}

// deadline is the context of the components' stop sequences: it ends
// timeout after the shutdown began (the first call, made when it does).
func (l *lifecycle) deadline() context.Context {
	l.stopOnce.Do(func() {
		l.stopStart = time.Now()
		l.stopCtx, l.stopCancel = context.WithTimeout(context.Background(), l.timeout)
	})
	return l.stopCtx
}

// run runs every component until ctx ends or one fails, and returns once
// all have returned: nil, the first failure, or (when that was all that
// went wrong) cutOff of the components that were cut off.
func (l *lifecycle) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	var (
		mu    sync.Mutex
		stuck []string
	)
	g.Go(func() error {
		<-gctx.Done()
		l.deadline()
		l.log.Info(l.process+"shutting down", "timeout", l.timeout.String())
		return nil
	})
	for _, u := range l.units {
		uctx := l.contextOf(gctx, u)
		g.Go(func() error {
			defer close(u.done)
			err := u.c.Run(uctx)
			switch {
			case errors.Is(err, errCutOff):
				mu.Lock()
				stuck = append(stuck, u.name)
				mu.Unlock()
				return err
			case err != nil:
				return fmt.Errorf("%s: %w", u.name, err)
			case uctx.Err() == nil:
				return fmt.Errorf("%s stopped unexpectedly", u.name)
			}
			return nil
		})
	}
	err := g.Wait()
	l.deadline() // begun already: gctx ended before the first goroutine returned
	defer l.stopCancel()
	if errors.Is(err, errCutOff) {
		slices.Sort(stuck)
		return l.cutOff(stuck)
	}
	if err != nil {
		return err
	}
	l.log.Info(l.process+"stopped", "took", time.Since(l.stopStart).Round(time.Millisecond).String())
	return nil
}

// contextOf is the context u runs under: gctx, or for a unit with after,
// one that ends when gctx has ended and every unit of after has returned
// (or the shutdown deadline passed).
func (l *lifecycle) contextOf(gctx context.Context, u *unit) context.Context {
	if len(u.after) == 0 {
		return gctx
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(gctx))
	go func() {
		<-gctx.Done()
		deadline := l.deadline().Done()
		for _, a := range u.after {
			select {
			case <-a.done:
			case <-deadline:
			}
		}
		cancel()
	}()
	return ctx
}
