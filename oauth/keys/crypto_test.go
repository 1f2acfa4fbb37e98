package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
	"github.com/gatehouse-dev/gatehouse/store/embedded"
)

// jwksKids are the kids of s's JWKS at now, in order, after a JSON round
// trip, checking every key's published fields on the way.
func jwksKids(t *testing.T, s *Set, now time.Time) []string {
	t.Helper()
	raw, err := s.JWKS(now)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("JWKS %s: %v", raw, err)
	}
	kids := []string{}
	for _, k := range doc.Keys {
		if k["use"] != "sig" {
			t.Errorf("key %v: use %v", k["kid"], k["use"])
		}
		switch k["alg"] {
		case "RS256":
			if k["kty"] != "RSA" || k["n"] == nil || k["e"] == nil {
				t.Errorf("RS256 key %v", k)
			}
		case "ES256":
			if k["kty"] != "EC" || k["crv"] != "P-256" || k["x"] == nil || k["y"] == nil {
				t.Errorf("ES256 key %v", k)
			}
		default:
			t.Errorf("key %v: alg %v", k["kid"], k["alg"])
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %v publishes private member %q", k["kid"], private)
			}
		}
		kid, _ := k["kid"].(string)
		kids = append(kids, kid)
	}
	return kids
}

// sign makes a JWT with the key active at now, through go-jose as the
// provider does.
func sign(t *testing.T, s *Set, now time.Time, sub string) (string, *SigningKey) {
	t.Helper()
	k, err := s.Signer(now)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.SignatureAlgorithm(), Key: k.Key()},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID()))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"sub": sub, "iss": "https://gh.example/acme/default"})
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok, k
}

// verify checks tok with golang-jwt against a published JWKS document.
func verify(jwks []byte, tok string) (string, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return "", err
	}
	parsed, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		ks := set.Key(kid)
		if len(ks) != 1 {
			return nil, fmt.Errorf("kid %q not in the JWKS", kid)
		}
		if ks[0].Algorithm != tk.Method.Alg() {
			return nil, fmt.Errorf("kid %q is %s, token is %s", kid, ks[0].Algorithm, tk.Method.Alg())
		}
		return ks[0].Key, nil
	}, jwt.WithValidMethods([]string{"RS256", "ES256"}))
	if err != nil {
		return "", err
	}
	return parsed.Claims.GetSubject()
}

// TestSignaturesVerifyWithJWKS: tokens signed by the active key verify
// with the published JWKS, for RS256 and ES256, through a rotation, and
// stop verifying once their key is removed.
func TestSignaturesVerifyWithJWKS(t *testing.T) {
	for _, kt := range []KeyType{KeyTypeRSA, KeyTypeECDSA} {
		t.Run(string(kt), func(t *testing.T) {
			st := testkit.Store(t)
			testkit.Create(t, st, testkit.Tenant("acme"))
			ctx := context.Background()
			m := NewManager(st, testkit.SecretBox(t))
			p := Policy{KeyType: kt, ActivationDelay: 5 * time.Minute, Retention: time.Hour}
			s, err := m.Ensure(ctx, "acme", "default", Rotation{Policy: p, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			old, k1 := sign(t, s, t0, "alice")
			want := map[KeyType]string{KeyTypeRSA: "RS256", KeyTypeECDSA: "ES256"}[kt]
			if string(k1.SignatureAlgorithm()) != want {
				t.Fatalf("alg %s", k1.SignatureAlgorithm())
			}
			switch k1.Key().(type) {
			case *rsa.PrivateKey:
				if kt != KeyTypeRSA || k1.Key().(*rsa.PrivateKey).N.BitLen() < RSABits {
					t.Fatalf("RSA key for %s", kt)
				}
			case *ecdsa.PrivateKey:
				if kt != KeyTypeECDSA || k1.Key().(*ecdsa.PrivateKey).Curve.Params().Name != "P-256" {
					t.Fatalf("EC key for %s", kt)
				}
			}
			jwks0, _ := s.JWKS(t0)
			if sub, err := verify(jwks0, old); err != nil || sub != "alice" {
				t.Fatalf("verify: %q %v", sub, err)
			}

			s, _, err = m.Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			act := t0.Add(5 * time.Minute)
			// A verifier holding the JWKS from before the new key
			// activates can verify tokens the new key signs.
			early, _ := s.JWKS(t0)
			s, _ = m.Load(ctx, "acme", "default", p)
			fresh, k2 := sign(t, s, act, "bob")
			if k2.ID() == k1.ID() {
				t.Fatal("the new key did not become the signer")
			}
			if sub, err := verify(early, fresh); err != nil || sub != "bob" {
				t.Fatalf("new key's token with the pending-time JWKS: %q %v", sub, err)
			}
			// The retiring key's tokens still verify...
			retiring, _ := s.JWKS(act.Add(time.Hour - ns))
			if _, err := verify(retiring, old); err != nil {
				t.Fatalf("retiring key's token: %v", err)
			}
			// ...until it is removed.
			after, _ := s.JWKS(act.Add(time.Hour))
			if _, err := verify(after, old); err == nil {
				t.Fatal("a removed key's token verified")
			}
			if _, err := verify(after, fresh); err != nil {
				t.Fatalf("active key's token after the removal: %v", err)
			}
			// A token whose signature was tampered with does not verify.
			parts := strings.Split(fresh, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[0] ^= 1
			if _, err := verify(after, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig)); err == nil {
				t.Fatal("a tampered token verified")
			}
		})
	}
}

// TestSealedAtRest: what the store writes (the spec, and the database
// file itself) holds no private key in clear; a sealed key opens only for
// its own tenant, server and kid.
func TestSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Create(t, st, testkit.Tenant("acme"))
	box := testkit.SecretBox(t)
	m := NewManager(st, box)
	var secrets [][]byte // private material, in every encoding we can think of
	for _, kt := range []KeyType{KeyTypeRSA, KeyTypeECDSA} {
		p := Policy{KeyType: kt, Retention: time.Hour}
		s, _, err := m.Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.Signer(t0)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Key())
		if err != nil {
			t.Fatal(err)
		}
		var d []byte
		switch key := k.Key().(type) {
		case *rsa.PrivateKey:
			d = key.D.Bytes()
			secrets = append(secrets, key.Primes[0].Bytes(), key.Primes[1].Bytes())
		case *ecdsa.PrivateKey:
			d, _ = key.Bytes()
		}
		secrets = append(secrets, der, d,
			[]byte(base64.StdEncoding.EncodeToString(der)), []byte(base64.StdEncoding.EncodeToString(d)),
			[]byte(base64.RawURLEncoding.EncodeToString(d)), []byte(hex.EncodeToString(d)))
	}
	obj, err := st.Get(ctx, Kind, "acme", "default")
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := json.Marshal(obj)
	check := func(where string, data []byte) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(data, s[:min(len(s), 32)]) {
				t.Errorf("%s holds private key material in clear", where)
			}
		}
	}
	check("the stored object", whole)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	files := 0
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files++
			check(path, data)
		}
		return nil
	})
	if files == 0 {
		t.Fatal("no database file found")
	}

	// The sealed key is bound to its tenant, server and kid.
	var spec setSpec
	if err := json.Unmarshal(obj.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	k := spec.Keys[0]
	if _, err := box.Open(k.SealedPrivateKey, aad("acme", "default", k.KID)); err != nil {
		t.Fatalf("open with its own binding: %v", err)
	}
	for _, bad := range [][3]string{{"globex", "default", k.KID}, {"acme", "other", k.KID}, {"acme", "default", spec.Keys[1].KID}} {
		if _, err := box.Open(k.SealedPrivateKey, aad(bad[0], bad[1], bad[2])); err == nil {
			t.Errorf("the sealed key opened as %v", bad)
		}
	}
}

// TestMovedKeyDoesNotOpen: a key set copied to another server (or a
// sealed key swapped into another entry) cannot be used to sign.
func TestMovedKeyDoesNotOpen(t *testing.T) {
	st := testkit.Store(t)
	testkit.Create(t, st, testkit.Tenant("acme"), testkit.Tenant("globex"))
	ctx := context.Background()
	box := testkit.SecretBox(t)
	p := Policy{KeyType: KeyTypeECDSA, Retention: time.Hour}
	if _, _, err := NewManager(st, box).Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: t0}); err != nil {
		t.Fatal(err)
	}
	obj, err := st.Get(ctx, Kind, "acme", "default")
	if err != nil {
		t.Fatal(err)
	}
	moved := obj.Clone()
	moved.UID, moved.TenantID = "", "globex"
	testkit.Create(t, st, moved)
	fresh := NewManager(st, box) // no cache
	s, err := fresh.Load(ctx, "globex", "default", p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Signer(t0); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("a key moved to another tenant opened: %v", err)
	}
	// A sealed key of another kid, swapped in, does not open either.
	m := NewManager(st, box)
	s, _, err = m.Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Edit(t, st, Kind, "acme", "default", func(spec *setSpec) {
		spec.Keys[1].SealedPrivateKey = spec.Keys[0].SealedPrivateKey
	})
	s, _ = NewManager(st, box).Load(ctx, "acme", "default", p)
	if _, err := s.Signer(t0); err == nil {
		t.Fatal("a swapped sealed key opened")
	}
}

// TestConcurrentRotations: rotations racing on one server, from several
// managers (replicas) sharing the store, all land; the set stays
// consistent: one key per rotation, distinct kids and sequence numbers in
// order, exactly one active key, every key opens.
func TestConcurrentRotations(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		box := testkit.SecretBox(t)
		p := Policy{KeyType: KeyTypeECDSA, ActivationDelay: time.Minute, Retention: time.Hour}
		managers := []*Manager{NewManager(st, box), NewManager(st, box), NewManager(st, box)}

		// Racing Ensures create one first key.
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 8 {
			wg.Go(func() {
				if _, err := managers[i%len(managers)].Ensure(ctx, "acme", "default", Rotation{Policy: p, Now: t0}); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		s, err := managers[0].Load(ctx, "acme", "default", p)
		if err != nil {
			t.Fatal(err)
		}
		if s.Len() != 1 {
			t.Fatalf("racing Ensures made %d keys", s.Len())
		}

		const n = 12
		added := make(chan string, n)
		for i := range n {
			wg.Go(func() {
				_, k, err := managers[i%len(managers)].Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: t0.Add(time.Duration(i) * time.Second)})
				if err != nil {
					errs <- err
					return
				}
				added <- k.KID
			})
		}
		wg.Wait()
		close(errs)
		close(added)
		for err := range errs {
			t.Fatal(err)
		}
		s, err = managers[1].Load(ctx, "acme", "default", p)
		if err != nil {
			t.Fatal(err)
		}
		if s.Len() != n+1 {
			t.Fatalf("%d keys after %d rotations", s.Len(), n)
		}
		kids := map[string]bool{}
		for i, k := range s.keys {
			if k.Seq != int64(i) {
				t.Errorf("key %d has seq %d", i, k.Seq)
			}
			if i > 0 && k.ActivatesAt.Before(s.keys[i-1].ActivatesAt) {
				t.Errorf("key %d activates before key %d", i, i-1)
			}
			kids[k.KID] = true
		}
		for kid := range added {
			if !kids[kid] {
				t.Errorf("rotated key %s is missing", kid)
			}
		}
		if len(kids) != n+1 {
			t.Fatalf("%d distinct kids", len(kids))
		}
		for _, now := range []time.Time{t0, t0.Add(time.Minute), t0.Add(2 * time.Minute), t0.Add(3 * time.Hour)} {
			active := 0
			for _, info := range s.Keys(now) {
				if info.State == StateActive {
					active++
				}
			}
			if active != 1 {
				t.Errorf("at %v: %d active keys", now, active)
			}
		}
		fresh := NewManager(st, box)
		s, _ = fresh.Load(ctx, "acme", "default", p)
		for i := range s.keys {
			if _, err := fresh.openKey("acme", "default", &s.keys[i]); err != nil {
				t.Errorf("key %d: %v", i, err)
			}
		}
	})
}

// TestIsolation: each (tenant, server) has its own set; rotating one
// changes no other; one server's JWKS does not verify another's tokens.
func TestIsolation(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		m := NewManager(st, testkit.SecretBox(t))
		p := Policy{KeyType: KeyTypeECDSA, Retention: time.Hour}
		ids := [][2]string{{"acme", "default"}, {"acme", "admin"}, {"globex", "default"}}
		sets := map[[2]string]*Set{}
		for _, id := range ids {
			s, err := m.Ensure(ctx, id[0], id[1], Rotation{Policy: p, Now: t0})
			if err != nil {
				t.Fatal(err)
			}
			sets[id] = s
		}
		seen := map[string]bool{}
		for _, id := range ids {
			kid := sets[id].Keys(t0)[0].KID
			if seen[kid] {
				t.Fatalf("kid %s shared", kid)
			}
			seen[kid] = true
		}
		if _, _, err := m.Rotate(ctx, "acme", "default", Rotation{Policy: p, Now: t0}); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids[1:] {
			s, _ := m.Load(ctx, id[0], id[1], p)
			if s.Len() != 1 || s.Revision != sets[id].Revision {
				t.Errorf("%v changed by another server's rotation", id)
			}
		}
		tok, _ := sign(t, sets[ids[0]], t0, "alice")
		for _, id := range ids[1:] {
			jwks, _ := sets[id].JWKS(t0)
			if _, err := verify(jwks, tok); err == nil {
				t.Errorf("%v's JWKS verified acme/default's token", id)
			}
		}
	})
}

// TestSigningKeyNeverPrints: fmt and slog show a SigningKey's kid and
// algorithm, never its private key.
func TestSigningKeyNeverPrints(t *testing.T) {
	m := NewManager(nil, testkit.SecretBox(t))
	g, err := generate(KeyTypeRSA)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := m.box.Seal(g.pkcs8, aad("acme", "default", g.kid))
	s := m.set("acme", "default", 1, Policy{}, []storedKey{{KID: g.kid, Alg: string(g.alg), CreatedAt: t0, ActivatesAt: t0, PublicKey: g.pkix, SealedPrivateKey: sealed}})
	k, err := s.Signer(t0)
	if err != nil {
		t.Fatal(err)
	}
	d := k.Key().(*rsa.PrivateKey).D
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("signing", "key", k)
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k), buf.String()} {
		if strings.Contains(out, d.String()) || strings.Contains(out, d.Text(16)) || !strings.Contains(out, g.kid) {
			t.Errorf("printed as %q", out)
		}
	}
}
