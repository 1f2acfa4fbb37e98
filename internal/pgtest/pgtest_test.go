package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewDatabaseIsFreshAndDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var names []string
	t.Run("use", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			url := NewDatabase(t)
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("connect to %s: %v", url, err)
			}
			var name string
			var tables int
			err = conn.QueryRow(ctx, `SELECT current_database(),
				(SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))`).Scan(&name, &tables)
			conn.Close(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Fatalf("database %s is not empty: %d tables", name, tables)
			}
			names = append(names, name)
		}
		if names[0] == names[1] {
			t.Fatalf("two calls returned the same database %s", names[0])
		}
	})
	if len(names) != 2 {
		t.Skip("no databases to check") // "use" failed (already reported) or was skipped
	}
	conn, err := pgx.Connect(ctx, ServerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d of %v not dropped at cleanup", left, names)
	}
}

func TestWithDatabase(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://u:p@h:5432/postgres?sslmode=disable", "postgres://u:p@h:5432/gh_x?sslmode=disable"},
		{"postgresql://h/other", "postgresql://h/gh_x"},
		{"postgres://h", "postgres://h/gh_x"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=gh_x"},
	}
	for _, c := range cases {
		got, err := withDatabase(c.in, "gh_x")
		if err != nil || got != c.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// A paused server answers nothing (a query waits until its deadline) and
// answers again once resumed; the shared test server is left alone.
func TestServerPauseAndResume(t *testing.T) {
	srv := NewServer(t)
	url := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	one := func(ctx context.Context) error {
		var n int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&n)
	}
	if err := one(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = one(qctx)
	qcancel()
	if err == nil {
		t.Fatal("a paused server answered")
	}
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	c2, err := pgx.Connect(cctx, url)
	ccancel()
	if err == nil {
		c2.Close(context.Background())
		t.Fatal("a paused server accepted a connection")
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	c3, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect after resume: %v", err)
	}
	defer c3.Close(context.Background())
	var n int
	if err := c3.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("query after resume: %d, %v", n, err)
	}
}

// A killed server (SIGKILL to its postmaster) drops its connections and
// refuses new ones; restarted, it answers at the same URL with every
// acknowledged commit of a Durable server, twice over.
func TestServerKillAndRestart(t *testing.T) {
	srv := NewServer(t, Durable())
	url := srv.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (n int)"); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		for i := 0; i < 50; i++ {
			if _, err := conn.Exec(ctx, "INSERT INTO t VALUES ($1)", round*100+i); err != nil {
				t.Fatal(err)
			}
		}
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err == nil {
			t.Fatal("a connection to a killed server still answers")
		}
		conn.Close(context.Background())
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		if c, err := pgx.Connect(cctx, url); err == nil {
			c.Close(context.Background())
			t.Fatal("a killed server accepted a connection")
		}
		ccancel()
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		if conn, err = pgx.Connect(ctx, url); err != nil {
			t.Fatalf("connect after restart: %v", err)
		}
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 50*round {
			t.Fatalf("after restart %d: %d rows (%v), want %d", round, n, err, 50*round)
		}
	}
	conn.Close(context.Background())
}
