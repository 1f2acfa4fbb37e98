package tests

import "testing"

// The end-to-end tests run their scripts as t.Run steps. A helper bound
// to the test (a client, a process) must fail the step it is called from,
// not the test above it: on rebinds it.

// on is c failing t instead of the test it was made for.
func (c *client) on(t *testing.T) *client {
	cp := *c
	cp.t = t
	return &cp
}

// on is p failing t (in stop) instead of the test that started it; the
// process still ends with that test.
func (p *process) on(t *testing.T) *process {
	cp := *p
	cp.t = t
	return &cp
}
