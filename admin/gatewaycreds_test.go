package admin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/envoy"
)

// createGateway creates a gateway and returns the id and token of the
// credential minted with it.
func (e *env) createGateway(tid, gw string) (id, token string) {
	e.t.Helper()
	m := e.expect(e.do("POST", "/api/admin/"+tid+"/gateways", rootToken, map[string]any{"id": gw, "name": gw}), 201).json(e.t)
	cred := m["credential"].(map[string]any)
	return cred["id"].(string), cred["token"].(string)
}

func TestGatewayCredentialsVerify(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("beta")
	edgeID, edge := e.createGateway("acme", "edge")
	_, beta := e.createGateway("beta", "edge")
	v := admin.NewGatewayCredentials(e.store, nil)
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
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge/credentials/"+edgeID, rootToken, nil), 204)
	if _, err := v.VerifyGateway(ctx, edge); !errors.Is(err, envoy.ErrInvalidCredential) {
		t.Fatalf("revoked credential: %v", err)
	}
	// Deleting a gateway revokes its credentials.
	e.expect(e.do("DELETE", "/api/admin/beta/gateways/edge", rootToken, nil), 204)
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

func TestGatewayCredentialsFollowRevocations(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.createTenant("beta")
	credID, _ := e.createGateway("acme", "edge")
	e.createGateway("acme", "side")
	e.createGateway("beta", "edge")
	v := admin.NewGatewayCredentials(e.store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	calls := make(chan struct{}, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	from := e.revision()
	go func() { done <- v.FollowRevocations(ctx, from, func(context.Context) { calls <- struct{}{} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("FollowRevocations: %v", err)
		}
	})
	// Writes that revoke nothing come first: had they called revoked, the
	// first call seen below would be theirs and a second one would follow.
	e.expect(e.do("POST", "/api/admin/acme/gateways/side/credentials", rootToken, nil), 201)
	e.seedService("acme", "pets", "/pets/{id}", "")
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
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/edge/credentials/"+credID, rootToken, nil), 204)
	wait("revoking a credential")
	e.expect(e.do("DELETE", "/api/admin/acme/gateways/side", rootToken, nil), 204)
	wait("deleting a gateway")
	e.expect(e.do("DELETE", "/api/system/tenants/beta", rootToken, nil), 204)
	wait("deleting a tenant")
}
