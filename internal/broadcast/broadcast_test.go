package broadcast

import (
	"sync"
	"testing"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNotifyClosesTheWaitsBeforeIt(t *testing.T) {
	var b Broadcaster
	first, again := b.Wait(), b.Wait()
	if first != again {
		t.Fatal("two Waits of one generation returned different channels")
	}
	if closed(first) {
		t.Fatal("closed before Notify")
	}
	b.Notify()
	if !closed(first) {
		t.Fatal("not closed by Notify")
	}
	next := b.Wait()
	if next == first || closed(next) {
		t.Fatal("a Wait after Notify did not get a new, open channel")
	}
	b.Notify()
	if !closed(next) {
		t.Fatal("the second generation was not closed by the second Notify")
	}
}

func TestNotifyWithoutWaitersIsHarmless(t *testing.T) {
	var b Broadcaster
	b.Notify()
	b.Notify()
	ch := b.Wait()
	if closed(ch) {
		t.Fatal("a Wait after Notifys nobody waited for is already closed")
	}
	b.Notify()
	if !closed(ch) {
		t.Fatal("not closed by Notify")
	}
}

// Every waiter wakes, and a change made before Notify is seen by a waiter
// that read the channel before the state (the pattern callers use).
func TestEveryWaiterWakesAndSeesTheChange(t *testing.T) {
	var (
		b     Broadcaster
		mu    sync.Mutex
		value int
	)
	const waiters = 50
	var started, woke sync.WaitGroup
	started.Add(waiters)
	woke.Add(waiters)
	errs := make(chan string, waiters)
	for range waiters {
		go func() {
			defer woke.Done()
			ch := b.Wait()
			mu.Lock()
			v := value
			mu.Unlock()
			started.Done()
			if v != 0 {
				return // already changed
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				errs <- "not woken"
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if value != 1 {
				errs <- "woken without the change"
			}
		}()
	}
	started.Wait()
	mu.Lock()
	value = 1
	mu.Unlock()
	b.Notify()
	woke.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// Concurrent Waits and Notifys neither race (go test -race) nor lose a
// wake-up: a Wait followed by a Notify always ends.
func TestConcurrentUse(t *testing.T) {
	var b Broadcaster
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				ch := b.Wait()
				b.Notify()
				<-ch
			}
		}()
	}
	wg.Wait()
}
