package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-dev/gatehouse/store"
)

// Entries appended before the index held their fields (an empty index
// value) are found by every filter all the same, read from the entry.
func TestLogSearchReadsEntriesOfTheOldIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	events := []json.RawMessage{
		json.RawMessage(`{"n":0,"decision_id":"a","result":{"allowed":true,"policy_id":"p1","api_id":"x","http_status":200}}`),
		json.RawMessage(`{"n":1,"decision_id":"b","result":{"allowed":false,"policy_id":"p1","api_id":"x","http_status":403},"input":{"gatehouse":{"token":{"subject":"bob"}}}}`),
	}
	if err := s.AppendLog(ctx, gw, events); err != nil {
		t.Fatal(err)
	}
	prefix := logPrefix(gw)
	err = s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLogIx).Cursor()
		var keys [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := tx.Bucket(bucketLogIx).Put(k, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(ctx, gw, []json.RawMessage{json.RawMessage(`{"n":2,"decision_id":"c","result":{"allowed":false,"policy_id":"p2"}}`)}); err != nil {
		t.Fatal(err)
	}
	deny := false
	all, err := s.ListLog(ctx, store.LogQuery{Stream: gw})
	if err != nil || len(all.Items) != 3 {
		t.Fatalf("%v %v", all, err)
	}
	for _, c := range []struct {
		f    store.LogFilter
		want []string
	}{
		{store.LogFilter{Allowed: &deny}, []string{"c", "b"}},
		{store.LogFilter{Subject: "bob", HTTPStatus: 403, APIID: "x", PolicyID: "p1"}, []string{"b"}},
		{store.LogFilter{DecisionID: "a"}, []string{"a"}},
		{store.LogFilter{To: all.Items[1].Time}, []string{"b", "a"}},
		{store.LogFilter{From: all.Items[0].Time.Add(time.Nanosecond)}, nil},
	} {
		p, err := s.ListLog(ctx, store.LogQuery{Stream: gw, Filter: c.f, WithTotal: true})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range p.Items {
			var v struct {
				ID string `json:"decision_id"`
			}
			_ = json.Unmarshal(e.Data, &v)
			got = append(got, v.ID)
		}
		if !slices.Equal(got, c.want) || p.Total != len(c.want) {
			t.Errorf("%+v: %v (total %d), want %v", c.f, got, p.Total, c.want)
		}
	}
	counts, err := s.CountLog(ctx, gw, store.LogFilter{})
	if want := []store.LogPolicyCount{{PolicyID: "p1", Total: 2, Allowed: 1, Denied: 1}, {PolicyID: "p2", Total: 1, Denied: 1}}; err != nil || !slices.Equal(counts, want) {
		t.Fatalf("counts %+v %v, want %+v", counts, err, want)
	}
}

// An entry is never given a time before the newest entry's, so that a
// window's bounds can be found by seq: a clock gone back keeps the newest
// time.
func TestLogTimesDoNotGoBack(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	future := now().Add(time.Hour)
	// An entry from "the future" (as if the clock was an hour ahead when
	// it was appended), written as AppendLog writes it.
	err = s.db.Update(func(tx *bolt.Tx) error {
		seq, err := tx.Bucket(bucketLogs).NextSequence()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(store.LogEntry{ID: "1", Time: future, Data: json.RawMessage(`{"n":0}`)})
		if err := tx.Bucket(bucketLogs).Put(u64(seq), body); err != nil {
			return err
		}
		return tx.Bucket(bucketLogIx).Put(append(logPrefix(gw), u64(seq)...), encodeLogMeta(future, &store.DecisionFields{}))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLog(ctx, gw, []json.RawMessage{json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	p, err := s.ListLog(ctx, store.LogQuery{Stream: gw})
	if err != nil || len(p.Items) != 2 || !p.Items[0].Time.Equal(future) {
		t.Fatalf("after a clock gone back: %+v %v, want both at %v", p, err, future)
	}
}

// A count over a large window ends with the caller's context: the total
// of a listing and the counts per policy both walk the whole window.
func TestLogSearchStopsAtTheCallersContext(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gw := store.LogStream{Name: "decisions", TenantID: "t1", Key: "gw"}
	events := make([]json.RawMessage, 10000)
	for i := range events {
		events[i] = json.RawMessage(`{"decision_id":"d","result":{"allowed":true,"policy_id":"p1"}}`)
	}
	if err := s.AppendLog(ctx, gw, events); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ListLog(ended, store.LogQuery{Stream: gw, Limit: 1, WithTotal: true}); err == nil {
		t.Fatal("a total over 10,000 events outlived its context")
	}
	if _, err := s.CountLog(ended, gw, store.LogFilter{}); err == nil {
		t.Fatal("counts over 10,000 events outlived their context")
	}
	page, err := s.ListLog(ctx, store.LogQuery{Stream: gw, Limit: 1, WithTotal: true})
	if err != nil || page.Total != len(events) {
		t.Fatalf("total %v (%v)", page, err)
	}
}
