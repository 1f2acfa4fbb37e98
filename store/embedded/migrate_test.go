package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-dev/gatehouse/store"
)

// TestOpenKeepsBundleRevisions: a data file from before the
// bundle_revisions bucket, holding bundle revisions as runtime state,
// keeps them when opened (unchanged content keeps its revision) and loses
// the old state.
func TestOpenKeepsBundleRevisions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutState(ctx, "gateway-status", "acme", "edge", json.RawMessage(`{"seen":1}`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Make it the old layout: no bucket, the revisions in runtime state.
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketBundleRevs); err != nil {
			return err
		}
		for id, v := range map[string]string{"edge": `{"hash":"h-edge","revision":7}`, "broken": `{"nope":1}`} {
			body, _ := json.Marshal(store.StateEntry{Kind: legacyBundleStateKind, TenantID: "acme", ID: id, Value: json.RawMessage(v), UpdatedAt: now()})
			if err := tx.Bucket(bucketState).Put(key(legacyBundleStateKind, "acme", id), body); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = Open(ctx, dir)
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
	if _, err := s.GetState(ctx, legacyBundleStateKind, "acme", "edge"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the old runtime state is still there: %v", err)
	}
	if _, err := s.GetState(ctx, "gateway-status", "acme", "edge"); err != nil {
		t.Fatalf("other runtime state was lost: %v", err)
	}
}

// TestOpenIndexesChildren: a data file from before the children index
// gets it at open, from the live objects (soft-deleted ones left out).
func TestOpenIndexesChildren(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		for _, id := range []string{"b", "a", "gone"} {
			if err := tx.Create(ctx, &store.Object{Kind: "members", TenantID: "t1", ID: id, ParentID: "g1", Spec: json.RawMessage(`{}`)}); err != nil {
				return err
			}
		}
		_, err := tx.Delete(ctx, "members", "t1", "gone", 0, true)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketChildren) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page, err := s.List(ctx, store.Query{Kind: "members", TenantID: "t1", ParentID: "g1"})
	if err != nil || len(page.Items) != 2 || page.Items[0].ID != "a" || page.Items[1].ID != "b" {
		t.Fatalf("children after the upgrade: %+v %v", page, err)
	}
}
