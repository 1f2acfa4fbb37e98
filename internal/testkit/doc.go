// Package testkit is the shared kit of Gatehouse's tests: one way to wait
// for a condition (Eventually, Receive), to get a store (Store,
// PostgresStore) and seed it (the object builders, Create, Write, Edit),
// and to talk JSON to an HTTP API (HTTPClient). Package jwtkit, next to
// it, signs tokens and serves their key set.
//
// Tests wait by polling a condition that says what it saw, never by
// sleeping: when the wait times out, the failure names what was awaited
// and the last state observed.
//
// testkit depends only on the store, its backends and the model, so the
// internal tests of any package above them (bundles, envoy, gateway, …)
// can use it without an import cycle.
package testkit
