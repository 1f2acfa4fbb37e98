package embedded_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/storetest"
)

// The conformance suite holds for the store behind WithDeadline too: the
// wrapper forwards every call faithfully.
func TestConformanceWithDeadline(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		dir := t.TempDir()
		return storetest.Harness{Open: func(t *testing.T) store.Store {
			s, err := embedded.Open(context.Background(), dir)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			return store.WithDeadline(s, 10*time.Second)
		}}
	})
}

func openEmbedded(t *testing.T) (*embedded.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

// enospc is the error a write to a full file system returns.
func enospc(dir string) func() error {
	return func() error {
		return &os.PathError{Op: "write", Path: filepath.Join(dir, embedded.FileName), Err: syscall.ENOSPC}
	}
}

func TestClassifyStorageFull(t *testing.T) {
	resize := fmt.Errorf("file resize error: %s", syscall.ENOSPC) // how bbolt reports a failed grow
	for _, tc := range []struct {
		name  string
		err   error
		fnErr error
		full  bool
	}{
		{"wrapped ENOSPC", fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), nil, true},
		{"quota", &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, nil, true},
		{"bbolt resize message", resize, nil, true},
		{"other I/O error", &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}, nil, false},
		{"the transaction's own error naming ENOSPC in text", resize, resize, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := embedded.Classify(tc.err, tc.fnErr)
			if full := errors.Is(got, store.ErrStorageFull); full != tc.full {
				t.Fatalf("classify(%v): storage full %v, want %v", tc.err, full, tc.full)
			}
			if !errors.Is(got, tc.err) {
				t.Fatalf("classify lost the cause: %v", got)
			}
		})
	}
}

// A full disk fails writes with ErrStorageFull (keeping the errno), keeps
// nothing of them, leaves reads working, and makes Ping through
// WithDeadline fail until a write succeeds again.
func TestStorageFull(t *testing.T) {
	raw, dir := openEmbedded(t)
	st := store.WithDeadline(raw, 5*time.Second)
	ctx := context.Background()
	spec, _ := json.Marshal(map[string]int{"n": 1})
	if _, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, &store.Object{Kind: "widgets", TenantID: "t1", ID: "a", Spec: spec})
	}); err != nil {
		t.Fatal(err)
	}
	rev, _ := st.Revision(ctx)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("ping before the disk fills: %v", err)
	}

	embedded.SetWriteFault(raw, enospc(dir))
	_, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, &store.Object{Kind: "widgets", TenantID: "t1", ID: "b", Spec: spec})
	})
	if !errors.Is(err, store.ErrStorageFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("update on a full disk: %v, want ErrStorageFull wrapping ENOSPC", err)
	}
	if err := st.PutState(ctx, "k", "t1", "x", json.RawMessage(`{}`)); !errors.Is(err, store.ErrStorageFull) {
		t.Fatalf("put state on a full disk: %v", err)
	}
	if err := st.AppendLog(ctx, store.LogStream{Name: "l", TenantID: "t1", Key: "g"}, []json.RawMessage{json.RawMessage(`{}`)}); !errors.Is(err, store.ErrStorageFull) {
		t.Fatalf("append log on a full disk: %v", err)
	}
	if _, err := st.Get(ctx, "widgets", "t1", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failed write left something: %v", err)
	}
	if _, err := st.GetState(ctx, "k", "t1", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failed state write left something: %v", err)
	}
	if got, _ := st.Revision(ctx); got != rev {
		t.Fatalf("revision moved from %d to %d", rev, got)
	}
	if _, err := st.Get(ctx, "widgets", "t1", "a"); err != nil {
		t.Fatalf("reads must keep working on a full disk: %v", err)
	}
	if !st.StorageFull() {
		t.Fatal("the store does not know it is full")
	}
	for range 2 { // it stays failed while the disk stays full
		if err := st.Ping(ctx); !errors.Is(err, store.ErrStorageFull) {
			t.Fatalf("ping on a full disk: %v, want ErrStorageFull", err)
		}
	}

	embedded.SetWriteFault(raw, nil) // space is back
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("ping once space is back: %v", err)
	}
	if st.StorageFull() {
		t.Fatal("still full after a successful probe")
	}
	if _, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, &store.Object{Kind: "widgets", TenantID: "t1", ID: "b", Spec: spec})
	}); err != nil {
		t.Fatalf("write once space is back: %v", err)
	}
}

// A writer that waits for another's transaction gives up at its deadline
// (bbolt's own writer lock would make it wait for ever), as ErrUnavailable
// through WithDeadline; the caller's own cancellation stays a cancellation.
func TestWriterWaitIsBounded(t *testing.T) {
	raw, _ := openEmbedded(t)
	st := store.WithDeadline(raw, 200*time.Millisecond)
	ctx := context.Background()
	inside, release := make(chan struct{}), make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		_, err := raw.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			close(inside)
			<-release
			return nil
		})
		holder <- err
	}()
	<-inside
	start := time.Now()
	err := st.PutState(ctx, "k", "", "x", json.RawMessage(`{}`))
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked write: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the blocked write took %s with a 200ms deadline", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := st.Update(cctx, func(ctx context.Context, tx store.Tx) error { return nil }); !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("cancelled write: %v, want the cancellation", err)
	}
	close(release)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	if err := st.PutState(ctx, "k", "", "x", json.RawMessage(`{}`)); err != nil {
		t.Fatalf("write after the holder finished: %v", err)
	}
}

// sliceError is an error whose dynamic type cannot be compared with ==.
type sliceError []string

func (e sliceError) Error() string { return "problems" }

// TestUpdateReturnsAnUncomparableErrorAsItIs: a transaction failing with
// an error list (a slice type) gets it back, without a panic.
func TestUpdateReturnsAnUncomparableErrorAsItIs(t *testing.T) {
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := sliceError{"a", "b"}
	_, err = st.Update(context.Background(), func(ctx context.Context, tx store.Tx) error { return want })
	var got sliceError
	if !errors.As(err, &got) || len(got) != 2 {
		t.Fatalf("Update returned %v, want the transaction's error list", err)
	}
}
