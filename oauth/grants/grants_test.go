package grants_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// backends runs fn on an embedded store and on PostgreSQL (skipped when
// PostgreSQL is not available).
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	for name, open := range map[string]func(testing.TB) store.Store{
		"embedded": func(t testing.TB) store.Store { return testkit.Store(t) },
		"postgres": func(t testing.TB) store.Store { return testkit.PostgresStore(t) },
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			testkit.Create(t, st, testkit.Tenant("acme"))
			fn(t, st)
		})
	}
}

var revRepo = store.Repo[model.TokenRevocationSpec]{Kind: model.KindTokenRevocation}

func revocationsOf(t *testing.T, st store.Store, tid string) []*store.Typed[model.TokenRevocationSpec] {
	t.Helper()
	items, err := revRepo.ListAll(context.Background(), st, store.Query{TenantID: tid})
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func TestRevokeJTIIsIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		for range 2 {
			testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
				return grants.RevokeJTI(ctx, tx, "acme", "https://gh/acme/default", "j1", exp)
			})
		}
		revs := revocationsOf(t, st, "acme")
		if len(revs) != 1 {
			t.Fatalf("%d revocations after revoking one jti twice, want 1", len(revs))
		}
		s := revs[0].Spec
		if s.JTI != "j1" || s.Issuer != "https://gh/acme/default" || !s.ExpiresAt.Equal(exp) || s.NotBefore != nil {
			t.Fatalf("revocation %+v", s)
		}
		// An empty transaction: writing the same revocation again wrote nothing.
		rev := testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
			return grants.RevokeJTI(ctx, tx, "acme", "https://gh/acme/default", "j1", exp)
		})
		if rev != 0 {
			t.Fatalf("a repeated revocation wrote revision %d", rev)
		}
	})
}

func TestRevokeSubjectMovesLaterOnly(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		t0 := time.Now().UTC().Truncate(time.Second)
		revoke := func(nb, until time.Time) {
			testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
				return grants.RevokeSubject(ctx, tx, "acme", "iss", "alice", "web", nb, until)
			})
		}
		revoke(t0, t0.Add(time.Hour))
		revoke(t0.Add(-time.Minute), t0.Add(30*time.Minute)) // earlier: no change
		revs := revocationsOf(t, st, "acme")
		if len(revs) != 1 || !revs[0].Spec.NotBefore.Equal(t0) || !revs[0].Spec.ExpiresAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("revocations %+v", revs)
		}
		revoke(t0.Add(time.Minute), t0.Add(2*time.Hour))
		revs = revocationsOf(t, st, "acme")
		if len(revs) != 1 || !revs[0].Spec.NotBefore.Equal(t0.Add(time.Minute)) || !revs[0].Spec.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("revocations after a later one %+v", revs[0].Spec)
		}
		if revs[0].Spec.ClientID != "web" || revs[0].Spec.Subject != "alice" {
			t.Fatalf("revocation %+v", revs[0].Spec)
		}
		// Another client of the same subject is another revocation.
		testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
			return grants.RevokeSubject(ctx, tx, "acme", "iss", "alice", "", t0, t0.Add(time.Hour))
		})
		if n := len(revocationsOf(t, st, "acme")); n != 2 {
			t.Fatalf("%d revocations, want 2", n)
		}
	})
}

func accessToken(jti, server, client string, exp time.Time) *grants.AccessToken {
	return &grants.AccessToken{JTI: jti, ServerID: server, Issuer: "https://gh/acme/" + server, ClientID: client,
		Subject: "alice", SubjectType: grants.SubjectUser, FamilyID: "fam-" + client, IssuedAt: time.Now(), ExpiresAt: exp}
}

func TestRevokeClientRevokesItsUnexpiredAccessTokensOnly(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		recs := grants.NewRecords(st, nil)
		exp := time.Now().Add(time.Hour)
		for _, tok := range []*grants.AccessToken{
			accessToken("a1", "default", "web", exp),
			accessToken("a2", "default", "web", exp),
			accessToken("b1", "default", "cli", exp),                                     // another client
			accessToken("c1", "other", "web", exp),                                       // another server, same client id
			accessToken("e1", "default", "web", exp.Add(-time.Hour+50*time.Millisecond)), // expires soon
		} {
			if err := recs.PutAccessToken(ctx, "acme", tok); err != nil {
				t.Fatal(err)
			}
		}
		testkit.Eventually(t, 5*time.Second, func() error {
			_, err := recs.AccessToken(ctx, "acme", "e1")
			return testkit.Check(errors.Is(err, store.ErrNotFound), "e1 still live: %v", err)
		})
		testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
			return grants.RevokeClient(ctx, tx, st, "acme", "default", "web", "https://gh/acme/default")
		})
		got := map[string]bool{}
		for _, r := range revocationsOf(t, st, "acme") {
			got[r.Spec.JTI] = true
			if r.Spec.Issuer != "https://gh/acme/default" {
				t.Fatalf("revocation of %s has issuer %s", r.Spec.JTI, r.Spec.Issuer)
			}
		}
		if len(got) != 2 || !got["a1"] || !got["a2"] {
			t.Fatalf("revoked %v, want a1 and a2", got)
		}
	})
}

func TestCodesAndRefreshTokensAreSingleUse(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		recs := grants.NewRecords(st, nil)
		if err := recs.PutCode(ctx, "acme", "the-code", &grants.Code{AuthRequestID: "r", FamilyID: "f", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		// Not stored in clear.
		if _, err := st.GetState(ctx, grants.KindCodes, "acme", "the-code"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("code stored under its clear value: %v", err)
		}
		rt := &grants.RefreshToken{FamilyID: "f", ExpiresAt: time.Now().Add(time.Hour)}
		var codes, marks atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				if _, ok, err := recs.TakeCode(ctx, "acme", "the-code"); err == nil && ok {
					codes.Add(1)
				}
				if ok, err := recs.MarkRefreshUsed(ctx, "acme", grants.Hash("rt"), rt); err == nil && ok {
					marks.Add(1)
				}
			})
		}
		wg.Wait()
		if codes.Load() != 1 || marks.Load() != 1 {
			t.Fatalf("%d code takes and %d refresh marks won, want 1 each", codes.Load(), marks.Load())
		}
	})
}

func TestRevokeFamily(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		recs := grants.NewRecords(st, nil)
		exp := time.Now().Add(time.Hour)
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(recs.PutAccessToken(ctx, "acme", accessToken("a1", "default", "web", exp)))
		must(recs.PutAccessToken(ctx, "acme", accessToken("b1", "default", "cli", exp)))
		must(recs.PutRefreshToken(ctx, "acme", "r-web", &grants.RefreshToken{ServerID: "default", ClientID: "web", FamilyID: "fam-web", ExpiresAt: exp}))
		must(recs.PutRefreshToken(ctx, "acme", "r-cli", &grants.RefreshToken{ServerID: "default", ClientID: "cli", FamilyID: "fam-cli", ExpiresAt: exp}))
		must(recs.RevokeFamily(ctx, st, "acme", "fam-web", grants.ReasonRevoked, exp))

		if _, err := recs.RefreshToken(ctx, "acme", "r-web"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the family's refresh token survived: %v", err)
		}
		if _, err := recs.RefreshToken(ctx, "acme", "r-cli"); err != nil {
			t.Fatalf("another family's refresh token: %v", err)
		}
		if ok, _ := recs.FamilyRevoked(ctx, "acme", "fam-web"); !ok {
			t.Fatal("family not marked revoked")
		}
		revs := revocationsOf(t, st, "acme")
		if len(revs) != 1 || revs[0].Spec.JTI != "a1" {
			t.Fatalf("revocations %+v, want a1", revs)
		}
	})
}

// Time-ordered ids sort by their time and are unique within one
// millisecond (80 random bits).
func TestTimeOrderedIDs(t *testing.T) {
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	maxOfPrevious, maxOfThis := "", ""
	for ms := range 20 {
		at := base.Add(time.Duration(ms) * time.Millisecond)
		maxOfPrevious, maxOfThis = maxOfThis, ""
		for range 10 {
			id, err := grants.NewTimeOrderedID(at)
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
				t.Fatalf("id %q: want 32 lowercase hex digits", id)
			}
			if seen[id] {
				t.Fatalf("id %q made twice", id)
			}
			seen[id] = true
			if id <= maxOfPrevious {
				t.Fatalf("id %q of a later millisecond sorts before %q", id, maxOfPrevious)
			}
			if want := fmt.Sprintf("%012x", at.UnixMilli()); id[:12] != want {
				t.Fatalf("id %q: time prefix %s, want %s", id, id[:12], want)
			}
			maxOfThis = max(maxOfThis, id)
		}
	}
}
