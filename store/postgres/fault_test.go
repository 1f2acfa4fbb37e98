package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
)

func TestClassify(t *testing.T) {
	// A real connection failure: nothing listens on the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, connErr := pgx.Connect(ctxT(t), "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=5")
	if connErr == nil {
		t.Fatal("connected to a closed port")
	}
	for _, tc := range []struct {
		name              string
		err               error
		unavailable, full bool
	}{
		{"connection refused", fmt.Errorf("begin: %w", connErr), true, false},
		{"disk full", &pgconn.PgError{Code: "53100", Message: "could not extend file"}, false, true},
		{"statement timeout", &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"}, true, false},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, true, false},
		{"connection exception", &pgconn.PgError{Code: "08006"}, true, false},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false, false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), true, false},
		{"the caller cancelled", fmt.Errorf("query: %w", context.Canceled), false, false},
		{"not found", fmt.Errorf("x: %w", store.ErrNotFound), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := postgres.Classify(tc.err)
			if u := errors.Is(got, store.ErrUnavailable); u != tc.unavailable {
				t.Errorf("unavailable = %v, want %v (%v)", u, tc.unavailable, got)
			}
			if f := errors.Is(got, store.ErrStorageFull); f != tc.full {
				t.Errorf("storage full = %v, want %v (%v)", f, tc.full, got)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("the cause is lost: %v", got)
			}
		})
	}
}

// With the database hung (every server process stopped), each call
// through WithDeadline fails with ErrUnavailable within a bound instead of
// waiting; once the database resumes, calls succeed again and a watcher
// started before the hang delivers what is committed after it.
func TestHungDatabase(t *testing.T) {
	const timeout = 500 * time.Millisecond
	srv := pgtest.NewServer(t)
	url := srv.NewDatabase(t)
	ctx := ctxT(t)
	raw, err := postgres.OpenWith(ctx, url, postgres.Options{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	st := store.WithDeadline(raw, timeout)
	rev := create(t, st, widget("widgets", "t1", "a", 1))
	watch, err := st.Watch(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	bounded := func(op string, call func() error) {
		t.Helper()
		start := time.Now()
		err := call()
		if d := time.Since(start); d > 3*timeout {
			t.Errorf("%s took %s against a hung database (deadline %s)", op, d, timeout)
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", op, err)
		}
	}
	bounded("get", func() error { _, err := st.Get(ctx, "widgets", "t1", "a"); return err })
	bounded("list", func() error { _, err := st.List(ctx, store.Query{Kind: "widgets", TenantID: "t1"}); return err })
	bounded("update", func() error {
		_, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, widget("widgets", "t1", "b", 2)) })
		return err
	})
	bounded("view", func() error {
		return st.View(ctx, func(ctx context.Context, r store.Reader) error { _, err := r.Revision(ctx); return err })
	})
	bounded("put state", func() error { return st.PutState(ctx, "k", "t1", "x", []byte(`{}`)) })
	bounded("ping", func() error { return st.Ping(ctx) })

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to answer again", func() bool { return st.Ping(ctx) == nil })
	if _, err := st.Get(ctx, "widgets", "t1", "a"); err != nil {
		t.Fatalf("get after the database resumed: %v", err)
	}
	// The write that timed out during the hang may or may not have
	// committed; write another and expect the watcher to deliver every
	// revision after rev, ending with it.
	next := create(t, st, widget("widgets", "t1", "c", 3))
	deadline := time.After(30 * time.Second)
	for seen := rev; seen < next; {
		select {
		case ev, ok := <-watch:
			if !ok {
				t.Fatal("the watch ended")
			}
			if ev.Err != nil {
				// The change feed may end with the hang; it must say why.
				if !errors.Is(ev.Err, store.ErrUnavailable) {
					t.Fatalf("watch error: %v", ev.Err)
				}
				if watch, err = st.Watch(ctx, seen); err != nil {
					t.Fatal(err)
				}
				continue
			}
			seen = ev.Revision
		case <-deadline:
			t.Fatalf("the watcher did not deliver revision %d", next)
		}
	}
}

// statement_timeout guards the database side even without a caller's
// deadline: a writer that waits for the revision lock another session
// holds is cancelled by the server.
func TestStatementTimeout(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := ctxT(t)
	s, err := postgres.OpenWith(ctx, url, postgres.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	holder := connect(t, url)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT 1 FROM gh_revision FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return tx.Create(ctx, widget("widgets", "t1", "a", 1))
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a writer blocked on the revision lock: %v, want statement_timeout (57014) as ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("statement_timeout took %s", d)
	}
	// A statement_timeout given in the URL wins.
	s2, err := postgres.OpenWith(ctx, url+"&statement_timeout=0", postgres.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	uctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = s2.Update(uctx, func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, widget("widgets", "t1", "a", 1)) })
	if !errors.As(err, &pgErr) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with statement_timeout=0 the writer must wait for the caller's deadline: %v", err)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "57014" {
		t.Fatalf("the URL's statement_timeout=0 was overridden: %v", err)
	}
}
