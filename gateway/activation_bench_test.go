package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/activationbench"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// BenchmarkActivate10kAPIs measures the authorizer's start from its disk
// cache with a signed bundle of 10,000 APIs: read the bundle, verify its
// signature, build the engine (configuration, routing index, compiled
// policies, token validator) and swap it in. Each iteration is a new
// follower, activator and engine set, as in a new process.
func BenchmarkActivate10kAPIs(b *testing.B) {
	raw, key, err := activationbench.Bundle(10000)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	path := filepath.Join(dir, activationbench.TenantID, activationbench.GatewayID, "bundle.tar.gz")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ref := model.GatewayRef{TenantID: activationbench.TenantID, GatewayID: activationbench.GatewayID}
		engines := gateway.NewEngines(ref)
		a := &gateway.Activator{Engines: engines, Tokens: func(ctx context.Context, issuers []policies.IssuerData) (gateway.TokenValidator, error) {
			return token.New(token.FromBundle(issuers), token.Options{})
		}}
		f, err := gateway.NewFollower(gateway.FollowerOptions{URL: "http://127.0.0.1:1", TenantID: ref.TenantID, GatewayID: ref.GatewayID,
			Credential: "bench", KeyID: key.KeyID, PublicKeyPEM: key.PublicKeyPEM, CacheDir: dir, Activator: a,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.LoadCache(ctx); err != nil {
			b.Fatal(err)
		}
		if engines.Get(ref.TenantID, ref.GatewayID) == nil {
			b.Fatal("no engine after activation")
		}
		a.Close()
	}
	// After the loop: b.Loop resets what was reported before it.
	b.ReportMetric(float64(len(raw)), "bundle-bytes")
}
