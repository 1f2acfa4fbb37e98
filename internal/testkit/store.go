package testkit

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

// Store returns an empty embedded store in a directory of its own, closed
// when the test ends.
func Store(t testing.TB) *embedded.Store {
	t.Helper()
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("open an embedded store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// PostgresStore returns a store on a fresh, empty PostgreSQL database
// (from internal/pgtest), closed when the test ends; the database is
// dropped after that. Without PostgreSQL the test is skipped (see
// pgtest). The test binary's TestMain must call pgtest.Main, which stops
// the throwaway server pgtest starts.
func PostgresStore(t testing.TB) *postgres.Store {
	t.Helper()
	return OpenPostgres(t, pgtest.NewDatabase(t))
}

// OpenPostgres opens a store on the PostgreSQL database at url (applying
// the migrations, as a control plane does), closed when the test ends.
func OpenPostgres(t testing.TB, url string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("open a PostgreSQL store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// SecretBox returns a box sealing with a fixed test master key.
func SecretBox(t testing.TB) *secretbox.Box {
	t.Helper()
	box, err := secretbox.New(bytes.Repeat([]byte{7}, secretbox.KeySize))
	if err != nil {
		t.Fatalf("secretbox: %v", err)
	}
	return box
}

// Write runs fn in one store transaction and returns its revision; it
// fails the test when the transaction fails.
func Write(t testing.TB, st store.Store, fn func(ctx context.Context, tx store.Tx) error) int64 {
	t.Helper()
	rev, err := st.Update(context.Background(), fn)
	if err != nil {
		t.Fatalf("store write: %v", err)
	}
	return rev
}

// Create stores objs in one transaction and returns its revision (the
// objects' envelopes are filled in); it fails the test when the
// transaction fails.
func Create(t testing.TB, st store.Store, objs ...*store.Object) int64 {
	t.Helper()
	return Write(t, st, func(ctx context.Context, tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
}

// Edit changes the spec of the live object kind/tid/id in one transaction
// (decoded into S, changed by fn, written back unconditionally) and
// returns the transaction's revision; it fails the test when the object is
// missing or the write fails.
func Edit[S any](t testing.TB, st store.Store, kind, tid, id string, fn func(*S)) int64 {
	t.Helper()
	repo := store.Repo[S]{Kind: kind}
	return Write(t, st, func(ctx context.Context, tx store.Tx) error {
		o, err := repo.Get(ctx, tx, tid, id)
		if err != nil {
			return err
		}
		fn(&o.Spec)
		return repo.Update(ctx, tx, o, 0)
	})
}
