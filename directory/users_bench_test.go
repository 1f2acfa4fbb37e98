package directory_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

// benchUsers is the directory size of the benchmarks (WAVE2: 100k users).
const benchUsers = 100_000

// seedUsers creates n users u000000… of tenant tid, each with a mapping
// of identity provider corp, in transactions of 1,000.
func seedUsers(tb testing.TB, st store.Store, tid string, from, n int) {
	tb.Helper()
	seed(tb, st, tid, from, n, true)
}

// seed is seedUsers; without mappings, it writes the users alone (no
// subject markers either: what a listing reads, three times faster).
func seed(tb testing.TB, st store.Store, tid string, from, n int, mappings bool) {
	tb.Helper()
	ctx := context.Background()
	for start := from; start < from+n; start += 1000 {
		_, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			for i := start; i < min(start+1000, from+n); i++ {
				u := &store.Typed[model.UserSpec]{
					Meta: store.Object{TenantID: tid, ID: fmt.Sprintf("u%06d", i)},
					Spec: model.UserSpec{Email: fmt.Sprintf("user%d@example.com", i), State: model.UserActive, GivenName: "User", FamilyName: strconv.Itoa(i)},
				}
				if !mappings {
					u.Meta.Name = model.NormalizeEmail(u.Spec.Email)
					u.Spec.Subject = u.Meta.Name
					if err := directory.Users.Create(ctx, tx, u); err != nil {
						return err
					}
					continue
				}
				if err := directory.CreateUser(ctx, tx, u); err != nil {
					return err
				}
				if _, err := directory.AddMapping(ctx, tx, tid, u.Meta.ID, "corp", fmt.Sprintf("corp|%d", i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("seed users %d…: %v", start, err)
		}
	}
}

// benchStores are the stores of the benchmarks: embedded, and PostgreSQL
// when GATEHOUSE_TEST_DATABASE_URL names a server (a throwaway server
// would take minutes per run to seed).
type benchStore struct {
	name string
	st   store.Store
}

var (
	storesOnce sync.Once
	stores     []benchStore
	storesErr  error
	cleanup    []func()
)

// binaryTB is a testing.TB whose cleanups run when the test binary
// ends (TestMain), not when the benchmark that made them does.
type binaryTB struct{ testing.TB }

func (binaryTB) Cleanup(f func()) { cleanup = append(cleanup, f) }

// seededStores opens and seeds the stores once per test binary.
func seededStores(b *testing.B) []benchStore {
	b.Helper()
	storesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "directory-bench-")
		if err != nil {
			storesErr = err
			return
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		em, err := embedded.Open(context.Background(), dir)
		if err != nil {
			storesErr = err
			return
		}
		cleanup = append(cleanup, func() { em.Close() })
		stores = append(stores, benchStore{"embedded", em})
		var dsn string
		if os.Getenv(pgtest.EnvDatabaseURL) != "" {
			// The database outlives this benchmark: every benchmark of the
			// binary reads it, and TestMain drops it.
			tb := binaryTB{b}
			dsn = pgtest.NewDatabase(tb)
			stores = append(stores, benchStore{"postgres", testkit.OpenPostgres(tb, dsn)})
		}
		for _, s := range stores {
			start := time.Now()
			for from := 0; from < benchUsers; from += 10_000 {
				seedUsers(b, s.st, "acme", from, 10_000)
				if s.name == "postgres" {
					// A fresh database has no statistics: without them the
					// planner scans the growing table for every
					// uniqueness check of the seeding (autovacuum would
					// analyze it later, in its own time).
					analyze(b, dsn)
				}
			}
			b.Logf("%s: %d users seeded in %s", s.name, benchUsers, time.Since(start).Round(time.Millisecond))
		}
	})
	if storesErr != nil {
		b.Fatal(storesErr)
	}
	return stores
}

// analyze updates the planner statistics of the PostgreSQL database at
// dsn.
func analyze(tb testing.TB, dsn string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkUserLookup finds one user among 100,000 by email and by
// identity mapping (WAVE2 target: ≤ 1 ms).
func BenchmarkUserLookup(b *testing.B) {
	ctx := context.Background()
	for _, s := range seededStores(b) {
		b.Run(s.name+"/email", func(b *testing.B) {
			i := 0
			for b.Loop() {
				n := (i * 7919) % benchUsers
				u, err := directory.UserByEmail(ctx, s.st, "acme", fmt.Sprintf("USER%d@example.com", n))
				if err != nil || u.Meta.ID != fmt.Sprintf("u%06d", n) {
					b.Fatalf("user %d: %v", n, err)
				}
				i++
			}
		})
		b.Run(s.name+"/mapping", func(b *testing.B) {
			i := 0
			for b.Loop() {
				n := (i * 7919) % benchUsers
				u, err := directory.UserByMapping(ctx, s.st, "acme", "corp", fmt.Sprintf("corp|%d", n))
				if err != nil || u.Meta.ID != fmt.Sprintf("u%06d", n) {
					b.Fatalf("user %d: %v", n, err)
				}
				i++
			}
		})
	}
}

// BenchmarkListUsersPage reads one page of 100 users among 100,000 (a
// page in the middle of the listing), as GET /users does.
func BenchmarkListUsersPage(b *testing.B) {
	ctx := context.Background()
	for _, s := range seededStores(b) {
		mid := store.EncodeObjectCursor(&store.Object{ID: fmt.Sprintf("u%06d", benchUsers/2)})
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				users, pg, err := directory.ListUsers(ctx, s.st, "acme", directory.UserFilter{}, 100, mid)
				if err != nil || len(users) != 100 || pg.Total != benchUsers {
					b.Fatalf("%d users, total %d: %v", len(users), pg.Total, err)
				}
			}
		})
	}
}

// listAll pages through the users of tid (pages of 100) and returns how
// often each id was listed.
func listAll(tb testing.TB, st store.Store, tid string, betweenPages func(next string)) map[string]int {
	tb.Helper()
	seen := map[string]int{}
	after := ""
	for {
		if after != "" && betweenPages != nil {
			betweenPages(after)
		}
		users, pg, err := directory.ListUsers(context.Background(), st, tid, directory.UserFilter{}, 100, after)
		if err != nil {
			tb.Fatal(err)
		}
		for _, u := range users {
			seen[u.Meta.ID]++
		}
		if pg.Next == "" {
			return seen
		}
		after = pg.Next
	}
}

// TestListUsersIsStableUnderInserts pages through the users (pages of
// 100) while other users are created all the time, before and after the
// cursor: every user that existed before the listing began is listed
// exactly once, and no user twice. 20,000 users on the embedded store and
// 5,000 on PostgreSQL (whose seeding takes longer) by default;
// GATEHOUSE_DIRECTORY_USERS=100000 runs the size on both.
func TestListUsersIsStableUnderInserts(t *testing.T) {
	sizes := map[string]int{"embedded": 20_000, "postgres": 5_000}
	if testing.Short() {
		sizes = map[string]int{"embedded": 2_000, "postgres": 1_000}
	}
	if v := os.Getenv("GATEHOUSE_DIRECTORY_USERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("GATEHOUSE_DIRECTORY_USERS=%q", v)
		}
		sizes = map[string]int{"embedded": n, "postgres": n}
	}
	run := func(t *testing.T, st store.Store, n int) {
		start := time.Now()
		seed(t, st, "acme", 0, n, false)
		seeded := time.Since(start)
		create := func(ctx context.Context, id string) error {
			_, err := st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
				return directory.CreateUser(ctx, tx, &store.Typed[model.UserSpec]{
					Meta: store.Object{TenantID: "acme", ID: id},
					Spec: model.UserSpec{Email: id + "@example.com", State: model.UserActive},
				})
			})
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var concurrent atomic.Int64
		done := make(chan error, 1)
		go func() {
			// A steady stream of users landing anywhere in id order ("u"
			// ids interleave with the seeded ones), racing the pages.
			for i := 0; ctx.Err() == nil; i++ {
				if err := create(ctx, fmt.Sprintf("u%06d-new%d", (i*7919)%n, i)); err != nil && ctx.Err() == nil {
					done <- err
					return
				}
				concurrent.Add(1)
				time.Sleep(time.Millisecond)
			}
			done <- nil
		}()
		// Between two pages, one user lands just after the cursor (it
		// must be on a later page) and one before it (it must not be).
		var ahead, behind []string
		between := func(next string) {
			cur, err := store.DecodeObjectCursor(next)
			if err != nil {
				t.Fatal(err)
			}
			k := len(ahead)
			ahead = append(ahead, fmt.Sprintf("%s~ahead%d", cur.ID, k))
			behind = append(behind, fmt.Sprintf("u000000~behind%d", k))
			for _, id := range []string{ahead[k], behind[k]} {
				if err := create(context.Background(), id); err != nil {
					t.Fatal(err)
				}
			}
		}
		start = time.Now()
		seen := listAll(t, st, "acme", between)
		listed := time.Since(start)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if id := fmt.Sprintf("u%06d", i); seen[id] != 1 {
				t.Fatalf("seeded user %s listed %d times", id, seen[id])
			}
		}
		for _, id := range ahead {
			if seen[id] != 1 {
				t.Fatalf("user %s, created just after the cursor, listed %d times", id, seen[id])
			}
		}
		for _, id := range behind {
			if seen[id] != 0 {
				t.Fatalf("user %s, created before the cursor, listed %d times", id, seen[id])
			}
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("user %s listed %d times", id, c)
			}
		}
		if len(ahead) < n/100-1 {
			t.Fatalf("%d pages for %d users", len(ahead)+1, n)
		}
		t.Logf("%d users listed in %s by pages of 100 (%d seeded in %s; %d created between pages, %d concurrently)",
			len(seen), listed.Round(time.Millisecond), n, seeded.Round(time.Millisecond), 2*len(ahead), concurrent.Load())
	}
	t.Run("embedded", func(t *testing.T) {
		st, err := embedded.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		run(t, st, sizes["embedded"])
	})
	t.Run("postgres", func(t *testing.T) {
		var dsn string
		if os.Getenv(pgtest.EnvDatabaseURL) != "" {
			dsn = pgtest.NewDatabase(t)
		} else {
			dsn = pgtest.NewServer(t).NewDatabase(t)
		}
		run(t, testkit.OpenPostgres(t, dsn), sizes["postgres"])
	})
}

func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	for i := len(cleanup) - 1; i >= 0; i-- {
		cleanup[i]()
	}
	os.Exit(code)
}
