package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// eventTests: audit events are kept per tenant, listed newest first,
// filtered and paged.
func eventTests() []test {
	return []test{
		{name: "audit events are listed newest first and filtered", fn: testEvents},
		{name: "audit events page within their tenant", fn: testEventsPagination},
	}
}

func appendEvents(t *testing.T, s store.Store, evs ...*store.Event) int64 {
	t.Helper()
	return mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, e := range evs {
			if err := tx.AppendEvent(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

func testEvents(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	mk := func(tenant, actor, action, kind, id string, at time.Time) *store.Event {
		return &store.Event{TenantID: tenant, Actor: actor, Action: action, Kind: kind, ObjectID: id, Time: at, RequestID: "req-" + id}
	}
	var revs []int64
	if !t.Run("an appended event gets an id and its transaction's revision", func(t *testing.T) {
		var written []*store.Event
		for _, e := range []*store.Event{
			mk("t1", "alice", "create", "services", "s1", t0),
			mk("t1", "bob", "update", "services", "s1", t0.Add(10*time.Minute)),
			mk("t2", "alice", "create", "services", "s9", t0.Add(15*time.Minute)),
			mk("t1", "alice", "delete", "policies", "p1", t0.Add(20*time.Minute)),
		} {
			revs = append(revs, appendEvents(t, s, e))
			written = append(written, e)
		}
		for i, e := range written {
			if e.ID == "" || e.Revision != revs[i] {
				t.Fatalf("event %d: id %q revision %d (transaction revision %d)", i, e.ID, e.Revision, revs[i])
			}
		}
	}) {
		return
	}
	q := func(t *testing.T, eq store.EventQuery) []string {
		t.Helper()
		p, err := s.ListEvents(ctx, eq)
		if err != nil {
			t.Fatalf("list events %+v: %v", eq, err)
		}
		var out []string
		for _, e := range p.Items {
			out = append(out, e.Actor+":"+e.Action+":"+e.ObjectID)
		}
		return out
	}
	t.Run("listings select", func(t *testing.T) {
		for _, c := range []struct {
			name string
			q    store.EventQuery
			want string
		}{
			{"newest first", store.EventQuery{TenantID: "t1"}, "[alice:delete:p1 bob:update:s1 alice:create:s1]"},
			{"tenant isolation", store.EventQuery{TenantID: "t2"}, "[alice:create:s9]"},
			{"by kind", store.EventQuery{TenantID: "t1", Kind: "services"}, "[bob:update:s1 alice:create:s1]"},
			{"by action", store.EventQuery{TenantID: "t1", Action: "create"}, "[alice:create:s1]"},
			{"by actor", store.EventQuery{TenantID: "t1", Actor: "alice"}, "[alice:delete:p1 alice:create:s1]"},
			{"from", store.EventQuery{TenantID: "t1", From: t0.Add(5 * time.Minute)}, "[alice:delete:p1 bob:update:s1]"},
			{"to", store.EventQuery{TenantID: "t1", To: t0.Add(10 * time.Minute)}, "[bob:update:s1 alice:create:s1]"},
			{"min revision", store.EventQuery{TenantID: "t1", MinRevision: revs[1]}, "[alice:delete:p1 bob:update:s1]"},
			{"no match", store.EventQuery{TenantID: "t1", Actor: "mallory"}, "[]"},
			{"unknown tenant", store.EventQuery{TenantID: "t"}, "[]"},
		} {
			t.Run(c.name, func(t *testing.T) {
				if got := fmt.Sprint(q(t, c.q)); got != c.want {
					t.Errorf("got %s, want %s", got, c.want)
				}
			})
		}
	})
	t.Run("an event's fields round trip", func(t *testing.T) {
		p, _ := s.ListEvents(ctx, store.EventQuery{TenantID: "t1", Limit: 1})
		if len(p.Items) != 1 || p.Items[0].RequestID != "req-p1" || !p.Items[0].Time.Equal(t0.Add(20*time.Minute)) {
			t.Fatalf("event fields did not round trip: %+v", p.Items)
		}
	})
	t.Run("an event's change summary round trips, none stays none", func(t *testing.T) {
		changes := `{"name":{"before":"a","after":"b"},"secret_hash":{"before":"***","after":"***"}}`
		appendEvents(t, s, &store.Event{TenantID: "t3", Actor: "alice", Action: "update", Kind: "widgets", ObjectID: "w",
			Changes: json.RawMessage(changes)}, &store.Event{TenantID: "t3", Actor: "alice", Action: "delete", Kind: "widgets", ObjectID: "v"})
		p, err := s.ListEvents(ctx, store.EventQuery{TenantID: "t3"})
		if err != nil || len(p.Items) != 2 {
			t.Fatalf("list: %v %+v", err, p)
		}
		if p.Items[0].Changes != nil {
			t.Errorf("an event without changes lists changes %s", p.Items[0].Changes)
		}
		var got, want any
		if err := json.Unmarshal(p.Items[1].Changes, &got); err != nil {
			t.Fatalf("changes %q: %v", p.Items[1].Changes, err)
		}
		_ = json.Unmarshal([]byte(changes), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("changes: got %s, want %s", p.Items[1].Changes, changes)
		}
	})
	t.Run("a cursor that is not one is invalid", func(t *testing.T) {
		if _, err := s.ListEvents(ctx, store.EventQuery{TenantID: "t1", After: "x"}); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("bad event cursor: %v", err)
		}
	})
}

func testEventsPagination(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	for i := 0; i < 23; i++ {
		appendEvents(t, s, &store.Event{TenantID: "t1", Actor: "a", Action: "update", Kind: "k", ObjectID: fmt.Sprint(i)},
			&store.Event{TenantID: "t10", Actor: "a", Action: "update", Kind: "k", ObjectID: fmt.Sprint(i)})
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := s.ListEvents(ctx, store.EventQuery{TenantID: "t1", Limit: 5, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Items {
			if e.TenantID != "t1" {
				t.Fatalf("event of %s listed for t1", e.TenantID)
			}
			got = append(got, e.ObjectID)
		}
		if p.Next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("event pagination does not terminate")
		}
		after = p.Next
	}
	var want []string
	for i := 22; i >= 0; i-- {
		want = append(want, fmt.Sprint(i))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged events\n got %v\nwant %v", got, want)
	}
}
