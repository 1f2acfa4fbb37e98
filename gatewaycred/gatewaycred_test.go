package gatewaycred_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
)

func TestGatewayCredentialsVerify(t *testing.T) {
	st := testkit.Store(t)
	testkit.Create(t, st, testkit.Tenant("acme"), testkit.Tenant("beta"))
	edgeID, edge := createGateway(t, st, "acme", "edge")
	_, beta := createGateway(t, st, "beta", "edge")
	v := gatewaycred.New(st, nil)
	ctx := context.Background()

	id, err := v.VerifyGateway(ctx, edge)
	if err != nil || id != (envoy.GatewayIdentity{TenantID: "acme", GatewayID: "edge", CredentialID: edgeID}) {
		t.Fatalf("acme/edge: %+v %v", id, err)
	}
	if id, err := v.VerifyGateway(ctx, beta); err != nil || id.NodeID() != "beta/edge" {
		t.Fatalf("beta/edge: %+v %v", id, err)
	}
	wrongSecret := edge[:strings.LastIndexByte(edge, '.')+1] + "AAAA"
	// Another tenant's prefix on acme's credential id finds nothing.
	otherTenant := strings.Replace(edge, "ghg_acme.", "ghg_beta.", 1)
	for _, bad := range []string{"", "ghg_", "ghg_acme.x", "nope", wrongSecret, otherTenant, edge + ".x", "ghg_ACME.a.b"} {
		if _, err := v.VerifyGateway(ctx, bad); !errors.Is(err, envoy.ErrInvalidCredential) {
			t.Errorf("VerifyGateway(%q): %v, want ErrInvalidCredential", bad, err)
		}
	}
	revoke(t, st, "acme", edgeID)
	if _, err := v.VerifyGateway(ctx, edge); !errors.Is(err, envoy.ErrInvalidCredential) {
		t.Fatalf("revoked credential: %v", err)
	}
	// Deleting a gateway revokes its credentials.
	deleteGateway(t, st, "beta", "edge")
	if _, err := v.VerifyGateway(ctx, beta); !errors.Is(err, envoy.ErrInvalidCredential) {
		t.Fatalf("credential of a deleted gateway: %v", err)
	}
	// A store that cannot answer is a fault, not an invalid credential.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := v.VerifyGateway(cctx, beta); err == nil {
		t.Fatal("VerifyGateway with a cancelled context succeeded")
	}
}

// TestDeletedWithGateway: a credential deleted with its gateway is told
// apart from an unknown, wrong or individually revoked one (the bundle
// service answers it 404 gateway_not_found, the others 401).
func TestDeletedWithGateway(t *testing.T) {
	st := testkit.Store(t)
	testkit.Create(t, st, testkit.Tenant("acme"))
	revokedID, revoked := createGateway(t, st, "acme", "edge")
	_, kept := createGateway(t, st, "acme", "side")
	gone := addCredential(t, st, "acme", "edge")
	revoke(t, st, "acme", revokedID)
	deleteGateway(t, st, "acme", "edge")
	v := gatewaycred.New(st, nil)
	ctx := context.Background()
	for _, c := range []struct {
		name, tid, gw, token string
		want                 bool
	}{
		{"deleted with its gateway", "acme", "edge", gone, true},
		{"wrong secret", "acme", "edge", gone[:strings.LastIndexByte(gone, '.')+1] + "AAAA", false},
		{"named under another gateway", "acme", "side", gone, false},
		{"named under another tenant", "beta", "edge", gone, false},
		{"revoked before the gateway was deleted", "acme", "edge", revoked, false},
		{"of a live gateway", "acme", "side", kept, false},
		{"malformed", "acme", "edge", "nope", false},
	} {
		if got, err := v.DeletedWithGateway(ctx, c.tid, c.gw, c.token); err != nil || got != c.want {
			t.Errorf("%s: %v %v, want %v", c.name, got, err, c.want)
		}
	}
}

func TestGatewayCredentialsFollowRevocations(t *testing.T) {
	st := testkit.Store(t)
	testkit.Create(t, st, testkit.Tenant("acme"), testkit.Tenant("beta"))
	credID, _ := createGateway(t, st, "acme", "edge")
	createGateway(t, st, "acme", "side")
	createGateway(t, st, "beta", "edge")
	rotID, _ := createGateway(t, st, "acme", "rot")
	v := gatewaycred.New(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	calls := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	from := revision(t, st)
	go func() { done <- v.FollowRevocations(ctx, from, func(context.Context) { calls <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("FollowRevocations: %v", err)
		}
	})
	// Writes that revoke nothing come first: had they called revoked, the
	// first call seen below would be theirs and a second one would follow.
	addCredential(t, st, "acme", "side")
	testkit.Create(t, st, testkit.Service("acme", "pets", "http://pets.internal"),
		testkit.API("acme", "pets-api", model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets/{id}", CanHavePolicy: true}))
	wait := func(what string) {
		t.Helper()
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatalf("no revocation call after %s", what)
		}
		select {
		case <-calls:
			t.Fatalf("more than one revocation call after %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
	revoke(t, st, "acme", credID)
	wait("revoking a credential")
	deleteGateway(t, st, "acme", "side")
	wait("deleting a gateway")
	deleteTenant(t, st, "beta")
	wait("deleting a tenant")
	// Rotating a credential's secret (GET …/package?credential=…&rotate=true)
	// revokes the old secret.
	testkit.Edit(t, st, model.KindGatewayCredential, "acme", rotID, func(s *model.GatewayCredentialSpec) { s.SecretHash = strings.Repeat("0", 64) })
	wait("rotating a credential's secret")
}
