package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store"
)

// TestMigrationKeepsBundleRevisions: a database of the schema before
// gh_bundle_revisions, holding bundle revisions as runtime state, keeps
// them through the upgrade (unchanged content keeps its revision) and
// loses the old state.
func TestMigrationKeepsBundleRevisions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url, conn := databaseAt(t, ctx, 2)
	_, err := conn.Exec(ctx, `INSERT INTO gh_state (kind, tenant_id, id, value, updated_at) VALUES
		('bundle-revisions', 'acme', 'edge', '{"hash":"h-edge","revision":7}', now()),
		('bundle-revisions', 'acme', 'broken', '{"nope":1}', now()),
		('gateway-status', 'acme', 'edge', '{"seen":1}', now())`)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rev, err := s.ClaimBundleRevision(ctx, "acme", "edge", "h-edge", 40); err != nil || rev != 7 {
		t.Fatalf("unchanged content after the upgrade: revision %d, %v; want 7", rev, err)
	}
	if _, err := s.ClaimBundleRevision(ctx, "acme", "edge", "h-other", 7); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("older content after the upgrade: %v, want ErrConflict", err)
	}
	if rev, err := s.ClaimBundleRevision(ctx, "acme", "broken", "h", 41); err != nil || rev != 41 {
		t.Fatalf("a malformed old record is not carried over: %d, %v", rev, err)
	}
	if _, err := s.GetState(ctx, "bundle-revisions", "acme", "edge"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the old runtime state is still there: %v", err)
	}
	if _, err := s.GetState(ctx, "gateway-status", "acme", "edge"); err != nil {
		t.Fatalf("other runtime state was lost: %v", err)
	}
}
