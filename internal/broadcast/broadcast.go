// Package broadcast wakes every goroutine waiting for "something changed"
// at once: a channel per generation, closed by Notify and replaced by the
// next one.
package broadcast

import "sync"

// Broadcaster hands out the current generation's channel (Wait) and closes
// it (Notify). The zero value is ready to use; a Broadcaster must not be
// copied after first use.
//
// The usual loop reads the channel before the state it guards, so a change
// made after the read closes the channel it waits on:
//
//	for {
//		ch := b.Wait()
//		if done(state()) {
//			return
//		}
//		select {
//		case <-ch:
//		case <-ctx.Done():
//			return
//		}
//	}
type Broadcaster struct {
	mu sync.Mutex
	ch chan struct{} // nil until somebody waits
}

// Wait returns a channel that is closed at the next Notify.
func (b *Broadcaster) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify closes the channel of every Wait since the last Notify; later
// Waits get a new one.
func (b *Broadcaster) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
