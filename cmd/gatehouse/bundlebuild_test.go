package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// writeFile writes content to a file of dir and returns its path.
func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// bundleFiles is a bundle's files by path (the signatures left out).
func bundleFiles(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	b, err := policies.ReadBundle(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{".manifest revision": b.Manifest.Revision}
	data, _ := json.Marshal(b.Data)
	out["data.json"] = string(data)
	meta, _ := json.Marshal(b.Manifest.Metadata)
	out[".manifest metadata"] = string(meta)
	for _, m := range b.Modules {
		out[strings.TrimPrefix(m.Path, "/")] = string(m.Raw)
	}
	return out
}

// The bundle built offline from the control plane's export, with its
// revision and the tenant's signing key, is byte for byte the bundle the
// bundle service serves, for each gateway; unsigned, every file but
// .signatures.json is the same.
func TestBundleBuildIsWhatTheControlPlaneServes(t *testing.T) {
	cp := startControlPlane(t)
	edgeToken := cp.seedTenant("acme")
	edge, mesh := cp.bundle("acme", "edge"), cp.bundle("acme", "mesh")
	dir := t.TempDir()
	export := writeFile(t, dir, "export.json", cp.export("acme"))
	key, err := cp.keys.Key(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "key.pem", []byte(key.PrivateKeyPEM()))
	served := cp.served("acme", "edge", edgeToken)
	if !bytes.Equal(served, edge.Raw) {
		t.Fatal("the bundle service serves other bytes than the manager's bundle")
	}

	for _, b := range []struct {
		gw  string
		raw []byte
		rev int64
	}{{"edge", edge.Raw, edge.Revision}, {"mesh", mesh.Raw, mesh.Revision}} {
		out := filepath.Join(dir, b.gw+".tar.gz")
		_, stderr, err := runCLI(t, "bundle", "build", "--config", export, "-o", out, "--gateway", b.gw,
			"--signing-key", keyFile, "--revision", strconv.FormatInt(b.rev, 10))
		if err != nil {
			t.Fatalf("bundle build %s: %v\n%s", b.gw, err, stderr)
		}
		mustContain(t, "the summary", stderr, "gateway "+b.gw+" of tenant acme", "signed with key "+key.KeyID)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b.raw) {
			gotF, wantF := bundleFiles(t, got), bundleFiles(t, b.raw)
			for k, v := range wantF {
				if gotF[k] != v {
					t.Errorf("%s differs:\noffline: %.300s\ncontrol plane: %.300s", k, gotF[k], v)
				}
			}
			t.Fatalf("gateway %s: the offline bundle (%d bytes) is not the control plane's (%d bytes)", b.gw, len(got), len(b.raw))
		}
	}

	t.Run("unsigned, every file but the signatures is the same", func(t *testing.T) {
		out := filepath.Join(dir, "unsigned.tar.gz")
		if _, stderr, err := runCLI(t, "bundle", "build", "-c", export, "-o", out, "--gateway", "edge", "--revision", strconv.FormatInt(edge.Revision, 10)); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		got, _ := os.ReadFile(out)
		b, err := policies.ReadBundle(got, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Signatures.Signatures) != 0 {
			t.Fatal("an unsigned bundle has signatures")
		}
		gotF, wantF := bundleFiles(t, got), bundleFiles(t, edge.Raw)
		if len(gotF) != len(wantF) {
			t.Fatalf("%d files, the control plane's has %d", len(gotF), len(wantF))
		}
		for k, v := range wantF {
			if gotF[k] != v {
				t.Fatalf("%s differs", k)
			}
		}
	})
	t.Run("the signature verifies with the tenant's public key, as the authorizer verifies it", func(t *testing.T) {
		got, _ := os.ReadFile(filepath.Join(dir, "edge.tar.gz"))
		if _, err := policies.ReadBundle(got, policies.VerificationConfig(key.KeyID, key.PublicKeyPEM)); err != nil {
			t.Fatal(err)
		}
	})
}

// A key of one's own (PKCS#8, as openssl genpkey writes it) signs a bundle
// that OPA's bundle reader verifies with its public key, and that OPA
// evaluates: the decision of the gateway's policy.
func TestBundleBuildSignedWithOwnKeyLoadsInOPA(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	cp.bundle("acme", "edge")
	dir := t.TempDir()
	export := writeFile(t, dir, "export.json", cp.export("acme"))
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(rk)
	keyFile := writeFile(t, dir, "own.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	pubDER, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	out := filepath.Join(dir, "b.tar.gz")
	if _, stderr, err := runCLI(t, "bundle", "build", "-c", export, "-o", out, "--gateway", "edge", "--signing-key", keyFile, "--key-id", "ci"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	raw, _ := os.ReadFile(out)
	vc := bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{"ci": {Key: pubPEM, Algorithm: "RS256"}}, "ci", "", nil)
	b, err := policies.ReadBundle(raw, vc)
	if err != nil {
		t.Fatalf("OPA's reader refuses the signed bundle: %v", err)
	}
	if b.Manifest.Revision != "1" {
		t.Fatalf("default revision %q, want 1", b.Manifest.Revision)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	wrong := bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{"ci": {Key: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER})),
		Algorithm: "RS256"}}, "ci", "", nil)
	if _, err := policies.ReadBundle(raw, wrong); err == nil {
		t.Fatal("the bundle verified with another key")
	}
	decide := func(headers map[string]any) map[string]any {
		t.Helper()
		input := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"method": "GET", "path": "/pets/7", "host": "pets.example.com", "headers": headers}}}}
		rs, err := rego.New(rego.Query(policies.DecisionQuery), rego.ParsedBundle("gatehouse", &b), rego.Input(input)).Eval(context.Background())
		if err != nil || len(rs) != 1 {
			t.Fatalf("evaluate: %v %v", rs, err)
		}
		return rs[0].Expressions[0].Value.(map[string]any)
	}
	if d := decide(map[string]any{"x-key": "open-sesame"}); d["allowed"] != true {
		t.Fatalf("with the key: %v", d)
	}
	if d := decide(map[string]any{}); d["allowed"] != false || d["reason"] != "no key" {
		t.Fatalf("without the key: %v", d)
	}
}

// Bad input is refused with the problem named, and no bundle is written.
func TestBundleBuildRefusals(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	cp.bundle("acme", "edge")
	dir := t.TempDir()
	exported := cp.export("acme")
	export := writeFile(t, dir, "export.json", exported)
	var doc map[string]any
	if err := json.Unmarshal(exported, &doc); err != nil {
		t.Fatal(err)
	}
	doc["services"].([]any)[0].(map[string]any)["url"] = "ftp://pets.internal"
	bad, _ := json.Marshal(doc)
	badExport := writeFile(t, dir, "bad.json", bad)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ecKey := writeFile(t, dir, "ec.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}))
	ec8DER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ec8Key := writeFile(t, dir, "ec8.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ec8DER}))
	short, _ := rsa.GenerateKey(rand.Reader, 1024)
	shortKey := writeFile(t, dir, "short.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(short)}))
	out := filepath.Join(dir, "out.tar.gz")
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no --config":             {[]string{"-o", out}, "--config is required"},
		"no --output":             {[]string{"-c", export}, "--output is required"},
		"not JSON":                {[]string{"-c", writeFile(t, dir, "x.json", []byte("{nope")), "-o", out}, "is not JSON"},
		"a missing file":          {[]string{"-c", filepath.Join(dir, "absent.json"), "-o", out}, "absent.json"},
		"an invalid object":       {[]string{"-c", badExport, "-o", out, "--gateway", "edge"}, "services[0].url"},
		"two gateways, no choice": {[]string{"-c", export, "-o", out}, "choose one with --gateway"},
		"an unknown gateway":      {[]string{"-c", export, "-o", out, "--gateway", "nope"}, `no gateway "nope" in the document (it has: edge, mesh)`},
		"a bad tenant":            {[]string{"-c", export, "-o", out, "--gateway", "edge", "--tenant", "Not_A_Tenant"}, "invalid tenant id"},
		"not an RSA key":          {[]string{"-c", export, "-o", out, "--gateway", "edge", "--signing-key", ecKey}, "not an RSA private key"},
		"a PKCS#8 EC key":         {[]string{"-c", export, "-o", out, "--gateway", "edge", "--signing-key", ec8Key}, "needs an RSA key"},
		"a short RSA key":         {[]string{"-c", export, "-o", out, "--gateway", "edge", "--signing-key", shortKey}, "RSA-1024 is too short"},
		"a key that is not PEM":   {[]string{"-c", export, "-o", out, "--gateway", "edge", "--signing-key", export}, "no PEM block"},
		"a revision of 0":         {[]string{"-c", export, "-o", out, "--revision", "0"}, "--revision must be at least 1"},
		"a key id without a key":  {[]string{"-c", export, "-o", out, "--gateway", "edge", "--key-id", "k"}, "--key-id needs --signing-key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := runCLI(t, append([]string{"bundle", "build"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("a bundle was written: %v", err)
			}
		})
	}
}

// --tenant builds the document for another tenant, as the control plane
// builds a configuration copied into that tenant.
func TestBundleBuildForAnotherTenant(t *testing.T) {
	cp := startControlPlane(t)
	cp.seedTenant("acme")
	cp.bundle("acme", "edge")
	exported := cp.export("acme")
	cp.must(201, "POST", "/api/system/tenants", map[string]any{"id": "copy", "name": "Copy"})
	cp.must(200, "PUT", "/api/system/configuration?tid=copy", json.RawMessage(exported))
	want := cp.bundle("copy", "edge")
	key, err := cp.keys.Key(context.Background(), "copy")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "copy.tar.gz")
	if _, stderr, err := runCLI(t, "bundle", "build", "-c", writeFile(t, dir, "export.json", exported), "-o", out, "--gateway", "edge",
		"--tenant", "copy", "--signing-key", writeFile(t, dir, "key.pem", []byte(key.PrivateKeyPEM())),
		"--revision", strconv.FormatInt(want.Revision, 10)); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want.Raw) {
		t.Fatal("the offline bundle for tenant copy is not the control plane's")
	}
}
