package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// runtimeTests: runtime state and append-only logs are kept per tenant,
// beside the configuration and outside its revision.
func runtimeTests() []test {
	return []test{
		{name: "runtime state is a value per kind, tenant and id that does not move the revision", fn: testRuntimeState},
		{name: "a log stream is listed newest first, paged and trimmed", fn: testRuntimeLogs},
		{name: "a log batch is appended whole and in order, or not at all", fn: testRuntimeLogBatch},
	}
}

func testRuntimeState(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	before, _ := s.Revision(ctx)
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if !t.Run("a value never put is not found", func(t *testing.T) {
		if _, err := s.GetState(ctx, "gateway-status", "t1", "gw"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing state: want ErrNotFound, got %v", err)
		}
	}) {
		return
	}
	if !t.Run("put overwrites; get and list read one kind of one tenant", func(t *testing.T) {
		must(t, s.PutState(ctx, "gateway-status", "t1", "gw", json.RawMessage(`{"seen":1}`)))
		must(t, s.PutState(ctx, "gateway-status", "t1", "gw", json.RawMessage(`{"seen":2}`)))
		must(t, s.PutState(ctx, "gateway-status", "t1", "aaa", json.RawMessage(`{"seen":3}`)))
		must(t, s.PutState(ctx, "gateway-status", "t2", "gw", json.RawMessage(`{"seen":4}`)))
		must(t, s.PutState(ctx, "other-kind", "t1", "gw", json.RawMessage(`{"seen":5}`)))
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
	}) {
		return
	}
	if !t.Run("delete removes one value, and a missing one without error", func(t *testing.T) {
		must(t, s.DeleteState(ctx, "gateway-status", "t1", "aaa"))
		must(t, s.DeleteState(ctx, "gateway-status", "t1", "never-there"))
		if _, err := s.GetState(ctx, "gateway-status", "t1", "aaa"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted state still there: %v", err)
		}
		if list, _ := s.ListState(ctx, "gateway-status", "t1"); len(list) != 1 {
			t.Fatalf("delete removed more than one value: %+v", list)
		}
		must(t, s.PutState(ctx, "gateway-status", "t1", "aaa", json.RawMessage(`{"seen":3}`)))
	}) {
		return
	}
	if !t.Run("a value that is not JSON is refused; no state write moves the revision", func(t *testing.T) {
		if err := s.PutState(ctx, "k", "t1", "x", json.RawMessage(`{not json`)); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("invalid JSON state: %v", err)
		}
		if after, _ := s.Revision(ctx); after != before {
			t.Fatal("runtime state writes must not move the revision")
		}
	}) {
		return
	}
	t.Run("deleting a tenant removes its state, not another tenant's", func(t *testing.T) {
		mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { _, err := tx.DeleteTenant(ctx, "t1"); return err })
		if _, err := s.GetState(ctx, "gateway-status", "t1", "gw"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("state of a deleted tenant survives: %v", err)
		}
		if _, err := s.GetState(ctx, "gateway-status", "t2", "gw"); err != nil {
			t.Fatalf("another tenant's state was removed: %v", err)
		}
	})
}

func testRuntimeLogs(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	other := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw2"}
	read := func(t *testing.T, st store.LogStream, limit int) []int {
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
	if !t.Run("entries are listed newest first, page by page", func(t *testing.T) {
		for i := 0; i < 12; i++ {
			batch := []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"n":%d}`, 2*i)), json.RawMessage(fmt.Sprintf(`{"n":%d}`, 2*i+1))}
			if err := s.AppendLog(ctx, gw, batch); err != nil {
				t.Fatal(err)
			}
			if err := s.AppendLog(ctx, other, []json.RawMessage{json.RawMessage(`{"other":true}`)}); err != nil {
				t.Fatal(err)
			}
		}
		got := read(t, gw, 5)
		if len(got) != 24 || got[0] != 23 || got[23] != 0 {
			t.Fatalf("log newest first: %v", got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]-1 {
				t.Fatalf("log out of order: %v", got)
			}
		}
	}) {
		return
	}
	if !t.Run("trim keeps the newest entries of its stream only", func(t *testing.T) {
		n, err := s.TrimLog(ctx, gw, 10)
		if err != nil || n != 14 {
			t.Fatalf("trim removed %d (%v), want 14", n, err)
		}
		if got := read(t, gw, 100); len(got) != 10 || got[0] != 23 || got[9] != 14 {
			t.Fatalf("after trim: %v", got)
		}
		if got := read(t, other, 100); len(got) != 12 {
			t.Fatalf("trim touched another stream: %d entries", len(got))
		}
	}) {
		return
	}
	if !t.Run("a bad cursor and an entry that is not JSON are invalid", func(t *testing.T) {
		if _, err := s.ListLog(ctx, store.LogQuery{Stream: gw, After: "nope"}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("bad log cursor: %v", err)
		}
		if err := s.AppendLog(ctx, gw, []json.RawMessage{json.RawMessage(`nope`)}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("invalid JSON log entry: %v", err)
		}
	}) {
		return
	}
	t.Run("deleting the tenant removes its logs", func(t *testing.T) {
		mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { _, err := tx.DeleteTenant(ctx, "t1"); return err })
		if got := read(t, gw, 100); len(got) != 0 {
			t.Fatalf("logs of a deleted tenant survive: %v", got)
		}
	})
}

// testRuntimeLogBatch: one AppendLog of a large batch (what an uploaded
// decision log batch is) stores every entry, in order, with one time;
// concurrent batches to one stream are each kept whole and in order; a
// batch with one invalid entry stores nothing.
func testRuntimeLogBatch(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	const n = 2500
	batch := make([]json.RawMessage, n)
	for i := range batch {
		batch[i] = json.RawMessage(fmt.Sprintf(`{"n":%d,"input":{"path":"/pets/%d","headers":{"x-request-id":"r%d"}}}`, i, i, i))
	}
	readAll := func(t *testing.T, st store.LogStream) []*store.LogEntry {
		t.Helper()
		var out []*store.LogEntry
		after := ""
		for {
			p, err := s.ListLog(ctx, store.LogQuery{Stream: st, Limit: 1000, After: after})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.Items...)
			if p.Next == "" {
				return out
			}
			after = p.Next
		}
	}
	if !t.Run("a large batch is stored whole, in order, at one time", func(t *testing.T) {
		if err := s.AppendLog(ctx, gw, batch); err != nil {
			t.Fatal(err)
		}
		got := readAll(t, gw)
		if len(got) != n {
			t.Fatalf("%d entries stored, want %d", len(got), n)
		}
		for i, e := range got { // newest first
			var v struct{ N int }
			if err := json.Unmarshal(e.Data, &v); err != nil || v.N != n-1-i {
				t.Fatalf("entry %d is %s (%v), want n=%d", i, e.Data, err, n-1-i)
			}
			if !e.Time.Equal(got[0].Time) {
				t.Fatalf("one batch, several times: %v and %v", e.Time, got[0].Time)
			}
		}
	}) {
		return
	}
	if !t.Run("concurrent batches to one stream are each kept whole and in order", func(t *testing.T) {
		other := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw2"}
		const writers, per = 4, 300
		errs := make(chan error, writers)
		for w := range writers {
			go func() {
				b := make([]json.RawMessage, per)
				for i := range b {
					b[i] = json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				}
				errs <- s.AppendLog(ctx, other, b)
			}()
		}
		for range writers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		entries := readAll(t, other)
		if len(entries) != writers*per {
			t.Fatalf("%d entries after concurrent batches, want %d", len(entries), writers*per)
		}
		last := map[int]int{}
		for i := len(entries) - 1; i >= 0; i-- { // oldest first
			var v struct{ W, I int }
			if err := json.Unmarshal(entries[i].Data, &v); err != nil {
				t.Fatal(err)
			}
			if prev, ok := last[v.W]; (ok && v.I != prev+1) || (!ok && v.I != 0) {
				t.Fatalf("writer %d's batch out of order: %d after %d", v.W, v.I, prev)
			}
			last[v.W] = v.I
		}
	}) {
		return
	}
	t.Run("a batch with an invalid entry stores nothing; an empty batch is fine", func(t *testing.T) {
		bad := append(append([]json.RawMessage{}, batch[:10]...), json.RawMessage(`{"broken":`), batch[10])
		if err := s.AppendLog(ctx, gw, bad); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("a batch with an invalid entry: %v", err)
		}
		if got := readAll(t, gw); len(got) != n {
			t.Fatalf("a refused batch left %d entries, want %d", len(got), n)
		}
		if err := s.AppendLog(ctx, gw, nil); err != nil {
			t.Fatalf("an empty batch: %v", err)
		}
	})
}
