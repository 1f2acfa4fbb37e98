package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/store"
)

// bundleClaimTests: ClaimBundleRevision is a compare-and-set of a
// gateway's bundle revision per content hash.
func bundleClaimTests() []test {
	return []test{
		{name: "a bundle revision claim is a compare-and-set per gateway, kept across a reopen and forgotten with the tenant", fn: testBundleRevisionClaims},
	}
}

// testBundleRevisionClaims: ClaimBundleRevision is a compare-and-set per
// gateway — the first writer of a content wins, newer content replaces
// it, older content conflicts, content that comes back gets a new
// revision — kept across a reopen and forgotten with the tenant.
func testBundleRevisionClaims(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := ctxT(t)
	before, _ := s.Revision(ctx)
	claim := func(t *testing.T, s store.Store, tid, gw, hash string, candidate, want int64) {
		t.Helper()
		got, err := s.ClaimBundleRevision(ctx, tid, gw, hash, candidate)
		if err != nil || got != want {
			t.Fatalf("claim %s/%s %s at %d: %d, %v; want %d", tid, gw, hash, candidate, got, err, want)
		}
	}
	conflict := func(t *testing.T, s store.Store, tid, gw, hash string, candidate int64) {
		t.Helper()
		if got, err := s.ClaimBundleRevision(ctx, tid, gw, hash, candidate); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("claim %s/%s %s at %d: %d, %v; want ErrConflict", tid, gw, hash, candidate, got, err)
		}
	}
	if !t.Run("a claim without tenant, gateway, hash or a positive revision is invalid", func(t *testing.T) {
		for _, bad := range []struct {
			tid, gw, hash string
			rev           int64
		}{{"t1", "", "h", 1}, {"", "gw", "h", 1}, {"t1", "gw", "", 1}, {"t1", "gw", "h", 0}, {"t1", "gw", "h", -3}, {"t1", "g\x00w", "h", 1}} {
			if _, err := s.ClaimBundleRevision(ctx, bad.tid, bad.gw, bad.hash, bad.rev); !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("claim %+v: %v, want ErrInvalid", bad, err)
			}
		}
	}) {
		return
	}
	if !t.Run("the first claim wins, newer content replaces it, older content conflicts", func(t *testing.T) {
		claim(t, s, "t1", "gw", "h1", 10, 10) // first claim records
		claim(t, s, "t1", "gw", "h1", 12, 10) // the same content keeps its revision, whoever asks
		claim(t, s, "t1", "gw", "h1", 3, 10)
		conflict(t, s, "t1", "gw", "h2", 10) // other content from a snapshot not newer
		conflict(t, s, "t1", "gw", "h2", 9)
		claim(t, s, "t1", "gw", "h1", 11, 10) // the conflicts changed nothing
		claim(t, s, "t1", "gw", "h2", 15, 15) // newer content replaces
		claim(t, s, "t1", "gw", "h2", 30, 15)
		conflict(t, s, "t1", "gw", "h1", 12)  // the old content from an old snapshot
		claim(t, s, "t1", "gw", "h1", 20, 20) // content that comes back gets a new, greater revision
		conflict(t, s, "t1", "gw", "h2", 20)
		// Gateways and tenants are independent.
		claim(t, s, "t1", "other", "h1", 3, 3)
		claim(t, s, "t2", "gw", "h1", 4, 4)
		claim(t, s, "t1", "gw", "h1", 25, 20)
		if after, _ := s.Revision(ctx); after != before {
			t.Fatal("bundle revision claims must not move the store revision")
		}
	}) {
		return
	}

	// On a multi-handle backend half of the concurrent claims go through a
	// second handle, as another replica would.
	handles := []store.Store{s}
	if h.MultiHandle {
		s2 := open(t, h)
		handles = append(handles, s2)
	}
	const n = 16
	if !t.Run("concurrent claims of one content agree on one revision", func(t *testing.T) {
		var wg sync.WaitGroup
		revs := make([]int64, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				revs[i], errs[i] = handles[i%len(handles)].ClaimBundleRevision(ctx, "t1", "race", "same", int64(100+i))
			}(i)
		}
		wg.Wait()
		for i := 0; i < n; i++ {
			if errs[i] != nil || revs[i] != revs[0] || revs[0] < 100 || revs[0] >= 100+n {
				t.Fatalf("concurrent claims of one content: %v %v", revs, errs)
			}
		}
	}) {
		return
	}
	if !t.Run("concurrent claims of two contents leave one recorded, the others conflicting or agreeing", func(t *testing.T) {
		var wg sync.WaitGroup
		results := make([]string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				hash := fmt.Sprintf("c%d", i%2)
				rev, err := handles[i%len(handles)].ClaimBundleRevision(ctx, "t1", "race2", hash, 500)
				switch {
				case err == nil:
					results[i] = fmt.Sprintf("%s@%d", hash, rev)
				case errors.Is(err, store.ErrConflict):
					results[i] = "conflict"
				default:
					results[i] = err.Error()
				}
			}(i)
		}
		wg.Wait()
		winner := ""
		for _, r := range results {
			switch {
			case r == "conflict":
			case winner == "" && (r == "c0@500" || r == "c1@500"):
				winner = r
			case r != winner:
				t.Fatalf("concurrent claims of two contents at one revision: %v", results)
			}
		}
		if winner == "" {
			t.Fatalf("no concurrent claim won: %v", results)
		}
	}) {
		return
	}

	for _, h := range handles[1:] {
		_ = h.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, h)
	if !t.Run("claims are kept across a reopen", func(t *testing.T) {
		claim(t, s, "t1", "gw", "h1", 40, 20)
		conflict(t, s, "t1", "gw", "h2", 19)
	}) {
		return
	}
	t.Run("deleting a tenant forgets its claims, not another tenant's", func(t *testing.T) {
		mustUpdate(t, s, func(ctx context.Context, tx store.Tx) error { _, err := tx.DeleteTenant(ctx, "t1"); return err })
		claim(t, s, "t1", "gw", "h2", 5, 5)
		claim(t, s, "t2", "gw", "h1", 50, 4)
	})
}
