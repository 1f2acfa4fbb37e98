package gatewaycred

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/store"
)

// UsageStateKind is the runtime state (store.Runtime) that records when
// each gateway credential was last verified: one value per credential,
// by tenant and credential id, shaped like Usage. It is not
// configuration: writing it takes no revision and enters no change feed.
const UsageStateKind = "gateway-credential-usage"

// DefaultUsageInterval is how often, at most, a credential's last use is
// written (WithUsageInterval).
const DefaultUsageInterval = time.Minute

// Usage is the UsageStateKind value of a credential.
type Usage struct {
	LastUsedAt time.Time `json:"last_used_at"`
}

// LastUsed returns when the credentials of tenant tid were last verified
// (by the bundle service or the xDS server), by credential id; a
// credential never verified since last_used_at was recorded is absent.
// The times are at most the usage interval (a minute by default) old.
func LastUsed(ctx context.Context, rt store.Runtime, tid string) (map[string]time.Time, error) {
	entries, err := rt.ListState(ctx, UsageStateKind, tid)
	if err != nil {
		return nil, fmt.Errorf("read the gateway credentials' last use: %w", err)
	}
	out := make(map[string]time.Time, len(entries))
	for _, e := range entries {
		var u Usage
		if json.Unmarshal(e.Value, &u) == nil && !u.LastUsedAt.IsZero() {
			out[e.ID] = u.LastUsedAt.UTC()
		}
	}
	return out, nil
}

// usageRecorder writes the last use of verified credentials: at most once
// per interval per credential, in the background (a verification never
// waits for the write, and a failed write only logs), at most
// maxUsageWrites at a time (further uses are dropped until one ends).
type usageRecorder struct {
	rt       store.Runtime
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu sync.Mutex
	// written is when each credential's use was last written (or being
	// written), by tenant and credential id.
	written  map[usageKey]time.Time
	inflight sync.WaitGroup
	slots    chan struct{}
}

type usageKey struct{ tid, id string }

// maxUsageWrites bounds the usage writes in flight; maxUsageTracked the
// credentials whose last write time is kept (older ones are forgotten
// past it, which at worst writes their use again).
const (
	maxUsageWrites  = 8
	maxUsageTracked = 100000
	usageTimeout    = 5 * time.Second
)

func newUsageRecorder(rt store.Runtime, log *slog.Logger, interval time.Duration) *usageRecorder {
	return &usageRecorder{rt: rt, log: log, interval: interval, now: time.Now,
		written: map[usageKey]time.Time{}, slots: make(chan struct{}, maxUsageWrites)}
}

// used records a verification of id's credential, now.
func (u *usageRecorder) used(id envoy.GatewayIdentity) {
	if u == nil || u.interval <= 0 || id.CredentialID == "" {
		return
	}
	now := u.now()
	k := usageKey{id.TenantID, id.CredentialID}
	u.mu.Lock()
	if last, ok := u.written[k]; ok && now.Sub(last) < u.interval {
		u.mu.Unlock()
		return
	}
	select {
	case u.slots <- struct{}{}:
	default:
		u.mu.Unlock()
		return // busy: a later use records it
	}
	if len(u.written) >= maxUsageTracked {
		for key, t := range u.written {
			if now.Sub(t) >= u.interval {
				delete(u.written, key)
			}
		}
	}
	u.written[k] = now
	u.inflight.Add(1)
	u.mu.Unlock()
	go func() {
		defer u.inflight.Done()
		defer func() { <-u.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), usageTimeout)
		defer cancel()
		raw, _ := json.Marshal(Usage{LastUsedAt: now.UTC().Truncate(time.Second)})
		if err := u.rt.PutState(ctx, UsageStateKind, k.tid, k.id, raw); err != nil {
			u.log.Warn("cannot record a gateway credential's last use", "tenant", k.tid, "credential", k.id, "error", err.Error())
			u.mu.Lock()
			if u.written[k].Equal(now) {
				delete(u.written, k) // the next use tries again
			}
			u.mu.Unlock()
		}
	}()
}

// wait waits for the usage writes in flight.
func (u *usageRecorder) wait() {
	if u != nil {
		u.inflight.Wait()
	}
}
