package postgres

import (
	"context"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	tern "github.com/jackc/tern/v2/migrate"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TestMigrationMakesOldDecisionsSearchable: decision events stored before
// the search columns existed are found by the filters and counted after
// the upgrade, as new ones are.
func TestMigrationMakesOldDecisionsSearchable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url, conn := databaseAt(t, ctx, 5)
	_, err := conn.Exec(ctx, `INSERT INTO gh_logs (stream, tenant_id, key, time, data) VALUES
		('decisions', 'acme', 'edge', now(), '{"decision_id":"old-1","result":{"allowed":false,"http_status":403,"api_id":"get-pet","policy_id":"p1"},"input":{"gatehouse":{"token":{"subject":"bob"}}}}'),
		('decisions', 'acme', 'edge', now(), '{"decision_id":"old-2","result":{"allowed":true,"http_status":200,"api_id":"get-pet","policy_id":"p1"}}'),
		('decisions', 'acme', 'edge', now(), '{"decision_id":"old-3","result":"not an object"}')`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gw := store.LogStream{Name: "decisions", TenantID: "acme", Key: "edge"}
	denied := false
	p, err := s.ListLog(ctx, store.LogQuery{Stream: gw, WithTotal: true, Filter: store.LogFilter{Allowed: &denied, Subject: "bob", HTTPStatus: 403, APIID: "get-pet", PolicyID: "p1", DecisionID: "old-1"}})
	if err != nil || len(p.Items) != 1 || p.Total != 1 {
		t.Fatalf("an old denial: %+v %v", p, err)
	}
	counts, err := s.CountLog(ctx, gw, store.LogFilter{})
	if want := []store.LogPolicyCount{{PolicyID: "", Total: 1}, {PolicyID: "p1", Total: 2, Allowed: 1, Denied: 1}}; err != nil || !slices.Equal(counts, want) {
		t.Fatalf("counts %+v %v, want %+v", counts, err, want)
	}
}

// databaseAt is a fresh database migrated to version (the schema of an
// older control plane), and a connection to it, closed when the test ends.
func databaseAt(t *testing.T, ctx context.Context, version int32) (string, *pgx.Conn) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	m, err := tern.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	files, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(files); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, version); err != nil {
		t.Fatal(err)
	}
	return url, conn
}
