package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// logSearchTests: a log stream is searched by the fields of its decision
// events and by received time, paged, counted and followed alike on every
// backend.
func logSearchTests() []test {
	return []test{
		{name: "each filter keeps the events whose field has that value and JSON type", fn: testLogSearchFields},
		{name: "a filtered listing pages without gaps or repeats and totals every page", fn: testLogSearchPaging},
		{name: "from and to bound the received time, inclusively", fn: testLogSearchWindow},
		{name: "decisions are counted per policy and outcome, under the filter", fn: testLogSearchCounts},
		{name: "a follower reading newer than the last id it saw misses and repeats nothing", fn: testLogSearchFollow},
	}
}

// searchEvents are decision events, each labelled n, with fields of the
// right type, of the wrong type, duplicated (the last counts), escaped,
// and of another letter case (not the field).
var searchEvents = []string{
	`{"n":0,"decision_id":"d0","result":{"allowed":true,"http_status":200,"api_id":"get-pet","policy_id":"p1"},"input":{"gatehouse":{"token":{"subject":"alice"}}}}`,
	`{"n":1,"decision_id":"d1","result":{"allowed":false,"http_status":403,"api_id":"get-pet","policy_id":"p1"},"input":{"gatehouse":{"token":{"subject":"bob"}}}}`,
	`{"n":2,"decision_id":"d2","result":{"allowed":false,"http_status":401,"api_id":"put-pet","policy_id":"p2","token_reason":"expired"},"input":{"gatehouse":{"token":{"present":true,"valid":false}}}}`,
	`{"n":3,"decision_id":"d3","result":{"allowed":false,"http_status":404,"api_id":"","policy_id":""}}`,
	`{"n":4,"decision_id":"d4","result":{"allowed":"false","http_status":"403","api_id":5,"policy_id":["p1"],"token_reason":7},"input":{"gatehouse":{"token":{"subject":7}}}}`,
	`{"n":5,"decision_id":"d5","result":{"allowed":true,"http_status":403.0,"api_id":"get-pet","policy_id":"p2"},"input":{"gatehouse":{"token":{"subject":"alice"}}}}`,
	`{"n":6,"decision_id":"d6","result":{"allowed":false,"http_status":4.03e2,"api_id":"put-pet","policy_id":"p1","api_id":"get-pet"},"input":{"gatehouse":{"token":{"subject":"bob"}}}}`,
	`{"n":7,"d\u0065cision_id":"d7","result":{"allowed":false,"Api_Id":"get-pet","policy_id":"p\u0031"},"input":{"gatehouse":{"token":{"subject":"carol"}},"gatehouse":{}}}`,
	`{"n":8,"decision_id":"d8","result":true}`,
	`{"n":9,"decision_id":"d9","result":{"allowed":true,"http_status":1e12,"policy_id":"p2"},"result":{"allowed":true,"policy_id":"p2","http_status":200}}`,
	`{"n":10,"decision_id":"dé","result":{"allowed":false,"http_status":403,"api_id":"get-pet","policy_id":"p1"},"input":{"gatehouse":{"token":{"subject":"ünï \"q\""}}}}`,
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// searchN lists the n labels of a query's entries (every page), newest
// first, and the totals the pages reported.
func searchN(t *testing.T, s store.Store, q store.LogQuery) (ns []int, totals []int) {
	t.Helper()
	ctx := ctxT(t)
	for pages := 0; ; pages++ {
		p, err := s.ListLog(ctx, q)
		if err != nil {
			t.Fatalf("list %+v: %v", q.Filter, err)
		}
		for _, e := range p.Items {
			var v struct{ N int }
			if err := json.Unmarshal(e.Data, &v); err != nil {
				t.Fatal(err)
			}
			ns = append(ns, v.N)
		}
		totals = append(totals, p.Total)
		if p.Next == "" {
			return ns, totals
		}
		if pages > 1000 {
			t.Fatal("the listing never ends")
		}
		q.After = p.Next
	}
}

func appendSearchEvents(t *testing.T, s store.Store, st store.LogStream, events []string) {
	t.Helper()
	batch := make([]json.RawMessage, len(events))
	for i, e := range events {
		batch[i] = json.RawMessage(e)
	}
	if err := s.AppendLog(ctxT(t), st, batch); err != nil {
		t.Fatal(err)
	}
}

func testLogSearchFields(t *testing.T, h Harness) {
	s := open(t, h)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	appendSearchEvents(t, s, gw, searchEvents)
	// The same events for another gateway and another tenant's gateway of
	// the same id: never found through gw.
	appendSearchEvents(t, s, store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw2"}, searchEvents)
	appendSearchEvents(t, s, store.LogStream{Name: "decisions", TenantID: "t2", Key: "gw"}, searchEvents)
	for _, c := range []struct {
		name string
		f    store.LogFilter
		want []int // newest first
	}{
		{"no filter", store.LogFilter{}, []int{10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}},
		{"allowed", store.LogFilter{Allowed: yes()}, []int{9, 5, 0}},
		{"denied", store.LogFilter{Allowed: no()}, []int{10, 7, 6, 3, 2, 1}},
		{"http_status 403, 403.0 and 4.03e2 alike", store.LogFilter{HTTPStatus: 403}, []int{10, 6, 5, 1}},
		{"http_status of the last result", store.LogFilter{HTTPStatus: 200}, []int{9, 0}},
		{"http_status out of range", store.LogFilter{HTTPStatus: 1e12}, nil},
		{"api_id (the last of duplicates, exact case)", store.LogFilter{APIID: "get-pet"}, []int{10, 6, 5, 1, 0}},
		{"api_id duplicated away", store.LogFilter{APIID: "put-pet"}, []int{2}},
		{"api_id of another type", store.LogFilter{APIID: "5"}, nil},
		{"policy_id (escaped value)", store.LogFilter{PolicyID: "p1"}, []int{10, 7, 6, 1, 0}},
		{"policy_id", store.LogFilter{PolicyID: "p2"}, []int{9, 5, 2}},
		{"subject", store.LogFilter{Subject: "alice"}, []int{5, 0}},
		{"subject of a gatehouse member duplicated away", store.LogFilter{Subject: "carol"}, nil},
		{"subject with escapes", store.LogFilter{Subject: "ünï \"q\""}, []int{10}},
		{"subject of another type", store.LogFilter{Subject: "7"}, nil},
		{"token_reason", store.LogFilter{TokenReason: "expired"}, []int{2}},
		{"token_reason of another type", store.LogFilter{TokenReason: "7"}, nil},
		{"decision_id (escaped name)", store.LogFilter{DecisionID: "d7"}, []int{7}},
		{"decision_id", store.LogFilter{DecisionID: "dé"}, []int{10}},
		{"decision_id unknown", store.LogFilter{DecisionID: "nope"}, nil},
		{"a value PostgreSQL cannot store matches nothing", store.LogFilter{Subject: "a\x00b"}, nil},
		{"filters combine", store.LogFilter{Allowed: no(), APIID: "get-pet", HTTPStatus: 403, PolicyID: "p1"}, []int{10, 6, 1}},
		{"filters combine to one", store.LogFilter{Allowed: no(), APIID: "get-pet", Subject: "bob", DecisionID: "d6"}, []int{6}},
		{"filters combine to none", store.LogFilter{Allowed: yes(), Subject: "bob"}, nil},
	} {
		got, totals := searchN(t, s, store.LogQuery{Stream: gw, Filter: c.f, WithTotal: true})
		if !slices.Equal(got, c.want) || totals[0] != len(c.want) {
			t.Errorf("%s: %v (total %v), want %v", c.name, got, totals, c.want)
		}
	}
	other, _ := searchN(t, s, store.LogQuery{Stream: store.LogStream{Name: "decisions", TenantID: "t3", Key: "gw"}, Filter: store.LogFilter{Allowed: no()}, WithTotal: true})
	if len(other) != 0 {
		t.Errorf("a tenant without logs found %v", other)
	}
	if _, err := s.ListLog(ctxT(t), store.LogQuery{Stream: gw, Filter: store.LogFilter{Since: "nope"}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a malformed since: %v, want ErrInvalid", err)
	}
	if _, err := s.CountLog(ctxT(t), gw, store.LogFilter{Since: "-1"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a malformed since (count): %v, want ErrInvalid", err)
	}
}

func testLogSearchPaging(t *testing.T, h Harness) {
	s := open(t, h)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	for range 3 {
		appendSearchEvents(t, s, gw, searchEvents)
		appendSearchEvents(t, s, store.LogStream{Name: "decisions", TenantID: "t1", Key: "other"}, searchEvents[:4])
	}
	denied := []int{10, 7, 6, 3, 2, 1}
	want := slices.Concat(denied, denied, denied)
	for _, limit := range []int{1, 2, 5, 17, 18, 100} {
		got, totals := searchN(t, s, store.LogQuery{Stream: gw, Limit: limit, Filter: store.LogFilter{Allowed: no()}, WithTotal: true})
		if !slices.Equal(got, want) {
			t.Fatalf("pages of %d: %v, want %v", limit, got, want)
		}
		if wantPages := (len(want) + limit - 1) / limit; len(totals) != wantPages {
			t.Fatalf("pages of %d: %d pages, want %d", limit, len(totals), wantPages)
		}
		for _, n := range totals {
			if n != len(want) {
				t.Fatalf("pages of %d: totals %v, want %d on each", limit, totals, len(want))
			}
		}
		got, totals = searchN(t, s, store.LogQuery{Stream: gw, Limit: limit, Filter: store.LogFilter{Allowed: no()}})
		if !slices.Equal(got, want) || slices.Max(totals) != 0 {
			t.Fatalf("pages of %d without totals: %v %v", limit, got, totals)
		}
	}
	// Since: the entries newer than one, with the filter.
	all, err := s.ListLog(ctxT(t), store.LogQuery{Stream: gw})
	if err != nil {
		t.Fatal(err)
	}
	pivot := all.Items[len(searchEvents)+5] // the second batch's e5
	got, totals := searchN(t, s, store.LogQuery{Stream: gw, Limit: 2, Filter: store.LogFilter{Allowed: no(), Since: pivot.ID}, WithTotal: true})
	if w := []int{10, 7, 6, 3, 2, 1, 10, 7, 6}; !slices.Equal(got, w) || totals[0] != len(w) {
		t.Fatalf("newer than %s: %v (totals %v), want %v", pivot.ID, got, totals, w)
	}
	if got, _ := searchN(t, s, store.LogQuery{Stream: gw, Filter: store.LogFilter{Since: all.Items[0].ID}}); len(got) != 0 {
		t.Fatalf("newer than the newest: %v", got)
	}
}

func testLogSearchWindow(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	// Batches of one time each, between batches of other streams (so the
	// stream's seqs have holes).
	const batches = 24
	for b := range batches {
		appendSearchEvents(t, s, gw, []string{
			fmt.Sprintf(`{"n":%d,"result":{"allowed":false}}`, 3*b), fmt.Sprintf(`{"n":%d,"result":{"allowed":true}}`, 3*b+1),
			fmt.Sprintf(`{"n":%d,"result":{"allowed":false}}`, 3*b+2)})
		appendSearchEvents(t, s, store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw2"}, searchEvents[:b%3+1])
	}
	all, err := s.ListLog(ctx, store.LogQuery{Stream: gw})
	if err != nil {
		t.Fatal(err)
	}
	times := map[int]time.Time{}
	for _, e := range all.Items {
		var v struct{ N int }
		_ = json.Unmarshal(e.Data, &v)
		times[v.N] = e.Time
	}
	expect := func(f store.LogFilter) []int {
		var out []int
		for n := 3*batches - 1; n >= 0; n-- {
			if f.MatchTime(times[n]) && (f.Allowed == nil || *f.Allowed == (n%3 == 1)) {
				out = append(out, n)
			}
		}
		return out
	}
	var windows []store.LogFilter
	for _, b := range []int{0, 1, 7, 12, batches - 2, batches - 1} {
		at := times[3*b]
		windows = append(windows,
			store.LogFilter{From: at}, store.LogFilter{To: at}, store.LogFilter{From: at, To: at},
			store.LogFilter{From: at.Add(time.Nanosecond)}, store.LogFilter{To: at.Add(-time.Nanosecond)},
			store.LogFilter{From: at, To: times[3*min(b+5, batches-1)]},
			store.LogFilter{From: at, Allowed: no()}, store.LogFilter{To: at, Allowed: yes()})
	}
	windows = append(windows, store.LogFilter{From: times[0].Add(-time.Hour), To: times[3*batches-1].Add(time.Hour)},
		store.LogFilter{To: times[0].Add(-time.Nanosecond)}, store.LogFilter{From: times[3*batches-1].Add(time.Nanosecond)},
		store.LogFilter{From: times[3*batches-1], To: times[0]})
	for _, f := range windows {
		for _, limit := range []int{0, 4} {
			got, totals := searchN(t, s, store.LogQuery{Stream: gw, Limit: limit, Filter: f, WithTotal: true})
			if want := expect(f); !slices.Equal(got, want) || totals[0] != len(want) {
				t.Fatalf("window %s..%s allowed=%v (pages of %d): %v (totals %v), want %v", f.From.Format(time.RFC3339Nano), f.To.Format(time.RFC3339Nano), f.Allowed, limit, got, totals, want)
			}
		}
		counts, err := s.CountLog(ctx, gw, f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range counts {
			n += c.Total
		}
		if want := expect(f); n != len(want) {
			t.Fatalf("window %v..%v: counted %d, want %d", f.From, f.To, n, len(want))
		}
	}
}

func testLogSearchCounts(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	appendSearchEvents(t, s, gw, searchEvents)
	appendSearchEvents(t, s, store.LogStream{Name: "decisions", TenantID: "t2", Key: "gw"}, searchEvents)
	for _, c := range []struct {
		name string
		f    store.LogFilter
		want []store.LogPolicyCount
	}{
		{"every event", store.LogFilter{}, []store.LogPolicyCount{
			{PolicyID: "", Total: 3, Denied: 1}, {PolicyID: "p1", Total: 5, Allowed: 1, Denied: 4}, {PolicyID: "p2", Total: 3, Allowed: 2, Denied: 1}}},
		{"one API's", store.LogFilter{APIID: "get-pet"}, []store.LogPolicyCount{
			{PolicyID: "p1", Total: 4, Allowed: 1, Denied: 3}, {PolicyID: "p2", Total: 1, Allowed: 1}}},
		{"denials", store.LogFilter{Allowed: no()}, []store.LogPolicyCount{
			{PolicyID: "", Total: 1, Denied: 1}, {PolicyID: "p1", Total: 4, Denied: 4}, {PolicyID: "p2", Total: 1, Denied: 1}}},
		{"none", store.LogFilter{Subject: "nobody"}, []store.LogPolicyCount{}},
	} {
		got, err := s.CountLog(ctx, gw, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	got, err := s.CountLog(ctx, store.LogStream{Name: "decisions", TenantID: "t3", Key: "gw"}, store.LogFilter{})
	if err != nil || len(got) != 0 {
		t.Errorf("a tenant without logs: %+v %v", got, err)
	}
}

// testLogSearchFollow: writers append batches concurrently while a
// follower polls for the entries newer than the newest it has seen
// (paging back to it, as a page may not hold them all); it must see every
// entry once, in the listing's order.
func testLogSearchFollow(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := ctxT(t)
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	const writers, batches, per = 4, 20, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				batch := make([]json.RawMessage, per)
				for i := range batch {
					batch[i] = json.RawMessage(fmt.Sprintf(`{"w":%d,"b":%d,"i":%d,"result":{"allowed":%t}}`, w, b, i, i%2 == 0))
				}
				if err := s.AppendLog(ctx, gw, batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(errs); close(done) }()
	var seen []string // oldest first
	since := ""
	poll := func() {
		var fresh []*store.LogEntry
		after := ""
		for {
			p, err := s.ListLog(ctx, store.LogQuery{Stream: gw, Limit: 7, After: after, Filter: store.LogFilter{Since: since}})
			if err != nil {
				t.Fatal(err)
			}
			fresh = append(fresh, p.Items...)
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		for i := len(fresh) - 1; i >= 0; i-- {
			seen = append(seen, fresh[i].ID)
		}
		if len(fresh) > 0 {
			since = fresh[0].ID
		}
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		poll()
	}
	for err := range errs {
		t.Fatal(err)
	}
	all, err := s.ListLog(ctx, store.LogQuery{Stream: gw})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, 0, len(all.Items))
	for i := len(all.Items) - 1; i >= 0; i-- {
		want = append(want, all.Items[i].ID)
	}
	if len(want) != writers*batches*per {
		t.Fatalf("%d entries stored, want %d", len(want), writers*batches*per)
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("the follower saw %d entries (%d stored): gaps or repeats", len(seen), len(want))
	}
}
