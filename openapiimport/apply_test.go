package openapiimport

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

// openStore is an embedded store with tenant acme's service pets and
// policy readers.
func openStore(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, err = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := serviceRepo.Create(ctx, tx, &store.Typed[model.ServiceSpec]{
			Meta: store.Object{TenantID: "acme", ID: "pets", Name: "Pets"}, Spec: model.ServiceSpec{URL: "http://pets"}}); err != nil {
			return err
		}
		return (store.Repo[model.PolicySpec]{Kind: model.KindPolicy}).Create(ctx, tx, &store.Typed[model.PolicySpec]{
			Meta: store.Object{TenantID: "acme", ID: "readers", Name: "readers"}, Spec: model.PolicySpec{Language: model.LanguageRego}})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var audit = Audit{Actor: "alice", RequestID: "req-1"}

func apply(t *testing.T, st store.Store, tg Target, data []byte) (*Result, error) {
	t.Helper()
	doc := mustParse(t, data)
	var res *Result
	_, err := st.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		var err error
		res, err = Apply(ctx, tx, tg, doc, audit)
		return err
	})
	return res, err
}

func serviceAPIs(t *testing.T, st store.Store) map[string]*store.Typed[model.APISpec] {
	t.Helper()
	l, err := apiRepo.ListAll(context.Background(), st, store.Query{TenantID: "acme", ParentID: "pets"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*store.Typed[model.APISpec]{}
	for _, a := range l {
		out[a.Meta.ID] = a
	}
	return out
}

func events(t *testing.T, st store.Store) []*store.Event {
	t.Helper()
	pg, err := st.ListEvents(context.Background(), store.EventQuery{TenantID: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return pg.Items
}

// TestApplyReimportUpdatesTheSameObjects: ids come from operationIds, and
// a re-import updates every API in place (uid and created_at kept), in one
// transaction, with an audit event per write naming the actor and the
// request.
func TestApplyReimportUpdatesTheSameObjects(t *testing.T) {
	st := openStore(t)
	data := spec("x-gatehouse-policy: readers\n", op("/pets", "get", "list pets", ""), op("/pets/{id}", "get", "getPet", pathParam("id")), op("/health", "get", "", ""))
	res, err := apply(t, st, target, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Created) != 3 || res.Created[0].Meta.ID != "list-pets" || res.Created[1].Meta.ID != "getPet" || !isUUID(res.Created[2].Meta.ID) ||
		len(res.Updated)+len(res.Removed) != 0 || !res.Service.Spec.WithSpecification {
		t.Fatalf("first import: %+v", res)
	}
	first := serviceAPIs(t, st)
	for _, a := range first {
		if a.Spec.PolicyID != "readers" || a.Meta.CreatedBy != "alice" || a.Meta.UpdatedBy != "alice" || !a.Spec.Imported {
			t.Fatalf("imported API: %+v", a)
		}
	}
	evs := events(t, st)
	if len(evs) != 4 { // 3 APIs and the service
		t.Fatalf("events: %d", len(evs))
	}
	for _, ev := range evs {
		if ev.Actor != "alice" || ev.RequestID != "req-1" || ev.Revision != evs[0].Revision {
			t.Fatalf("event: %+v", ev)
		}
	}

	res, err = apply(t, st, target, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Updated) != 3 || len(res.Created)+len(res.Removed) != 0 {
		t.Fatalf("re-import: %+v", res)
	}
	again := serviceAPIs(t, st)
	if len(again) != 3 {
		t.Fatalf("APIs after the re-import: %d", len(again))
	}
	for id, a := range again {
		f := first[id]
		if f == nil || a.Meta.UID != f.Meta.UID || !a.Meta.CreatedAt.Equal(f.Meta.CreatedAt) || a.Meta.CreateRevision != f.Meta.CreateRevision ||
			a.Meta.Revision <= f.Meta.Revision {
			t.Fatalf("API %s was not updated in place:\n%+v\n%+v", id, f, a)
		}
	}
}

// TestApplySwapsRoutes: APIs may take each other's routes (names are
// unique, so one of them is cleared first), or move along a chain.
func TestApplySwapsRoutes(t *testing.T) {
	st := openStore(t)
	if _, err := apply(t, st, target, spec("", op("/a", "get", "a", ""), op("/b", "get", "b", ""), op("/c", "get", "c", ""))); err != nil {
		t.Fatal(err)
	}
	before := serviceAPIs(t, st)
	res, err := apply(t, st, target, spec("", op("/b", "get", "a", ""), op("/a", "get", "b", ""), op("/d", "get", "c", ""), op("/c", "get", "new", "")))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Updated) != 3 || len(res.Created) != 1 || len(res.Removed) != 0 {
		t.Fatalf("swap: %+v", res)
	}
	after := serviceAPIs(t, st)
	for id, path := range map[string]string{"a": "/b", "b": "/a", "c": "/d", "new": "/c"} {
		a := after[id]
		if a == nil || a.Spec.Path != path || a.Meta.Name != "pets GET "+path {
			t.Fatalf("API %s: %+v", id, a)
		}
		if b := before[id]; b != nil && b.Meta.UID != a.Meta.UID {
			t.Fatalf("API %s was recreated", id)
		}
	}
	// One event per API, whatever it took to write it.
	n := map[string]int{}
	for _, ev := range events(t, st) {
		if ev.Revision == after["a"].Meta.Revision {
			n[ev.Kind+"/"+ev.ObjectID+"/"+ev.Action]++
		}
	}
	if fmt.Sprint(n) != "map[apis/a/update:1 apis/b/update:1 apis/c/update:1 apis/new/create:1 services/pets/update:1]" {
		t.Fatalf("events: %v", n)
	}
}

// TestApplyWritesNothingWhenRefused: unknown policies, a stale service
// revision or an unknown service fail the transaction before any write.
func TestApplyWritesNothingWhenRefused(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	rev, _ := st.Revision(ctx)
	tg := target
	tg.DefaultPolicyID = "nope"
	_, err := apply(t, st, tg, spec("", op("/pets", "get", "listPets", "")))
	var errs field.ErrorList
	if !errors.As(err, &errs) || errs[0].Field != DefaultPolicyField {
		t.Fatalf("unknown policy: %v", err)
	}
	if _, err := apply(t, st, target, spec("", op("/pets", "get", "listPets", "x-gatehouse-policy: nope"))); !errors.As(err, &errs) ||
		errs[0].Field != "paths./pets.get.x-gatehouse-policy" {
		t.Fatalf("unknown policy of an operation: %v", err)
	}
	tg = target
	tg.ServiceRevision = 999
	if _, err := apply(t, st, tg, spec("", op("/pets", "get", "listPets", ""))); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale revision: %v", err)
	}
	tg = target
	tg.ServiceID = "ghost"
	if _, err := apply(t, st, tg, spec("", op("/pets", "get", "listPets", ""))); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown service: %v", err)
	}
	if now, _ := st.Revision(ctx); now != rev || len(serviceAPIs(t, st)) != 0 || len(events(t, st)) != 0 {
		t.Fatalf("a refused import wrote: revision %d -> %d", rev, now)
	}
}

// TestApplyFallsBackWhenAnotherServiceHasTheID: API ids are tenant-wide;
// an id another service's API has gives a generated id, which the API
// keeps on re-import (matched by its operationId).
func TestApplyFallsBackWhenAnotherServiceHasTheID(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if _, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := serviceRepo.Create(ctx, tx, &store.Typed[model.ServiceSpec]{Meta: store.Object{TenantID: "acme", ID: "shop", Name: "Shop"}}); err != nil {
			return err
		}
		return apiRepo.Create(ctx, tx, &store.Typed[model.APISpec]{Meta: store.Object{TenantID: "acme", ID: "health", ParentID: "shop", Name: "shop GET /health"},
			Spec: model.APISpec{ServiceID: "shop", Method: "GET", Path: "/health"}})
	}); err != nil {
		t.Fatal(err)
	}
	res, err := apply(t, st, target, spec("", op("/health", "get", "health", "")))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Created[0].Meta.ID
	if !isUUID(id) {
		t.Fatalf("id %q", id)
	}
	res, err = apply(t, st, target, spec("", op("/v2/health", "get", "health", "")))
	if err != nil || len(res.Updated) != 1 || res.Updated[0].Meta.ID != id || res.Updated[0].Spec.Path != "/v2/health" {
		t.Fatalf("re-import: %+v %v", res, err)
	}
}
