package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

const gatewaysPath = "/api/admin/acme/gateways"

// TestGatewayWithServerGetsItsClientOnce: a gateway created with a server
// gets, in the same transaction, a confidential client_credentials system
// client with the gateway's audience, shown with its secret only in the
// create answer (seed 003 GatewayWithClient); it goes with the gateway.
func TestGatewayWithServerGetsItsClientOnce(t *testing.T) {
	e := clientEnv(t, nil)
	r := e.expect(e.do("POST", gatewaysPath, rootToken, map[string]any{"id": "edge", "name": "edge", "server_id": "web"}), 201)
	gw := r.json(t)
	cl, _ := gw["client"].(map[string]any)
	if cl == nil {
		t.Fatalf("no client in the create answer: %s", r.body)
	}
	secret, _ := cl["client_secret"].(string)
	if gw["client_id"] != "gateway-edge" || cl["client_id"] != "gateway-edge" || len(secret) != 43 || cl["system"] != true || cl["public"] != false ||
		fmt.Sprint(cl["grant_types"]) != "[client_credentials]" || cl["token_endpoint_auth_method"] != "client_secret_basic" ||
		fmt.Sprint(cl["audience"]) != "["+model.GatewayAudience("acme", "edge")+"]" || cl["gateway_id"] != "edge" || cl["authorization_server_id"] != "web" ||
		gw["issuer_url"] != "https://gh.example/acme/web" || gw["server_url"] != "https://gh.example" || gw["credential"] == nil {
		t.Fatalf("gateway with client: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("the create answer is cacheable: %v", r.header)
	}
	o, spec := e.storedClient("acme", "gateway-edge")
	if o.ParentID != "edge" || spec.SecretHash != sha256Hex(secret) || !clientauth.ClientSecretValid(spec, secret, time.Now()) {
		t.Fatalf("stored gateway client: %+v %+v", o, spec)
	}
	// Never again: GET of the gateway names the client, without a secret.
	for _, path := range []string{gatewaysPath + "/edge", gatewaysPath, clientsPath + "/gateway-edge", clientsPath} {
		g := e.expect(e.do("GET", path, rootToken, nil), 200)
		if bytes.Contains(g.body, []byte(secret)) {
			t.Fatalf("GET %s shows the gateway client's secret: %s", path, g.body)
		}
	}
	got := e.expect(e.do("GET", gatewaysPath+"/edge", rootToken, nil), 200).json(t)
	if got["client_id"] != "gateway-edge" || got["client"] != nil || got["issuer_url"] != "https://gh.example/acme/web" {
		t.Fatalf("GET gateway: %v", got)
	}
	evs := e.eventsOf("acme", "clients")
	if len(evs) != 1 || evs[0]["action"] != "create" || evs[0]["object_id"] != "gateway-edge" {
		t.Fatalf("client events: %v", evs)
	}

	// The client is the gateway's: not deleted or replaced on its own; its
	// secret can be rotated.
	if r := e.do("DELETE", clientsPath+"/gateway-edge", rootToken, nil); r.status != 400 || r.errorCode(t) != httpapi.CodeInUse ||
		!strings.Contains(r.json(t)["error"].(string), "delete the gateway") {
		t.Fatalf("delete the gateway's client: %d %s", r.status, r.body)
	}
	cget := e.expect(e.do("GET", clientsPath+"/gateway-edge", rootToken, nil), 200).json(t)
	cget["client_name"] = "mine now"
	e.expectFieldError(e.do("PUT", clientsPath+"/gateway-edge", rootToken, cget), "system")
	rotated := e.expect(e.do("POST", clientsPath+"/gateway-edge/secret", rootToken, nil), 200).json(t)["client_secret"].(string)
	if _, spec := e.storedClient("acme", "gateway-edge"); !clientauth.ClientSecretValid(spec, rotated, time.Now()) || clientauth.ClientSecretValid(spec, secret, time.Now()) {
		t.Fatal("rotating the gateway client's secret did not replace it")
	}

	// A GET body is a valid PUT body (client_id, issuer_url and server_url
	// are read-only and ignored); server_id cannot change.
	put := maps.Clone(got)
	delete(put, "status")
	put["description"] = "edge proxy"
	upd := e.expect(e.do("PUT", gatewaysPath+"/edge", rootToken, put), 200).json(t)
	if upd["description"] != "edge proxy" || upd["client_id"] != "gateway-edge" || upd["server_id"] != "web" {
		t.Fatalf("PUT gateway: %v", upd)
	}
	put["server_id"] = "narrow"
	before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
	e.expectFieldError(e.do("PUT", gatewaysPath+"/edge", rootToken, put), "server_id")
	e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused server change wrote")

	// The server cannot go while the gateway names it.
	sch, err := admin.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		_, err := sch.Delete(ctx, tx, model.KindServer, "acme", "web", 0, nil)
		return err
	})
	if err == nil {
		t.Fatal("the gateway's server was deleted")
	}

	// Deleting the gateway deletes its client, audited.
	e.expect(e.do("DELETE", gatewaysPath+"/edge", rootToken, nil), 204)
	e.expect(e.do("GET", clientsPath+"/gateway-edge", rootToken, nil), 404)
	if evs := e.eventsOf("acme", "clients"); evs[0]["action"] != "delete" || evs[0]["object_id"] != "gateway-edge" {
		t.Fatalf("client events after the gateway's delete: %v", evs)
	}
	// A new gateway of that id gets a new client (and a new secret).
	again := e.expect(e.do("POST", gatewaysPath, rootToken, map[string]any{"id": "edge", "name": "edge", "authorization_server_id": "web"}), 201).json(t)
	if c2, _ := again["client"].(map[string]any); c2 == nil || c2["client_secret"] == secret || c2["client_secret"] == rotated || again["server_id"] != "web" {
		t.Fatalf("re-created gateway: %v", again)
	}
}

func TestGatewayServerIsValidatedAndNothingIsCreated(t *testing.T) {
	e := clientEnv(t, nil)
	for _, c := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"unknown server", map[string]any{"name": "gw", "server_id": "ghost"}, "server_id"},
		{"unknown server, seed field", map[string]any{"name": "gw", "authorization_server_id": "ghost"}, "server_id"},
		{"both fields, different", map[string]any{"name": "gw", "server_id": "web", "authorization_server_id": "narrow"}, "authorization_server_id"},
		{"bad server id", map[string]any{"name": "gw", "server_id": "not valid"}, "server_id"},
		{"a server without client_credentials", map[string]any{"name": "gw", "server_id": "narrow"}, "server_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
			e.expectFieldError(e.do("POST", gatewaysPath, rootToken, c.body), c.field)
			e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused gateway create wrote")
		})
	}
	e.t = t
	// Without a server: no client.
	gw := e.expect(e.do("POST", gatewaysPath, rootToken, map[string]any{"id": "plain", "name": "plain"}), 201).json(t)
	if gw["client"] != nil || gw["client_id"] != nil || gw["issuer_url"] != nil {
		t.Fatalf("gateway without a server: %v", gw)
	}
	// A client id gateway-<gid> already taken: the gateway's client gets
	// a generated one.
	e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "gateway-edge2", "authorization_server_id": "web", "grant_types": []string{"client_credentials"}}), 201)
	gw = e.expect(e.do("POST", gatewaysPath, rootToken, map[string]any{"id": "edge2", "name": "edge2", "server_id": "web"}), 201).json(t)
	if id, _ := gw["client_id"].(string); !isUUID(id) {
		t.Fatalf("client of edge2: %v", gw["client_id"])
	}
	// Another tenant cannot name acme's server.
	e.createTenant("other")
	e.expectFieldError(e.do("POST", "/api/admin/other/gateways", rootToken, map[string]any{"name": "gw", "server_id": "web"}), "server_id")
}

func TestGatewayDeleteRevokesItsClientsTokens(t *testing.T) {
	e := clientEnv(t, func(o *admin.Options) { o.Tokens = markingRevoker{} })
	e.expect(e.do("POST", gatewaysPath, rootToken, map[string]any{"id": "edge", "name": "edge", "server_id": "web"}), 201)
	e.expect(e.do("DELETE", gatewaysPath+"/edge", rootToken, nil), 204)
	if objs := e.oauthObjects("acme"); !strings.Contains(objs, model.KindTokenRevocation+"/revoked-gateway-edge") {
		t.Fatalf("deleting the gateway revoked nothing of its client: %s", objs)
	}
}
