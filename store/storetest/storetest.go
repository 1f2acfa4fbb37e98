// Package storetest is the conformance suite every store backend runs: the
// same behaviour, asserted the same way, whatever the storage underneath.
//
// The suite is split by topic, one file each: objects (crud.go), unique
// ids and names and soft delete (uniqueness.go), paging (paging.go), the
// live children of an object, by parent (children.go), the
// change feed (watch.go), concurrent writers (concurrency.go), reopening
// (durability.go), tenant deletion (tenants.go), audit events
// (events.go), runtime state and logs (runtime.go), searching, counting
// and following logs (logsearch.go), runtime state taken
// once, created if absent and expiring (statettl.go) and bundle revision
// claims (bundleclaim.go). Every test is named for the behaviour it
// asserts; the long ones run as steps, each stopping the later ones when
// it fails.
package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Harness gives the suite access to one backend instance. Run calls
// newHarness once per test, so every test starts from an empty store.
type Harness struct {
	// Open returns a new handle on the same underlying data (a new pool, a
	// reopened file). For single-handle backends the suite closes the
	// previous handle before calling Open again.
	Open func(t *testing.T) store.Store
	// MultiHandle says several handles may be open at once (separate
	// connections or processes sharing the data), as with PostgreSQL.
	MultiHandle bool
}

// test is one conformance test: the behaviour it asserts, as a sentence,
// and its body.
type test struct {
	name string
	fn   func(t *testing.T, h Harness)
	// multiHandleOnly tests need several handles open at once.
	multiHandleOnly bool
}

// topic is a group of tests, one file of the suite.
type topic struct {
	name  string
	tests []test
}

// topics is the whole suite, in the order it runs.
func topics() []topic {
	return []topic{
		{"Objects", objectTests()},
		{"Uniqueness", uniquenessTests()},
		{"Paging", pagingTests()},
		{"Children", childrenTests()},
		{"Watch", watchTests()},
		{"Concurrency", concurrencyTests()},
		{"Durability", durabilityTests()},
		{"Tenants", tenantTests()},
		{"AuditEvents", eventTests()},
		{"Runtime", runtimeTests()},
		{"LogSearch", logSearchTests()},
		{"StateTTL", stateTTLTests()},
		{"BundleRevisionClaims", bundleClaimTests()},
	}
}

// Run runs the whole suite, as TestConformance/<topic>/<behaviour>.
// newHarness must return a harness on fresh, empty storage each time it is
// called.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, tp := range topics() {
		t.Run(tp.name, func(t *testing.T) {
			for _, tc := range tp.tests {
				t.Run(tc.name, func(t *testing.T) {
					h := newHarness(t)
					if tc.multiHandleOnly && !h.MultiHandle {
						// Single-handle backends (embedded) lock their data to one
						// process by design; TestSecondProcessIsLockedOut covers that.
						t.Skip("needs several handles open at once; this backend has one")
					}
					tc.fn(t, h)
				})
			}
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type widget struct {
	Color string `json:"color"`
	Count int    `json:"count"`
}

func obj(kind, tenant, id, name string, spec widget) *store.Object {
	b, _ := json.Marshal(spec)
	return &store.Object{Kind: kind, TenantID: tenant, ID: id, Name: name, Spec: b, CreatedBy: "tester",
		Description: "d-" + id, Labels: map[string]string{"env": "test"}}
}

func specOf(t *testing.T, o *store.Object) widget {
	t.Helper()
	var w widget
	if err := json.Unmarshal(o.Spec, &w); err != nil {
		t.Fatalf("decode spec of %s: %v", o.ID, err)
	}
	return w
}

func mustUpdate(t *testing.T, s store.Store, fn func(ctx context.Context, tx store.Tx) error) int64 {
	t.Helper()
	rev, err := s.Update(ctxT(t), fn)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	return rev
}

func create(t *testing.T, s store.Store, objs ...*store.Object) int64 {
	t.Helper()
	return mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
}
