package xdscreds

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/xds/bootstrap"
)

func TestBuild(t *testing.T) {
	b := bootstrap.GetChannelCredentials(Type)
	if b == nil {
		t.Fatalf("channel credentials %q are not registered", Type)
	}
	file := filepath.Join(t.TempDir(), "credential")
	if err := os.WriteFile(file, []byte("ghg_acme.c1.first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metadata := func(cfg string) (string, error) {
		t.Helper()
		bundle, cleanup, err := b.Build([]byte(cfg))
		if err != nil {
			return "", err
		}
		defer cleanup()
		if bundle.TransportCredentials() == nil || bundle.PerRPCCredentials().RequireTransportSecurity() {
			t.Fatalf("%s: want plaintext transport and per-RPC credentials allowed on it", cfg)
		}
		md, err := bundle.PerRPCCredentials().GetRequestMetadata(context.Background())
		return md["authorization"], err
	}
	if got, err := metadata(`{"credential": "ghg_acme.c1.s"}`); err != nil || got != "Bearer ghg_acme.c1.s" {
		t.Fatalf("inline credential: %q %v", got, err)
	}
	if got, err := metadata(`{"credential_file": "` + file + `"}`); err != nil || got != "Bearer ghg_acme.c1.first" {
		t.Fatalf("credential file: %q %v", got, err)
	}
	// The file is read at each call: it can be replaced.
	bundle, _, err := b.Build([]byte(`{"credential_file": "` + file + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("ghg_acme.c2.second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if md, err := bundle.PerRPCCredentials().GetRequestMetadata(context.Background()); err != nil || md["authorization"] != "Bearer ghg_acme.c2.second" {
		t.Fatalf("replaced file: %v %v", md, err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{}`, `{"credential": ""}`, `{"credential": "two words"}`, `{"credential": "a", "credential_file": "` + file + `"}`,
		`{"credential_file": "/does/not/exist"}`, `{"credential_file": "` + empty + `"}`, `{"token": "a"}`, `[]`,
	} {
		if _, err := metadata(bad); err == nil {
			t.Errorf("config %s accepted", bad)
		}
	}
	if _, err := Bearer(" "); err == nil {
		t.Error("an empty bearer credential was accepted")
	}
}
