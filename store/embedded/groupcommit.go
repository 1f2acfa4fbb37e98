package embedded

import (
	"context"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Group commit. Every bbolt commit costs two fdatasyncs, and the store
// has one writer, so runtime state writes issued one per request (the
// OAuth provider's records) were capped at the disk's commit rate while
// the CPUs idled. Runtime writes therefore go through updateBatched: a
// writer queues its function and waits for either its result or the
// writer slot; whoever gets the slot runs every queued function in one
// transaction (one commit) and hands each its result. A lone writer
// finds the slot free and commits at once: no timer, no added latency
// (unlike bolt.DB.Batch and its MaxBatchDelay).
//
// The functions batched must be re-runnable (a function of the
// transaction only, assigning its results afresh on every run): when one
// of them fails, the transaction is rolled back, that one runs alone so
// that it gets exactly the answer it would have had unbatched, and the
// others run again together. A failure that is no function's (the
// commit, a full disk) is every function's: none of them committed.

// maxBatch bounds the functions of one transaction.
const maxBatch = 128

// batchOp is one queued write.
type batchOp struct {
	fn   func(*bolt.Tx) error
	done chan error // buffered: the result, sent once
	// taken is set (under batcher.mu) when a leader takes the op; an op
	// not taken may still be withdrawn by its caller.
	taken bool
}

// batcher queues the writes waiting for the writer slot.
type batcher struct {
	mu      sync.Mutex
	pending []*batchOp
}

// updateBatched runs fn in a write transaction, possibly shared with
// other runtime writes (see above). Once a leader has taken fn, the call
// waits for its result even when ctx ends: a write is never reported
// failed after it committed.
func (s *Store) updateBatched(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &batchOp{fn: fn, done: make(chan error, 1)}
	s.batch.mu.Lock()
	s.batch.pending = append(s.batch.pending, op)
	s.batch.mu.Unlock()
	select {
	case err := <-op.done:
		return err
	case s.writer <- struct{}{}:
		select {
		case err := <-op.done: // a leader ran it meanwhile
			<-s.writer
			return err
		default:
		}
		s.lead()
		<-s.writer
		return <-op.done
	case <-ctx.Done():
		s.batch.mu.Lock()
		if !op.taken {
			s.batch.pending = removeOp(s.batch.pending, op)
			s.batch.mu.Unlock()
			return fmt.Errorf("embedded store: wait for the writer: %w", ctx.Err())
		}
		s.batch.mu.Unlock()
		return <-op.done
	}
}

// lead runs, holding the writer slot, the queued writes (up to maxBatch;
// those left wait for the next leader, among them their own callers).
func (s *Store) lead() {
	s.batch.mu.Lock()
	n := min(len(s.batch.pending), maxBatch)
	ops := make([]*batchOp, n)
	copy(ops, s.batch.pending[:n])
	for _, op := range ops {
		op.taken = true
	}
	s.batch.pending = append(s.batch.pending[:0], s.batch.pending[n:]...)
	s.batch.mu.Unlock()
	for len(ops) > 0 {
		failed := -1
		var fnErr error
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i, op := range ops {
				if fnErr = op.fn(tx); fnErr != nil {
					failed = i
					return fnErr
				}
			}
			if f := s.writeFault.Load(); f != nil {
				return (*f)()
			}
			return nil
		})
		if failed < 0 {
			err = classify(err, nil)
			for _, op := range ops {
				op.done <- err
			}
			return
		}
		// One function failed: it runs alone, the others again.
		alone := ops[failed]
		ops = append(ops[:failed:failed], ops[failed+1:]...)
		alone.done <- s.solo(alone.fn)
	}
}

// solo runs fn in a transaction of its own (the writer slot is held),
// failing it as a failed disk write would when a write fault is set
// (tests).
func (s *Store) solo(fn func(*bolt.Tx) error) error {
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		if fnErr = fn(tx); fnErr != nil {
			return fnErr
		}
		if f := s.writeFault.Load(); f != nil {
			return (*f)()
		}
		return nil
	})
	return classify(err, fnErr)
}

func removeOp(ops []*batchOp, op *batchOp) []*batchOp {
	for i, o := range ops {
		if o == op {
			return append(ops[:i], ops[i+1:]...)
		}
	}
	return ops
}
