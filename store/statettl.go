package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// StateTTL validates the ttl of an expiring state write (for backends):
// negative is ErrInvalid, 0 means no expiry, and a positive ttl is rounded
// up to a whole microsecond (the precision both backends keep), so a ttl
// however short still expires and one never outlives what was asked by
// more than a microsecond.
func StateTTL(ttl time.Duration) (time.Duration, error) {
	if ttl < 0 {
		return 0, fmt.Errorf("%w: state ttl %s is negative", ErrInvalid, ttl)
	}
	if r := ttl % time.Microsecond; r != 0 {
		ttl += time.Microsecond - r
	}
	return ttl, nil
}

// CheckSweepLimit validates SweepExpiredState's limit (for backends).
func CheckSweepLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("%w: a state sweep needs a positive limit, not %d", ErrInvalid, limit)
	}
	return nil
}

// Defaults of StateSweeper.
const (
	DefaultSweepInterval   = time.Minute
	DefaultSweepBatch      = 500
	DefaultSweepMaxBatches = 20
)

// StateSweeper deletes expired runtime state (Runtime.SweepExpiredState)
// in bounded batches: every Interval it sweeps Batch values at a time,
// until a batch comes back short or MaxBatches were swept (the rest waits
// for the next round), so no round holds the store long. Expired values
// are invisible to reads without it; it only reclaims their space.
//
// Run it as one of a process's components (it returns nil when ctx ends).
// Every replica may run one: concurrent sweeps skip each other's rows.
type StateSweeper struct {
	Runtime Runtime
	// Interval between rounds; DefaultSweepInterval when not positive.
	Interval time.Duration
	// Batch is the limit of each SweepExpiredState call;
	// DefaultSweepBatch when not positive.
	Batch int
	// MaxBatches bounds the calls of one round; DefaultSweepMaxBatches
	// when not positive.
	MaxBatches int
	// Logger reports failed rounds (warn) and what rounds removed
	// (debug); slog.Default() when nil.
	Logger *slog.Logger
}

// Run sweeps once at once, then every Interval, until ctx ends; then it
// returns nil. A failed round is logged and retried at the next one.
func (w *StateSweeper) Run(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := w.SweepOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("sweep expired runtime state", "removed", n, "error", err)
		case n > 0:
			log.Debug("swept expired runtime state", "removed", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepOnce is one round: batches until one comes back short, at most
// MaxBatches. It returns how many values it deleted.
func (w *StateSweeper) SweepOnce(ctx context.Context) (int, error) {
	if w.Runtime == nil {
		return 0, errors.New("state sweeper: no runtime store")
	}
	batch, rounds := w.Batch, w.MaxBatches
	if batch <= 0 {
		batch = DefaultSweepBatch
	}
	if rounds <= 0 {
		rounds = DefaultSweepMaxBatches
	}
	total := 0
	for range rounds {
		n, err := w.Runtime.SweepExpiredState(ctx, batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
	return total, nil
}
