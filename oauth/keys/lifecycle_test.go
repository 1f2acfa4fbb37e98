package keys

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/pgtest"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// t0 is the fake clock's origin.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const ns = time.Nanosecond

// backends runs fn on an embedded store and on PostgreSQL (skipped when
// PostgreSQL is not installed), each with tenants acme and globex.
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	for name, open := range map[string]func(testing.TB) store.Store{
		"embedded": func(t testing.TB) store.Store { return testkit.Store(t) },
		"postgres": func(t testing.TB) store.Store { return testkit.PostgresStore(t) },
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			testkit.Create(t, st, testkit.Tenant("acme"), testkit.Tenant("globex"))
			fn(t, st)
		})
	}
}

// fakeSet builds a set whose keys activate at acts (ECDSA keys, in order),
// with the given retention; keys are created at their activation time.
func fakeSet(t *testing.T, m *Manager, retention time.Duration, acts ...time.Time) *Set {
	t.Helper()
	var keys []storedKey
	for i, at := range acts {
		g, err := generate(KeyTypeECDSA)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := m.box.Seal(g.pkcs8, aad("acme", "default", g.kid))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, storedKey{Seq: int64(i), KID: g.kid, Alg: string(g.alg), CreatedAt: at, ActivatesAt: at, PublicKey: g.pkix, SealedPrivateKey: sealed})
	}
	return m.set("acme", "default", 1, Policy{Retention: retention}, keys)
}

// states is the state of every shown key at now, by position in the set
// ("" for a removed key).
func states(s *Set, now time.Time) []State {
	out := make([]State, len(s.keys))
	for _, info := range s.Keys(now) {
		for i := range s.keys {
			if s.keys[i].KID == info.KID {
				out[i] = info.State
			}
		}
	}
	return out
}

func equalStates(a, b []State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStateMachineBoundaries walks a three-key set across every transition
// and checks the state of each key an instant before, at, and after it.
func TestStateMachineBoundaries(t *testing.T) {
	m := NewManager(nil, testkit.SecretBox(t))
	const ret = time.Hour
	a1, a2, a3 := t0, t0.Add(10*time.Minute), t0.Add(20*time.Minute)
	s := fakeSet(t, m, ret, a1, a2, a3)
	P, A, R, X := StatePending, StateActive, StateRetiring, State("")
	for _, c := range []struct {
		name string
		at   time.Time
		want []State
	}{
		{"before the first key (a clock behind the writer): the oldest is active", a1.Add(-time.Hour), []State{A, P, P}},
		{"first key activates", a1, []State{A, P, P}},
		{"just before the second activates", a2.Add(-ns), []State{A, P, P}},
		{"second activates, first retires", a2, []State{R, A, P}},
		{"just before the third activates", a3.Add(-ns), []State{R, A, P}},
		{"third activates", a3, []State{R, R, A}},
		{"just before the first is removed", a2.Add(ret - ns), []State{R, R, A}},
		{"first removed", a2.Add(ret), []State{X, R, A}},
		{"just before the second is removed", a3.Add(ret - ns), []State{X, R, A}},
		{"second removed", a3.Add(ret), []State{X, X, A}},
		{"long after: the newest stays active", a3.Add(1000 * time.Hour), []State{X, X, A}},
	} {
		got := states(s, c.at)
		if !equalStates(got, c.want) {
			t.Errorf("%s: states %v, want %v", c.name, got, c.want)
		}
		active := 0
		for _, st := range got {
			if st == A {
				active++
			}
		}
		if active != 1 {
			t.Errorf("%s: %d active keys", c.name, active)
		}
		k, err := s.Signer(c.at)
		if err != nil {
			t.Fatalf("%s: signer: %v", c.name, err)
		}
		for i, st := range c.want {
			if st == A && k.ID() != s.keys[i].KID {
				t.Errorf("%s: signer is %s, want key %d (%s)", c.name, k.ID(), i, s.keys[i].KID)
			}
		}
	}

	// Metadata: retires_at is the next key's activation, expires_at that
	// plus the retention; the newest key has neither.
	infos := s.Keys(a3)
	if len(infos) != 3 {
		t.Fatalf("keys at a3: %d", len(infos))
	}
	if !infos[0].RetiresAt.Equal(a2) || !infos[0].ExpiresAt.Equal(a2.Add(ret)) {
		t.Errorf("first key: retires %v expires %v", infos[0].RetiresAt, infos[0].ExpiresAt)
	}
	if !infos[1].RetiresAt.Equal(a3) || !infos[1].ExpiresAt.Equal(a3.Add(ret)) {
		t.Errorf("second key: retires %v expires %v", infos[1].RetiresAt, infos[1].ExpiresAt)
	}
	if infos[2].RetiresAt != nil || infos[2].ExpiresAt != nil || !infos[2].ActivatesAt.Equal(a3) {
		t.Errorf("newest key: %+v", infos[2])
	}

	// A zero retention removes a key the instant its successor activates.
	s0 := fakeSet(t, m, 0, a1, a2)
	if got := states(s0, a2.Add(-ns)); !equalStates(got, []State{A, P}) {
		t.Errorf("retention 0 before: %v", got)
	}
	if got := states(s0, a2); !equalStates(got, []State{X, A}) {
		t.Errorf("retention 0 at activation: %v", got)
	}

	empty := m.set("acme", "default", 0, Policy{}, nil)
	if _, err := empty.Signer(t0); !errors.Is(err, ErrNoKeys) {
		t.Errorf("empty set signer: %v", err)
	}
	if js, err := empty.JWKS(t0); err != nil || string(js) != `{"keys":[]}` {
		t.Errorf("empty JWKS: %s %v", js, err)
	}
}

// TestRotationTimeline drives the store-backed lifecycle with a fake clock.
func TestRotationTimeline(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		m := NewManager(st, testkit.SecretBox(t))
		p := Policy{KeyType: KeyTypeECDSA, ActivationDelay: 5 * time.Minute, Retention: time.Hour}

		s, err := m.Load(ctx, "acme", "default", p)
		if err != nil || s.Revision != 0 || s.Len() != 0 {
			t.Fatalf("load before any key: %+v %v", s, err)
		}
		// The first key is active at once, despite the activation delay.
		s, err = m.Ensure(ctx, "acme", "default", Rotation{Policy: p, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		k1 := s.Keys(t0)
		if len(k1) != 1 || k1[0].State != StateActive || !k1[0].ActivatesAt.Equal(t0) || !k1[0].CreatedAt.Equal(t0) || k1[0].Alg != "ES256" {
			t.Fatalf("first key: %+v", k1)
		}
		kid1 := k1[0].KID
		// Ensure again: no new key.
		if s2, err := m.Ensure(ctx, "acme", "default", Rotation{Policy: p, Now: t0.Add(time.Minute)}); err != nil || s2.Len() != 1 || s2.Revision != s.Revision {
			t.Fatalf("second ensure: %v %v", s2, err)
		}

		rot := t0.Add(time.Minute)
		s, added, err := m.Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: rot, Actor: "user:alice"})
		if err != nil {
			t.Fatal(err)
		}
		act := rot.Add(5 * time.Minute)
		if added.State != StatePending || !added.ActivatesAt.Equal(act) || !added.CreatedAt.Equal(rot) || added.KID == kid1 {
			t.Fatalf("rotated key: %+v", added)
		}
		// Reload from the store: what a replica sees.
		for _, c := range []struct {
			at           time.Time
			signer       string
			kids         []string // JWKS, active first
			states       []State
			removedFirst bool
		}{
			{rot, kid1, []string{kid1, added.KID}, []State{StateActive, StatePending}, false},
			{act.Add(-ns), kid1, []string{kid1, added.KID}, []State{StateActive, StatePending}, false},
			{act, added.KID, []string{added.KID, kid1}, []State{StateRetiring, StateActive}, false},
			{act.Add(time.Hour - ns), added.KID, []string{added.KID, kid1}, []State{StateRetiring, StateActive}, false},
			{act.Add(time.Hour), added.KID, []string{added.KID}, []State{StateActive}, true},
		} {
			s, err := m.Load(ctx, "acme", "default", p)
			if err != nil {
				t.Fatal(err)
			}
			k, err := s.Signer(c.at)
			if err != nil || k.ID() != c.signer {
				t.Errorf("at %v: signer %v %v, want %s", c.at, k, err, c.signer)
			}
			if got := jwksKids(t, s, c.at); !equalStrings(got, c.kids) {
				t.Errorf("at %v: JWKS kids %v, want %v", c.at, got, c.kids)
			}
			var got []State
			for _, info := range s.Keys(c.at) {
				got = append(got, info.State)
			}
			if !equalStates(got, c.states) {
				t.Errorf("at %v: states %v, want %v", c.at, got, c.states)
			}
		}

		// The removed key is still stored until a write prunes it.
		s, _ = m.Load(ctx, "acme", "default", p)
		if s.Len() != 2 {
			t.Fatalf("stored keys before prune: %d", s.Len())
		}
		if n, err := m.Prune(ctx, "acme", "default", p, act.Add(time.Hour-ns)); err != nil || n != 0 {
			t.Fatalf("prune too early: %d %v", n, err)
		}
		if s2, _ := m.Load(ctx, "acme", "default", p); s2.Revision != s.Revision {
			t.Fatal("a prune that removed nothing wrote the set")
		}
		if n, err := m.Prune(ctx, "acme", "default", p, act.Add(time.Hour)); err != nil || n != 1 {
			t.Fatalf("prune: %d %v", n, err)
		}
		s, _ = m.Load(ctx, "acme", "default", p)
		if s.Len() != 1 || s.Keys(act.Add(time.Hour))[0].KID != added.KID {
			t.Fatalf("after prune: %+v", s.Keys(act.Add(time.Hour)))
		}

		// A rotation with delay 0 activates at once and retires the
		// active key at that instant.
		now := act.Add(2 * time.Hour)
		s, k3, err := m.Rotate(ctx, "acme", "default", Rotation{Policy: Policy{KeyType: KeyTypeRSA, Retention: time.Hour}, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if k3.State != StateActive || k3.Alg != "RS256" {
			t.Fatalf("delay-0 rotation: %+v", k3)
		}
		infos := s.Keys(now)
		if len(infos) != 2 || infos[0].State != StateRetiring || !infos[0].RetiresAt.Equal(now) {
			t.Fatalf("after delay-0 rotation: %+v", infos)
		}
		if k, _ := s.Signer(now); k.ID() != k3.KID || k.SignatureAlgorithm() != "RS256" {
			t.Fatalf("signer after delay-0 rotation: %v", k)
		}
	})
}

// TestRotateWhilePending: a second rotation while a key is pending never
// activates before the pending one (keys activate in rotation order), and
// the newest rotation ends up active.
func TestRotateWhilePending(t *testing.T) {
	st := testkit.Store(t)
	testkit.Create(t, st, testkit.Tenant("acme"))
	ctx := context.Background()
	m := NewManager(st, testkit.SecretBox(t))
	long := Policy{KeyType: KeyTypeECDSA, ActivationDelay: 10 * time.Minute, Retention: time.Hour}
	short := long
	short.ActivationDelay = time.Minute
	if _, err := m.Ensure(ctx, "acme", "s", Rotation{Policy: long, Now: t0}); err != nil {
		t.Fatal(err)
	}
	_, k2, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: long, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	s, k3, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: short, Now: t0.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if !k3.ActivatesAt.Equal(k2.ActivatesAt) {
		t.Fatalf("k3 activates at %v, before k2 (%v)", k3.ActivatesAt, k2.ActivatesAt)
	}
	if got := states(s, t0.Add(2*time.Minute)); !equalStates(got, []State{StateActive, StatePending, StatePending}) {
		t.Fatalf("after the short rotation's delay: %v", got)
	}
	if got := states(s, k2.ActivatesAt); !equalStates(got, []State{StateRetiring, StateRetiring, StateActive}) {
		t.Fatalf("at activation: %v", got)
	}
	if k, _ := s.Signer(k2.ActivatesAt); k.ID() != k3.KID {
		t.Fatalf("signer %s, want the newest %s", k.ID(), k3.KID)
	}
}

func TestRotateErrors(t *testing.T) {
	st := testkit.Store(t)
	testkit.Create(t, st, testkit.Tenant("acme"))
	ctx := context.Background()
	m := NewManager(st, testkit.SecretBox(t))
	p := Policy{KeyType: KeyTypeECDSA, Retention: time.Hour}

	for name, bad := range map[string]Policy{
		"key_type":             {KeyType: "dsa"},
		"key_activation_delay": {ActivationDelay: -time.Second},
		"TTL":                  {Retention: -time.Second},
	} {
		if _, _, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: bad, Now: t0}); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, _, err := m.Rotate(ctx, "nobody", "s", Rotation{Policy: p, Now: t0}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown tenant: %v", err)
	}
	s, _, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: p, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	// If-Match: a stale revision writes nothing; the current one works.
	if _, _, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: p, Now: t0, IfMatch: s.Revision + 100}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale If-Match: %v", err)
	}
	if s2, _ := m.Load(ctx, "acme", "s", p); s2.Revision != s.Revision || s2.Len() != 1 {
		t.Fatal("a stale If-Match wrote the set")
	}
	if s2, _, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: p, Now: t0, IfMatch: s.Revision}); err != nil || s2.Len() != 2 {
		t.Fatalf("current If-Match: %v", err)
	}
	// InTx failing aborts the write.
	boom := errors.New("boom")
	if _, _, err := m.Rotate(ctx, "acme", "s", Rotation{Policy: p, Now: t0, InTx: func(context.Context, store.Tx, *Set, KeyInfo) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("InTx error: %v", err)
	}
	if s2, _ := m.Load(ctx, "acme", "s", p); s2.Len() != 2 {
		t.Fatalf("a failed InTx left %d keys", s2.Len())
	}
	// Delete removes the set; deleting again is not an error.
	for range 2 {
		testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error { return Delete(ctx, tx, "acme", "s") })
	}
	if s2, _ := m.Load(ctx, "acme", "s", p); s2.Len() != 0 || s2.Revision != 0 {
		t.Fatal("Delete left the set")
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
