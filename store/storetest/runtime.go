package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

func testRuntimeState(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	before, _ := s.Revision(ctx)
	if _, err := s.GetState(ctx, "gateway-status", "t1", "gw"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing state: want ErrNotFound, got %v", err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutState(ctx, "gateway-status", "t1", "gw", json.RawMessage(`{"seen":1}`)))
	must(s.PutState(ctx, "gateway-status", "t1", "gw", json.RawMessage(`{"seen":2}`)))
	must(s.PutState(ctx, "gateway-status", "t1", "aaa", json.RawMessage(`{"seen":3}`)))
	must(s.PutState(ctx, "gateway-status", "t2", "gw", json.RawMessage(`{"seen":4}`)))
	must(s.PutState(ctx, "other-kind", "t1", "gw", json.RawMessage(`{"seen":5}`)))
	e, err := s.GetState(ctx, "gateway-status", "t1", "gw")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Seen int }
	if err := json.Unmarshal(e.Value, &v); err != nil || v.Seen != 2 || e.UpdatedAt.IsZero() || e.ID != "gw" || e.TenantID != "t1" {
		t.Fatalf("state after overwrite: %+v (%v)", e, err)
	}
	list, err := s.ListState(ctx, "gateway-status", "t1")
	if err != nil || len(list) != 2 || list[0].ID != "aaa" || list[1].ID != "gw" {
		t.Fatalf("list state: %v %+v", err, list)
	}
	must(s.DeleteState(ctx, "gateway-status", "t1", "aaa"))
	must(s.DeleteState(ctx, "gateway-status", "t1", "never-there"))
	if _, err := s.GetState(ctx, "gateway-status", "t1", "aaa"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted state still there: %v", err)
	}
	if list, _ := s.ListState(ctx, "gateway-status", "t1"); len(list) != 1 {
		t.Fatalf("delete removed more than one value: %+v", list)
	}
	must(s.PutState(ctx, "gateway-status", "t1", "aaa", json.RawMessage(`{"seen":3}`)))
	if err := s.PutState(ctx, "k", "t1", "x", json.RawMessage(`{not json`)); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("invalid JSON state: %v", err)
	}
	if after, _ := s.Revision(ctx); after != before {
		t.Fatal("runtime state writes must not move the revision")
	}
	// Deleting a tenant removes its state, not another tenant's.
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { _, err := tx.DeleteTenant(ctx, "t1"); return err })
	if _, err := s.GetState(ctx, "gateway-status", "t1", "gw"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("state of a deleted tenant survives: %v", err)
	}
	if _, err := s.GetState(ctx, "gateway-status", "t2", "gw"); err != nil {
		t.Fatalf("another tenant's state was removed: %v", err)
	}
}

func testRuntimeLogs(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	other := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw2"}
	for i := 0; i < 12; i++ {
		batch := []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"n":%d}`, 2*i)), json.RawMessage(fmt.Sprintf(`{"n":%d}`, 2*i+1))}
		if err := s.AppendLog(ctx, gw, batch); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendLog(ctx, other, []json.RawMessage{json.RawMessage(`{"other":true}`)}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(st store.LogStream, limit int) []int {
		t.Helper()
		var out []int
		after := ""
		for pages := 0; ; pages++ {
			p, err := s.ListLog(ctx, store.LogQuery{Stream: st, Limit: limit, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Items {
				var v struct{ N int }
				if err := json.Unmarshal(e.Data, &v); err != nil {
					t.Fatal(err)
				}
				if e.Time.IsZero() || e.ID == "" {
					t.Fatalf("entry without time or id: %+v", e)
				}
				out = append(out, v.N)
			}
			if p.Next == "" || pages > 50 {
				return out
			}
			after = p.Next
		}
	}
	got := read(gw, 5)
	if len(got) != 24 || got[0] != 23 || got[23] != 0 {
		t.Fatalf("log newest first: %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]-1 {
			t.Fatalf("log out of order: %v", got)
		}
	}
	n, err := s.TrimLog(ctx, gw, 10)
	if err != nil || n != 14 {
		t.Fatalf("trim removed %d (%v), want 14", n, err)
	}
	if got := read(gw, 100); len(got) != 10 || got[0] != 23 || got[9] != 14 {
		t.Fatalf("after trim: %v", got)
	}
	if got := read(other, 100); len(got) != 12 {
		t.Fatalf("trim touched another stream: %d entries", len(got))
	}
	if _, err := s.ListLog(ctx, store.LogQuery{Stream: gw, After: "nope"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad log cursor: %v", err)
	}
	if err := s.AppendLog(ctx, gw, []json.RawMessage{json.RawMessage(`nope`)}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("invalid JSON log entry: %v", err)
	}
	mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { _, err := tx.DeleteTenant(ctx, "t1"); return err })
	if got := read(gw, 100); len(got) != 0 {
		t.Fatalf("logs of a deleted tenant survive: %v", got)
	}
}
