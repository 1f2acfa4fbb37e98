// Package janitor keeps the authorization servers' configuration-side
// leftovers bounded: token revocations whose time has passed (no token
// they match can be valid any more) are deleted, and signing keys past
// their retention are pruned from the key sets. Both are configuration
// writes, so the tenants' bundles follow (a revocation leaves them, a
// removed key stops being published).
package janitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// DefaultInterval is the time between rounds.
const DefaultInterval = time.Minute

// maxDeletesPerTx bounds one transaction of revocation deletes.
const maxDeletesPerTx = 256

// Janitor runs the rounds; replicas may run one each (the deletes and
// prunes are idempotent, a lost race is retried next round).
type Janitor struct {
	Store store.Store
	Keys  *keys.Manager
	// Interval between rounds (DefaultInterval when not positive).
	Interval time.Duration
	// Now is the clock (time.Now when nil).
	Now    func() time.Time
	Logger *slog.Logger
}

// Run does a round at once, then every Interval, until ctx ends (nil).
func (j *Janitor) Run(ctx context.Context) error {
	interval := j.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	log := j.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r, err := j.Once(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("authorization server janitor", "revocations_deleted", r.Revocations, "keys_pruned", r.Keys, "error", err)
		case r.Revocations+r.Keys > 0:
			log.Info("authorization server janitor", "revocations_deleted", r.Revocations, "keys_pruned", r.Keys)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Result counts what a round removed.
type Result struct {
	Revocations int
	Keys        int
}

// Once is one round over every tenant; errors of one tenant do not stop
// the others (they are joined).
func (j *Janitor) Once(ctx context.Context) (Result, error) {
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	var res Result
	var errs []error
	tenants, err := listAll(ctx, j.Store, store.Query{Kind: model.KindTenant})
	if err != nil {
		return res, fmt.Errorf("janitor: list tenants: %w", err)
	}
	for _, t := range tenants {
		n, err := j.revocations(ctx, t.ID, now())
		res.Revocations += n
		if err != nil {
			errs = append(errs, err)
		}
		n, err = j.prune(ctx, t.ID, now())
		res.Keys += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// revocations deletes the tenant's expired revocations.
func (j *Janitor) revocations(ctx context.Context, tid string, now time.Time) (int, error) {
	objs, err := listAll(ctx, j.Store, store.Query{Kind: model.KindTokenRevocation, TenantID: tid})
	if err != nil {
		return 0, fmt.Errorf("janitor: list revocations of %s: %w", tid, err)
	}
	var expired []string
	for _, o := range objs {
		var spec model.TokenRevocationSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return 0, fmt.Errorf("janitor: decode revocation %s/%s: %w", tid, o.ID, err)
		}
		// Verifiers accept a token until exp + Leeway: the revocation of
		// a token lasts as long.
		if !now.Before(spec.ExpiresAt.Add(token.Leeway)) {
			expired = append(expired, o.ID)
		}
	}
	deleted := 0
	for len(expired) > 0 {
		batch := expired[:min(len(expired), maxDeletesPerTx)]
		expired = expired[len(batch):]
		if _, err := j.Store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			for _, id := range batch {
				if _, err := tx.Delete(ctx, model.KindTokenRevocation, tid, id, 0, false); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
			return nil
		}); err != nil {
			return deleted, fmt.Errorf("janitor: delete revocations of %s: %w", tid, err)
		}
		deleted += len(batch)
	}
	return deleted, nil
}

// prune removes keys past their retention from the tenant's key sets.
func (j *Janitor) prune(ctx context.Context, tid string, now time.Time) (int, error) {
	if j.Keys == nil {
		return 0, nil
	}
	servers, err := listAll(ctx, j.Store, store.Query{Kind: model.KindServer, TenantID: tid})
	if err != nil {
		return 0, fmt.Errorf("janitor: list servers of %s: %w", tid, err)
	}
	pruned := 0
	var errs []error
	for _, o := range servers {
		var spec model.ServerSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			errs = append(errs, fmt.Errorf("janitor: decode server %s/%s: %w", tid, o.ID, err))
			continue
		}
		n, err := j.Keys.Prune(ctx, tid, o.ID, keys.PolicyOf(&spec), now)
		pruned += n
		if err != nil {
			errs = append(errs, fmt.Errorf("janitor: prune keys of %s/%s: %w", tid, o.ID, err))
		}
	}
	return pruned, errors.Join(errs...)
}

// listAll reads every page of q.
func listAll(ctx context.Context, st store.Reader, q store.Query) ([]*store.Object, error) {
	var out []*store.Object
	for {
		pg, err := st.List(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, pg.Items...)
		if pg.Next == "" {
			return out, nil
		}
		q.After = pg.Next
	}
}
