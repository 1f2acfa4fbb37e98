package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runDevCerts(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRootCommand(&stdout, &stderr)
	root.SetArgs(append([]string{"dev-certs"}, args...))
	err := root.Execute()
	return stdout.String(), err
}

func TestDevCertsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	out, err := runDevCerts(t, "--out", dir, "--dns", "cp.example,localhost", "--ip", "127.0.0.1", "--client-uri", "spiffe://gatehouse/tenant/acme/gateway/edge", "--valid", "2h")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "for development only: do not use these certificates in production") || !strings.Contains(out, filepath.Join(dir, "server-key.pem")) {
		t.Fatalf("output:\n%s", out)
	}
	load := func(name string) *x509.Certificate {
		t.Helper()
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	roots := x509.NewCertPool()
	roots.AddCert(load("ca"))
	server, client := load("server"), load("client")
	for _, host := range []string{"cp.example", "localhost", "127.0.0.1"} {
		if _, err := server.Verify(x509.VerifyOptions{DNSName: host, Roots: roots}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if len(client.URIs) != 1 || client.URIs[0].String() != "spiffe://gatehouse/tenant/acme/gateway/edge" {
		t.Errorf("client URIs %v", client.URIs)
	}
	if d := server.NotAfter.Sub(server.NotBefore); d != 2*time.Hour {
		t.Errorf("validity %s, want 2h", d)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem: %v %v", fi.Mode(), err)
	}

	// It refuses to replace the files without --force.
	before, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if _, err := runDevCerts(t, "--out", dir); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second run without --force: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); !bytes.Equal(before, after) {
		t.Fatal("ca.pem replaced without --force")
	}
	if _, err := runDevCerts(t, "--out", dir, "--force"); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); bytes.Equal(before, after) {
		t.Fatal("ca.pem not replaced with --force")
	}

	if _, err := runDevCerts(t); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("without --out: %v", err)
	}
	if _, err := runDevCerts(t, "--out", t.TempDir(), "--ip", "not-an-ip"); err == nil {
		t.Error("a bad --ip was accepted")
	}
}
