package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
	"github.com/gatehouse-dev/gatehouse/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(ctxT(t), url)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctxT(t), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		url := pgtest.NewDatabase(t)
		return storetest.Harness{
			MultiHandle: true,
			// Every call opens a new pool and listener connection on the
			// same database, as another replica would.
			Open: func(t *testing.T) store.Store {
				s, err := postgres.Open(ctxT(t), url)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				return s
			},
		}
	})
}

func widget(kind, tenant, id string, count int) *store.Object {
	spec, _ := json.Marshal(map[string]int{"count": count})
	return &store.Object{Kind: kind, TenantID: tenant, ID: id, Spec: spec}
}

func count(o *store.Object) (int, error) {
	var spec map[string]int
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return 0, fmt.Errorf("decode spec of %s: %w", o.ID, err)
	}
	return spec["count"], nil
}

func create(t *testing.T, s store.Store, o *store.Object) int64 {
	t.Helper()
	rev, err := s.Update(ctxT(t), func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, o) })
	if err != nil {
		t.Fatalf("create %s: %v", o.ID, err)
	}
	return rev
}

func schemaVersion(t *testing.T, url string) int {
	t.Helper()
	var v int
	if err := connect(t, url).QueryRow(ctxT(t), "SELECT version FROM "+postgres.VersionTable).Scan(&v); err != nil {
		t.Fatalf("read schema version: %v", err)
	}
	return v
}

func migrationCount(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sql") {
			n++
		}
	}
	return n
}

func TestMigrationsAreIdempotent(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := ctxT(t)
	if err := postgres.Migrate(ctx, url); err != nil {
		t.Fatalf("migrate a fresh database: %v", err)
	}
	s1 := openStore(t, url)
	rev := create(t, s1, widget("widgets", "t1", "a", 1))
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2 := openStore(t, url)
	for i := 0; i < 2; i++ {
		if err := postgres.Migrate(ctx, url); err != nil {
			t.Fatalf("migrate again: %v", err)
		}
	}
	if o, err := s2.Get(ctx, "widgets", "t1", "a"); err != nil || o.Revision != rev {
		t.Fatalf("data after re-migrating: %v %+v", err, o)
	}
	if got, want := schemaVersion(t, url), migrationCount(t); got != want {
		t.Fatalf("schema version %d, want %d", got, want)
	}
	if err := s2.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func TestConcurrentOpenOnFreshDatabase(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const n = 6
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			stores[i], errs[i] = postgres.Open(context.Background(), url)
		}(i)
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: open: %v", i, err)
			continue
		}
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	if t.Failed() {
		t.FailNow()
	}
	revs := make(chan int64, n)
	for i, s := range stores {
		wg.Add(1)
		go func(i int, s *postgres.Store) {
			defer wg.Done()
			rev, err := s.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
				return tx.Create(ctx, widget("widgets", "t1", fmt.Sprint("w", i), i))
			})
			if err != nil {
				t.Errorf("store %d: write: %v", i, err)
			}
			revs <- rev
		}(i, s)
	}
	wg.Wait()
	close(revs)
	seen := map[int64]bool{}
	for r := range revs {
		if r < 1 || r > n || seen[r] {
			t.Fatalf("revisions of %d concurrent writers are not 1..%d: got %d twice or out of range", n, n, r)
		}
		seen[r] = true
	}
	if got, want := schemaVersion(t, url), migrationCount(t); got != want {
		t.Fatalf("schema version %d, want %d", got, want)
	}
}

// listenerPIDs returns the backend pids of the listener connections on
// database db.
func listenerPIDs(t *testing.T, conn *pgx.Conn, db string) map[int32]bool {
	t.Helper()
	rows, err := conn.Query(ctxT(t), `SELECT pid FROM pg_stat_activity
		WHERE datname = $1 AND application_name = $2`, db, postgres.ListenerApplicationName)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]bool{}
	for _, p := range pids {
		out[p] = true
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func expectRevisions(t *testing.T, ch <-chan store.WatchEvent, revs ...int64) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for _, want := range revs {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed, still waiting for revision %d", want)
			}
			if ev.Err != nil {
				t.Fatalf("watch error: %v", ev.Err)
			}
			if ev.Revision != want {
				t.Fatalf("watch delivered revision %d, want %d", ev.Revision, want)
			}
		case <-timeout:
			t.Fatalf("watch: revision %d did not arrive", want)
		}
	}
}

// TestWatchSurvivesListenerLoss kills the watching store's LISTEN
// connection and keeps it from reconnecting while another store commits, so
// the notifications of those commits are lost for good: the watcher must
// still deliver them (the listener wakes every watcher once it is back), and
// everything committed afterwards.
func TestWatchSurvivesListenerLoss(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := ctxT(t)
	var dbName string
	if err := connect(t, url).QueryRow(ctx, "SELECT current_database()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	// On another database: one cannot lock out the database one is on.
	admin := connect(t, pgtest.ServerURL(t))

	watcher := openStore(t, url)
	before := listenerPIDs(t, admin, dbName)
	if len(before) != 1 {
		t.Fatalf("want one listener connection, found %v", before)
	}
	writer := openStore(t, url)
	var watcherPID, writerPID int32
	for p := range before {
		watcherPID = p
	}
	for p := range listenerPIDs(t, admin, dbName) {
		if p != watcherPID {
			writerPID = p
		}
	}

	from, err := watcher.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := watcher.Watch(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	r1 := create(t, writer, widget("widgets", "t1", "w1", 1))
	expectRevisions(t, ch, r1)

	// Lock the database against new connections, then kill the listener.
	// The pools keep the connections they already have.
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), `ALTER DATABASE "`+dbName+`" ALLOW_CONNECTIONS true`)
	})
	if _, err := admin.Exec(ctx, `ALTER DATABASE "`+dbName+`" ALLOW_CONNECTIONS false`); err != nil {
		t.Fatal(err)
	}
	var killed bool
	if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", watcherPID).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate listener %d: %v %v", watcherPID, killed, err)
	}
	waitFor(t, "the listener to die", func() bool { return !listenerPIDs(t, admin, dbName)[watcherPID] })

	// Commit while the watcher has no listener: these notifications are lost.
	var lost []int64
	for i := 2; i <= 4; i++ {
		lost = append(lost, create(t, writer, widget("widgets", "t1", fmt.Sprint("w", i), i)))
	}

	// Let the listener back in; its reconnect must wake the watcher.
	if _, err := admin.Exec(ctx, `ALTER DATABASE "`+dbName+`" ALLOW_CONNECTIONS true`); err != nil {
		t.Fatal(err)
	}
	expectRevisions(t, ch, lost...)
	pids := listenerPIDs(t, admin, dbName)
	if len(pids) != 2 || pids[watcherPID] || !pids[writerPID] {
		t.Fatalf("listeners after reconnect: %v (old %d, writer's %d)", pids, watcherPID, writerPID)
	}

	// And the new listener delivers what comes next.
	var later []int64
	for i := 5; i <= 7; i++ {
		later = append(later, create(t, writer, widget("widgets", "t1", fmt.Sprint("w", i), i)))
	}
	expectRevisions(t, ch, later...)
}

func TestCloseEndsWatchers(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s, err := postgres.Open(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.Watch(ctxT(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case ev, ok := <-ch:
		if !ok || ev.Err == nil {
			t.Fatalf("after Close the watcher got %+v (open %v), want an error", ev, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watcher not ended by Close")
	}
	if _, ok := <-ch; ok {
		t.Fatal("watch channel still open after its error")
	}
	if _, err := s.Watch(ctxT(t), 0); err == nil {
		t.Fatal("Watch on a closed store succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestReadModifyWriteInTransaction: writers are serialised from the start of
// their transaction, so a read inside Update followed by an unconditional
// write (expectRevision 0) never loses a concurrent update.
func TestReadModifyWriteInTransaction(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := openStore(t, url), openStore(t, url)
	create(t, a, widget("counters", "t1", "c", 0))
	const perStore = 20
	var wg sync.WaitGroup
	for _, s := range []*postgres.Store{a, b, a, b} {
		wg.Add(1)
		go func(s *postgres.Store) {
			defer wg.Done()
			for i := 0; i < perStore; i++ {
				_, err := s.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
					cur, err := tx.Get(ctx, "counters", "t1", "c")
					if err != nil {
						return err
					}
					n, err := count(cur)
					if err != nil {
						return err
					}
					return tx.Update(ctx, widget("counters", "t1", "c", n+1), 0)
				})
				if err != nil {
					t.Errorf("increment: %v", err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	c, err := a.Get(ctxT(t), "counters", "t1", "c")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := count(c); err != nil || n != 4*perStore {
		t.Fatalf("counter is %d (%v), want %d: updates were lost", n, err, 4*perStore)
	}
}

func TestViewIsOneSnapshot(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := openStore(t, url)
	ctx := ctxT(t)
	create(t, s, widget("widgets", "t1", "a", 1))
	err := s.View(ctx, func(ctx context.Context, r store.Reader) error {
		before, err := r.Revision(ctx)
		if err != nil {
			return err
		}
		create(t, s, widget("widgets", "t1", "b", 2)) // commits outside the view
		after, err := r.Revision(ctx)
		if err != nil {
			return err
		}
		if after != before {
			return fmt.Errorf("revision moved from %d to %d inside one view", before, after)
		}
		if _, err := r.Get(ctx, "widgets", "t1", "b"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("a later commit is visible inside the view: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "widgets", "t1", "b"); err != nil {
		t.Fatalf("after the view: %v", err)
	}
}

func TestUnstorableValues(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := openStore(t, url)
	ctx := ctxT(t)
	bad := widget("widgets", "t1", "x", 0)
	bad.Description = "nul\x00byte"
	_, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, bad) })
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("NUL byte: want ErrInvalid, got %v", err)
	}
	badSpec := widget("widgets", "t1", "y", 0)
	badSpec.Spec = json.RawMessage(`{"unterminated"`)
	_, err = s.Update(ctx, func(ctx context.Context, tx store.Tx) error { return tx.Create(ctx, badSpec) })
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("invalid spec: want ErrInvalid, got %v", err)
	}
	if _, err := s.Get(ctx, "widgets", "t1", "bad\xff"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get with invalid UTF-8: want ErrNotFound, got %v", err)
	}
	// A failed call leaves the transaction usable.
	rev, err := s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		if err := tx.Create(ctx, bad); !errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("want ErrInvalid, got %v", err)
		}
		if err := tx.Update(ctx, widget("widgets", "t1", "missing", 0), 0); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("want ErrNotFound, got %v", err)
		}
		return tx.Create(ctx, widget("widgets", "t1", "ok", 1))
	})
	if err != nil || rev == 0 {
		t.Fatalf("transaction after failed calls: %d %v", rev, err)
	}
}

// TestListOrderIsByteOrder: IDs sort by bytes (the "C" collation), as in the
// embedded backend, whatever the database's default collation.
func TestListOrderIsByteOrder(t *testing.T) {
	url := pgtest.NewDatabase(t)
	s := openStore(t, url)
	ids := []string{"b", "B", "a-b", "a_b", "ab", "A", "é", "e", "Z", "_", "10", "9"}
	rev, err := s.Update(ctxT(t), func(ctx context.Context, tx store.Tx) error {
		for _, id := range ids {
			if err := tx.Create(ctx, widget("widgets", "t1", id, 0)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || rev == 0 {
		t.Fatalf("create: %v", err)
	}
	want := append([]string(nil), ids...)
	sort.Strings(want)
	var got []string
	after := ""
	for {
		page, err := s.List(ctxT(t), store.Query{Kind: "widgets", TenantID: "t1", Limit: 5, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Items {
			got = append(got, o.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list order %q, want %q", got, want)
	}
}
