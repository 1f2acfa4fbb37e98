package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-dev/gatehouse/store"
)

func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// holdWriter takes the writer slot (as a configuration transaction
// would) so that writes queue up; release lets them go.
func holdWriter(s *Store) (release func()) {
	s.writer <- struct{}{}
	return func() { <-s.writer }
}

// waitQueued waits until n writes are queued behind the held slot.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	for {
		s.batch.mu.Lock()
		got := len(s.batch.pending)
		s.batch.mu.Unlock()
		if got >= n {
			return
		}
		if t.Context().Err() != nil {
			t.Fatal("the writes never queued")
		}
		time.Sleep(time.Millisecond)
	}
}

func putFn(kind, id string, txIDs *sync.Map) func(*bolt.Tx) error {
	e := &store.StateEntry{Kind: kind, TenantID: "t", ID: id, Value: json.RawMessage(`{}`)}
	stamp(e, 0)
	return func(tx *bolt.Tx) error {
		txIDs.Store(id, tx.ID())
		k := key(kind, "t", id)
		old, err := readState(tx, k)
		if err != nil {
			return err
		}
		return writeState(tx, k, old, e)
	}
}

// Concurrent writes queued behind the writer share one transaction; one
// that fails gets its own error and nothing of it is written, the others
// commit.
func TestGroupCommitSharesATransactionAndIsolatesFailures(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	release := holdWriter(s)
	var txIDs sync.Map
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	boom := errors.New("boom")
	for i := range n {
		wg.Go(func() {
			fn := putFn("k", fmt.Sprint(i), &txIDs)
			if i == 7 {
				good := fn
				fn = func(tx *bolt.Tx) error {
					if err := good(tx); err != nil {
						return err
					}
					return boom // after writing: the write must not survive
				}
			}
			errs[i] = s.updateBatched(ctx, fn)
		})
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	ids := map[any]bool{}
	for i := range n {
		_, err := s.GetState(ctx, "k", "t", fmt.Sprint(i))
		switch {
		case i == 7:
			if !errors.Is(errs[i], boom) || !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("the failing write: %v, then read %v", errs[i], err)
			}
		case errs[i] != nil || err != nil:
			t.Fatalf("write %d: %v, then read %v", i, errs[i], err)
		default:
			id, _ := txIDs.Load(fmt.Sprint(i))
			ids[id] = true
		}
	}
	// The first run held all 16 (rolled back), the good 15 then committed
	// together: one transaction id among them.
	if len(ids) != 1 {
		t.Fatalf("the good writes committed in %d transactions, want 1", len(ids))
	}
}

// A write whose context ends while it is still queued is withdrawn: it
// fails and is never written.
func TestGroupCommitWithdrawsCancelledWrites(t *testing.T) {
	s := openTest(t)
	release := holdWriter(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var txIDs sync.Map
	go func() { done <- s.updateBatched(ctx, putFn("k", "gone", &txIDs)) }()
	waitQueued(t, s, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled queued write: %v", err)
	}
	release()
	if err := s.PutState(context.Background(), "k", "t", "after", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetState(context.Background(), "k", "t", "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the withdrawn write: %v", err)
	}
}

// A failure of the transaction itself (a failed disk write) is every
// write's: all of the batch fail, none is visible.
func TestGroupCommitFailsTheWholeBatchOnAWriteFault(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	release := holdWriter(s)
	fault := errors.New("disk write failed")
	SetWriteFault(s, func() error { return fault })
	var txIDs sync.Map
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.updateBatched(ctx, putFn("k", fmt.Sprint(i), &txIDs)) })
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	SetWriteFault(s, nil)
	for i := range n {
		if !errors.Is(errs[i], fault) {
			t.Fatalf("write %d under a fault: %v", i, errs[i])
		}
		if _, err := s.GetState(ctx, "k", "t", fmt.Sprint(i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("write %d is visible after a failed commit: %v", i, err)
		}
	}
}

// Many concurrent writers through the public methods: every write lands.
func TestGroupCommitUnderLoad(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const writers, each = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("%d-%d", w, i)
				if err := s.PutStateTTL(ctx, "load", "t", id, json.RawMessage(`{"v":1}`), time.Hour); err != nil {
					errs <- err
				}
				if i%4 == 0 {
					if _, ok, err := s.TakeState(ctx, "load", "t", id); err != nil || !ok {
						errs <- fmt.Errorf("take %s: %v %v", id, ok, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries, err := s.ListState(ctx, "load", "t")
	if err != nil {
		t.Fatal(err)
	}
	if want := writers * each * 3 / 4; len(entries) != want {
		t.Fatalf("%d entries, want %d", len(entries), want)
	}
}

// BenchmarkPutStateTTL: one writer at a time (the latency of a lone
// write: group commit must add nothing).
func BenchmarkPutStateTTL(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		if err := s.PutStateTTL(ctx, "bench", "t", fmt.Sprint(i), json.RawMessage(`{"v":1}`), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkPutStateTTLParallel: 16 concurrent writers.
func BenchmarkPutStateTTLParallel(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	var mu sync.Mutex
	n := 0
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			n++
			id := fmt.Sprint(n)
			mu.Unlock()
			if err := s.PutStateTTL(ctx, "bench", "t", id, json.RawMessage(`{"v":1}`), time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}
