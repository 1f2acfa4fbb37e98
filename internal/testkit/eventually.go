package testkit

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition again.
const PollInterval = 10 * time.Millisecond

// Eventually checks cond every PollInterval until it returns nil and
// returns how long that took. cond returns an error describing what it
// observed while the awaited state is not there yet. When cond has not
// succeeded after timeout, Eventually fails the test with what was awaited
// (msgf: a format and its arguments) and cond's last error: the last state
// observed.
//
// Call it from the test's goroutine (it calls t.Fatalf).
func Eventually(t testing.TB, timeout time.Duration, cond func() error, msgf ...any) time.Duration {
	t.Helper()
	return EventuallyEvery(t, timeout, PollInterval, cond, msgf...)
}

// EventuallyEvery is Eventually checking every interval: for a condition
// whose check is itself heavy (a fresh compile, several requests), so the
// waiting does not load the system it waits for.
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, cond func() error, msgf ...any) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last observed: %v", timeout, describe(msgf, "the condition"), err)
			return time.Since(start)
		}
		time.Sleep(interval)
	}
}

// Check is a condition for Eventually: nil when ok, otherwise an error
// with the observed state (format and args, formatted as by fmt.Errorf).
func Check(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// Receive waits up to timeout for a value from ch and returns it; it fails
// the test when nothing arrives in time. A closed channel gives its zero
// value, as a receive does.
//
// Call it from the test's goroutine (it calls t.Fatalf).
func Receive[T any](t testing.TB, ch <-chan T, timeout time.Duration, msgf ...any) T {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", timeout, describe(msgf, "a value"))
		var zero T
		return zero
	}
}

// describe formats a message given as a format and its arguments.
func describe(msgf []any, otherwise string) string {
	if len(msgf) == 0 {
		return otherwise
	}
	if format, ok := msgf[0].(string); ok {
		return fmt.Sprintf(format, msgf[1:]...)
	}
	return fmt.Sprint(msgf...)
}
