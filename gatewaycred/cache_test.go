package gatewaycred_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// switchable is a store whose reads fail with ErrUnavailable while down
// is set.
type switchable struct {
	store.Store
	down *atomic.Bool
}

func (s switchable) Get(ctx context.Context, kind, tenantID, id string) (*store.Object, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("get %s %s: %w", kind, id, store.ErrUnavailable)
	}
	return s.Store.Get(ctx, kind, tenantID, id)
}

// TestCredentialCache: while the store is unavailable a remembered
// credential is accepted (only that exact token, only within the TTL),
// others are the store's error; the cache is bounded (LRU); the store's
// answer wins when it answers; the change feed forgets revoked
// credentials and those of a changed tenant; nothing is remembered while
// the feed is not followed.
func TestCredentialCache(t *testing.T) {
	var down atomic.Bool
	st := switchable{Store: testkit.Store(t), down: &down}
	testkit.Create(t, st, testkit.Tenant("acme"), testkit.Tenant("beta"))
	_, a := createGateway(t, st, "acme", "a")
	bCred, b := createGateway(t, st, "acme", "b")
	_, c := createGateway(t, st, "acme", "c")
	_, x := createGateway(t, st, "beta", "x")

	const ttl = 400 * time.Millisecond
	v := gatewaycred.New(st, slog.New(slog.NewTextHandler(io.Discard, nil)), gatewaycred.WithCache(2, ttl))
	ctx := context.Background()
	verified := func(token string) envoy.GatewayIdentity {
		t.Helper()
		id, err := v.VerifyGateway(ctx, token)
		if err != nil {
			t.Fatalf("verify with the store up: %v", err)
		}
		return id
	}
	// Not following the feed: nothing is remembered.
	v.Remember(a, verified(a))
	if n := v.CachedCredentials(); n != 0 {
		t.Fatalf("remembered %d credentials without following the feed", n)
	}
	fctx, stop := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { _ = v.FollowRevocations(fctx, 0, func(context.Context) {}); close(followed) }()
	t.Cleanup(func() { stop(); <-followed })
	testkit.Eventually(t, 30*time.Second, func() error {
		v.Remember(a, verified(a))
		n := v.CachedCredentials()
		return testkit.Check(n == 1, "%d credentials cached", n)
	}, "the verifier to follow the feed")

	down.Store(true)
	if id, err := v.VerifyGateway(ctx, a); err != nil || id.NodeID() != "acme/a" {
		t.Fatalf("remembered credential with the store down: %+v %v", id, err)
	}
	wrongSecret := a[:strings.LastIndexByte(a, '.')+1] + "AAAA"
	for _, tok := range []string{b, wrongSecret} {
		if _, err := v.VerifyGateway(ctx, tok); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("credential not remembered, store down: %v, want ErrUnavailable", err)
		}
	}
	time.Sleep(ttl + 100*time.Millisecond) // let the TTL pass
	if _, err := v.VerifyGateway(ctx, a); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("credential remembered longer ago than the TTL: %v, want ErrUnavailable", err)
	}

	// LRU: three credentials in a cache of two; the oldest goes.
	down.Store(false)
	for _, tok := range []string{a, b, c} {
		v.Remember(tok, verified(tok))
	}
	if n := v.CachedCredentials(); n != 2 {
		t.Fatalf("cache of 2 holds %d", n)
	}
	down.Store(true)
	if _, err := v.VerifyGateway(ctx, a); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("the least recently verified credential is still cached: %v", err)
	}
	for _, tok := range []string{b, c} {
		if _, err := v.VerifyGateway(ctx, tok); err != nil {
			t.Fatalf("recent credential: %v", err)
		}
	}

	// The store's answer wins: revoked b is refused as soon as the store
	// answers (the feed forgets it too).
	down.Store(false)
	revoke(t, st, "acme", bCred)
	if _, err := v.VerifyGateway(ctx, b); !errors.Is(err, envoy.ErrInvalidCredential) {
		t.Fatalf("revoked credential: %v", err)
	}
	down.Store(true)
	if _, err := v.VerifyGateway(ctx, b); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("revoked credential with the store down: %v, want ErrUnavailable", err)
	}

	// A change of the tenant (it may have been disabled) forgets its
	// credentials; other tenants' stay.
	down.Store(false)
	v.Remember(c, verified(c))
	v.Remember(x, verified(x))
	testkit.Edit(t, st, model.KindTenant, "", "acme", func(s *model.TenantSpec) { s.Name = "Acme renamed" })
	testkit.Eventually(t, 30*time.Second, func() error {
		n := v.CachedCredentials()
		return testkit.Check(n == 1, "%d credentials cached", n)
	}, "the tenant change to reach the cache")
	down.Store(true)
	if _, err := v.VerifyGateway(ctx, c); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("credential of a changed tenant: %v, want ErrUnavailable", err)
	}
	if id, err := v.VerifyGateway(ctx, x); err != nil || id.NodeID() != "beta/x" {
		t.Fatalf("another tenant's credential: %+v %v", id, err)
	}
	down.Store(false)

	// When the feed is no longer followed, the cache is emptied.
	stop()
	<-followed
	if n := v.CachedCredentials(); n != 0 {
		t.Fatalf("%d credentials cached after FollowRevocations returned", n)
	}
}
