package admin_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

func init() {
	// Conformance fixtures of the OAuth kinds; their server is the
	// tenant's default server, which every tenant has.
	fixtures["clients"] = kindFixture{
		create: func(i int) map[string]any {
			return map[string]any{"client_id": fmt.Sprintf("c%d", i), "client_name": fmt.Sprintf("conf-%d", i),
				"authorization_server_id": model.DefaultServerID, "grant_types": []string{"client_credentials"}}
		},
		// Clients have no unique name (client_name is not): a second
		// client with create(0)'s id collides.
		sameName: map[string]any{"client_id": "c0", "client_name": "again", "authorization_server_id": model.DefaultServerID,
			"grant_types": []string{"client_credentials"}},
	}
	fixtures["claims"] = kindFixture{
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "authorization_server_id": model.DefaultServerID,
				"name": fmt.Sprintf("conf-%d", i), "mapping": "email", "type": "id_token"}
		},
		// Unique per server and token type.
		sameName: map[string]any{"id": "dup", "authorization_server_id": model.DefaultServerID, "name": "conf-0", "mapping": "other", "type": "id_token"},
	}
}

// oauthServer creates an authorization server through the store (the
// servers API is tested on its own) allowing grants (none: the servers
// API's default).
func (e *env) oauthServer(tid, id string, grants ...string) {
	e.t.Helper()
	_, err := e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		return store.Repo[model.ServerSpec]{Kind: model.KindServer}.Create(ctx, tx, &store.Typed[model.ServerSpec]{
			Meta: store.Object{TenantID: tid, ID: id, Name: "server " + id},
			Spec: model.ServerSpec{KeyType: "ecdsa", GrantTypes: grants, AccessTokenStrategy: model.AccessTokenJWT,
				AuthorizationCodeTTL: model.Duration(10 * time.Minute), AccessTokenTTL: model.Duration(time.Hour), IDTokenTTL: model.Duration(time.Hour),
				RefreshTokenTTL: model.Duration(720 * time.Hour), CookieMaxAge: model.Duration(time.Hour)},
		})
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// storedClient reads a client as the store keeps it.
func (e *env) storedClient(tid, id string) (*store.Object, *model.ClientSpec) {
	e.t.Helper()
	var o *store.Object
	err := e.store.View(context.Background(), func(ctx context.Context, rd store.Reader) error {
		var err error
		o, err = rd.Get(ctx, model.KindClient, tid, id)
		return err
	})
	if err != nil {
		e.t.Fatalf("client %s/%s: %v", tid, id, err)
	}
	var spec model.ClientSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		e.t.Fatal(err)
	}
	return o, &spec
}

// oauthObjects lists the ids of a tenant's clients, claims and token
// revocations (which the shared snapshot does not cover).
func (e *env) oauthObjects(tid string) string {
	e.t.Helper()
	var b strings.Builder
	for _, kind := range []string{model.KindClient, model.KindClaim, model.KindTokenRevocation} {
		pg, err := e.store.List(context.Background(), store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, o := range pg.Items {
			fmt.Fprintf(&b, "%s/%s rev=%d\n", kind, o.ID, o.Revision)
		}
	}
	return b.String()
}

// expectNothingWritten fails when the admin API wrote anything, OAuth
// objects included, since before.
func (e *env) expectNothingWritten(t *testing.T, tid string, before snapshot, beforeOAuth string, msg string) {
	t.Helper()
	e.requireUnchanged(t, before, msg)
	if after := e.oauthObjects(tid); after != beforeOAuth {
		t.Fatalf("%s:\nbefore:\n%safter:\n%s", msg, beforeOAuth, after)
	}
}

// configDocument is GET (doc nil) or PUT of the configuration document of
// tid without e.do's OpenAPI check: admin/openapi/configuration.yaml does
// not list the clients and claims of the document yet (see the clients
// work's report); the clients' and claims' item schemas are in
// clients.yaml and claims.yaml.
func (e *env) configDocument(tid string, doc any) resp {
	e.t.Helper()
	method := "GET"
	if doc != nil {
		method = "PUT"
	}
	r, err := testkit.NewHTTPClient(e.srv.URL, rootToken).Send(context.Background(), method, "/api/system/configuration?tid="+tid, doc)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: r.Status, header: r.Header, body: r.Body}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

const clientsPath = "/api/admin/acme/clients"

func clientEnv(t *testing.T, edit func(*admin.Options)) *env {
	t.Helper()
	e := newEnvWith(t, edit)
	e.createTenant("acme")
	e.oauthServer("acme", "web", model.GrantAuthorizationCode, model.GrantImplicit, model.GrantClientCredentials, model.GrantRefreshToken)
	e.oauthServer("acme", "narrow", model.GrantAuthorizationCode, model.GrantRefreshToken)
	return e
}

func TestClientDefaultsAndSecretShownOnce(t *testing.T) {
	e := clientEnv(t, nil)
	r := e.expect(e.do("POST", clientsPath, rootToken, map[string]any{
		"authorization_server_id": "web", "client_name": "Shop", "redirect_uris": []string{"https://shop.example/cb"},
	}), 201)
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("create answer is cacheable: %v", r.header)
	}
	c := r.json(t)
	id, secret := c["client_id"].(string), c["client_secret"].(string)
	if !isUUID(id) || c["id"] != id {
		t.Fatalf("generated client_id %q (id %v)", id, c["id"])
	}
	if len(secret) != 43 {
		t.Fatalf("generated secret %q: want 256 bits base64url (43 characters)", secret)
	}
	for k, want := range map[string]string{
		"grant_types": "[authorization_code]", "response_types": "[code]", "token_endpoint_auth_method": "client_secret_basic",
		"system": "false", "public": "false", "client_secret_expires_at": "0", "scopes": "[]", "scope": "", "tenant_id": "acme",
		"authorization_server_id": "web", "client_name": "Shop",
	} {
		if got := fmt.Sprint(c[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if at := int64(c["client_id_issued_at"].(float64)); time.Since(time.Unix(at, 0)) > time.Minute || at > time.Now().Unix() {
		t.Errorf("client_id_issued_at %d is not the creation time", at)
	}

	// Never again: GET and list show "".
	got := e.expect(e.do("GET", clientsPath+"/"+id, rootToken, nil), 200)
	if got.json(t)["client_secret"] != "" || bytes.Contains(got.body, []byte(secret)) {
		t.Fatalf("GET shows the secret: %s", got.body)
	}
	list := e.expect(e.do("GET", clientsPath, rootToken, nil), 200)
	if bytes.Contains(list.body, []byte(secret)) || items(t, list.json(t), "clients")[0]["client_secret"] != "" {
		t.Fatalf("list shows the secret: %s", list.body)
	}
	// At rest: the SHA-256 only, in no field of the object; nor in the
	// audit event or the configuration document.
	o, spec := e.storedClient("acme", id)
	raw, _ := json.Marshal(o)
	if bytes.Contains(raw, []byte(secret)) || spec.SecretHash != sha256Hex(secret) {
		t.Fatalf("stored client: %s", raw)
	}
	if !clientauth.ClientSecretValid(spec, secret, time.Now()) || clientauth.ClientSecretValid(spec, secret+"x", time.Now()) {
		t.Fatal("ClientSecretValid does not match the stored hash")
	}
	evs := e.expect(e.do("GET", "/api/admin/acme/events?kind=clients", rootToken, nil), 200)
	if bytes.Contains(evs.body, []byte(secret)) || bytes.Contains(evs.body, []byte(spec.SecretHash)) || len(items(t, evs.json(t), "events")) != 1 {
		t.Fatalf("create events: %s", evs.body)
	}
	if doc := e.expect(e.configDocument("acme", nil), 200).body; bytes.Contains(doc, []byte(secret)) || !bytes.Contains(doc, []byte(spec.SecretHash)) {
		t.Fatalf("the document carries the secret, or not its hash: %s", doc)
	}

	// A given secret (at least 32 characters) is kept; a public client
	// and a private_key_jwt client get none.
	given := strings.Repeat("s3cr3t-", 5)
	c = e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web",
		"grant_types": []string{"client_credentials"}, "client_secret": given, "token_endpoint_auth_method": "client_secret_post"}), 201).json(t)
	if c["client_secret"] != given || fmt.Sprint(c["response_types"]) != "[]" || fmt.Sprint(c["redirect_uris"]) != "[]" {
		t.Fatalf("client with a given secret: %v", c)
	}
	if _, spec := e.storedClient("acme", "svc"); spec.SecretHash != sha256Hex(given) {
		t.Fatal("a given secret is not stored as its hash")
	}
	c = e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "cli", "authorization_server_id": "web", "public": true,
		"redirect_uris": []string{"http://127.0.0.1:8400/cb", "http://[::1]/cb", "http://localhost:9/cb"}, "scope": "openid offline_access"}), 201).json(t)
	if c["client_secret"] != "" || c["token_endpoint_auth_method"] != "none" || fmt.Sprint(c["scopes"]) != "[openid offline_access]" || c["scope"] != "openid offline_access" {
		t.Fatalf("public client: %v", c)
	}
	if _, spec := e.storedClient("acme", "cli"); spec.SecretHash != "" || clientauth.ClientSecretValid(spec, "", time.Now()) {
		t.Fatal("a public client has a secret")
	}
	c = e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "jwt", "authorization_server_id": "web",
		"grant_types": []string{"client_credentials"}, "token_endpoint_auth_method": "private_key_jwt", "jwks": json.RawMessage(testJWKS),
		"token_endpoint_signing_alg": "ES256"}), 201).json(t)
	if c["client_secret"] != "" || c["jwks"] == nil {
		t.Fatalf("private_key_jwt client: %v", c)
	}
	// The id is the path's: a second one is 409.
	if r := e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web", "grant_types": []string{"client_credentials"}}); r.status != 409 {
		t.Fatalf("duplicate client_id: %d %s", r.status, r.body)
	}
}

func TestClientRulesRefuseNamingTheField(t *testing.T) {
	e := clientEnv(t, nil)
	// Scopes: one of server web, one of no server, one of server narrow.
	for _, sc := range []map[string]any{
		{"id": "s1", "name": "pets:read", "server_id": "web"},
		{"id": "s2", "name": "pets:any"},
		{"id": "s3", "name": "narrow:only", "server_id": "narrow"},
	} {
		e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, sc), 201)
	}
	base := func() map[string]any {
		return map[string]any{"authorization_server_id": "web", "redirect_uris": []string{"https://app.example/cb"}}
	}
	with := func(kv ...any) map[string]any {
		b := base()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(b, kv[i].(string))
				continue
			}
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	private := `{"keys":[{"kty":"EC","crv":"P-256","x":"7ZitrI1DuMA0NQ_vH0GNF7_YrCYfsz4juCpyk63S3Ns","y":"LWchNg9KiiBgahcdesc2dCk6RZE0O-iaq6XGSzf1Miw","d":"AAAA"}]}`
	symmetric := `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`
	cases := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"server required", with("authorization_server_id", nil), "authorization_server_id"},
		{"unknown server", with("authorization_server_id", "ghost"), "authorization_server_id"},
		{"bad client_id", with("client_id", "no spaces"), "client_id"},
		{"the console's built-in client id", with("client_id", model.ConsoleClientID, "authorization_server_id", "web"), "client_id"},
		{"id and client_id differ", with("client_id", "a", "id", "b"), "id"},
		{"short secret", with("client_secret", "short"), "client_secret"},
		{"secret of a public client", with("public", true, "client_secret", strings.Repeat("x", 40)), "client_secret"},
		{"system is read-only", with("system", true), "system"},
		{"client_id_issued_at is read-only", with("client_id_issued_at", 5), "client_id_issued_at"},
		{"gateway_id is read-only", with("gateway_id", "edge"), "gateway_id"},
		{"unknown field", with("colour", "red"), "colour"},
		{"password grant", with("grant_types", []string{"password"}), "grant_types[0]"},
		{"unknown grant", with("grant_types", []string{"urn:ietf:params:oauth:grant-type:device_code"}), "grant_types[0]"},
		{"grant twice", with("grant_types", []string{"authorization_code", "authorization_code"}), "grant_types[1]"},
		{"grant the server does not allow", with("authorization_server_id", "narrow", "grant_types", []string{"authorization_code", "client_credentials"}), "grant_types[1]"},
		{"public client_credentials", with("public", true, "grant_types", []string{"client_credentials"}, "redirect_uris", nil), "grant_types[0]"},
		{"token without implicit", with("response_types", []string{"code", "token"}), "response_types[1]"},
		{"code without its grant", with("grant_types", []string{"client_credentials"}, "response_types", []string{"code"}), "response_types[0]"},
		{"unknown response type", with("response_types", []string{"code id_token"}), "response_types[0]"},
		{"implicit without response types", with("grant_types", []string{"implicit"}), "response_types"},
		{"redirect required", with("redirect_uris", nil), "redirect_uris"},
		{"plain http redirect", with("redirect_uris", []string{"https://ok.example/cb", "http://app.example/cb"}), "redirect_uris[1]"},
		{"redirect with a fragment", with("redirect_uris", []string{"https://app.example/cb#x"}), "redirect_uris[0]"},
		{"relative redirect", with("redirect_uris", []string{"/cb"}), "redirect_uris[0]"},
		{"custom scheme redirect", with("redirect_uris", []string{"com.example.app:/cb"}), "redirect_uris[0]"},
		{"redirect with credentials", with("redirect_uris", []string{"https://u:p@app.example/cb"}), "redirect_uris[0]"},
		{"redirect twice", with("redirect_uris", []string{"https://app.example/cb", "https://app.example/cb"}), "redirect_uris[1]"},
		{"post-logout redirect", with("post_logout_redirect_uris", []string{"http://app.example/bye"}), "post_logout_redirect_uris[0]"},
		{"scope and scopes differ", with("scope", "openid email", "scopes", []string{"openid"}), "scope"},
		{"unknown scope in scopes", with("scopes", []string{"openid", "nope"}), "scopes[1]"},
		{"unknown scope in scope", with("scope", "openid nope"), "scope"},
		{"another server's scope", with("scopes", []string{"narrow:only"}), "scopes[0]"},
		{"bad scope name", with("scopes", []string{"has\"quote"}), "scopes[0]"},
		{"client_secret_jwt", with("token_endpoint_auth_method", "client_secret_jwt"), "token_endpoint_auth_method"},
		{"tls_client_auth", with("token_endpoint_auth_method", "tls_client_auth"), "token_endpoint_auth_method"},
		{"self_signed_tls_client_auth", with("token_endpoint_auth_method", "self_signed_tls_client_auth"), "token_endpoint_auth_method"},
		{"none for a confidential client", with("token_endpoint_auth_method", "none"), "token_endpoint_auth_method"},
		{"a secret method for a public client", with("public", true, "token_endpoint_auth_method", "client_secret_basic"), "token_endpoint_auth_method"},
		{"unknown method", with("token_endpoint_auth_method", "magic"), "token_endpoint_auth_method"},
		{"token endpoint alg", with("token_endpoint_signing_alg", "HS256"), "token_endpoint_signing_alg"},
		{"request object alg none", with("request_object_signing_alg", "none"), "request_object_signing_alg"},
		{"userinfo alg", with("userinfo_signed_response_alg", "PS256"), "userinfo_signed_response_alg"},
		{"private JWK", with("token_endpoint_auth_method", "private_key_jwt", "jwks", json.RawMessage(private)), "jwks.keys[0].d"},
		{"symmetric JWK", with("jwks", json.RawMessage(symmetric)), "jwks.keys[0].k"},
		{"not a JWK Set", with("jwks", json.RawMessage(`{"keys":[{"kty":"RSA"}]}`)), "jwks"},
		{"private_key_jwt without keys", with("token_endpoint_auth_method", "private_key_jwt"), "jwks"},
		{"jwks and jwks_uri", with("jwks", json.RawMessage(testJWKS), "jwks_uri", "https://app.example/jwks"), "jwks"},
		{"http jwks_uri", with("jwks_uri", "http://app.example/jwks"), "jwks_uri"},
		{"private jwks_uri", with("jwks_uri", "https://10.0.0.1/jwks"), "jwks_uri"},
		{"http request_uri", with("request_uris", []string{"http://app.example/r"}), "request_uris[0]"},
		{"http sector_identifier_uri", with("sector_identifier_uri", "http://app.example/s"), "sector_identifier_uri"},
		{"ftp client_uri", with("client_uri", "ftp://app.example"), "client_uri"},
		{"relative logo_uri", with("logo_uri", "logo.png"), "logo_uri"},
		{"policy_uri with spaces", with("policy_uri", "https://app.example/a b"), "policy_uri"},
		{"tos_uri without host", with("tos_uri", "https:///tos"), "tos_uri"},
		{"mTLS subject", with("tls_client_auth_subject_dn", "CN=app"), "tls_client_auth_subject_dn"},
		{"mTLS SAN", with("tls_client_auth_san_dns", "app.example"), "tls_client_auth_san_dns"},
		{"certificate-bound tokens", with("tls_client_certificate_bound_access_tokens", true), "tls_client_certificate_bound_access_tokens"},
		{"negative secret expiry", with("client_secret_expires_at", -1), "client_secret_expires_at"},
		{"privacy scope name", with("privacy", map[string]any{"scopes": map[string]any{"bad name": map[string]any{"purpose": "x"}}}), "privacy.scopes.bad name"},
		{"privacy category without name", with("privacy", map[string]any{"scopes": map[string]any{"email": map[string]any{"pii_categories": []any{map[string]any{}}}}}), "privacy.scopes.email.pii_categories[0].name"},
		{"privacy unknown member", with("privacy", map[string]any{"scopes": map[string]any{"email": map[string]any{"why": "x"}}}), "why"},
		{"audience twice", with("audience", []string{"a", "a"}), "audience[1]"},
		{"blank audience", with("audience", []string{" "}), "audience[0]"},
		{"long client_name", with("client_name", strings.Repeat("n", 257)), "client_name"},
		{"bad label", with("labels", map[string]string{"-x-": "v"}), "labels.-x-"},
		{"tenant mismatch", with("tenant_id", "other"), "tenant_id"},
		{"wrong type", with("public", "yes"), "public"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
			r := e.do("POST", clientsPath, rootToken, c.body)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			r.errorCode(t)
			m := r.json(t)
			if f, _ := m["details"].(map[string]any)["field"].(string); f != c.field {
				t.Fatalf("details.field %q, want %q: %s", f, c.field, r.body)
			}
			if !strings.Contains(m["error"].(string), c.field) {
				t.Fatalf("the message does not name %q: %s", c.field, m["error"])
			}
			e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused create wrote")
		})
	}
	e.t = t
	// What the rules allow.
	for i, b := range []map[string]any{
		with("scopes", []string{"pets:read", "pets:any", "openid", "profile", "email", "address", "phone", "offline_access"}),
		with("scope", "pets:read openid", "scopes", []string{"openid", "pets:read"}),
		with("grant_types", []string{"implicit"}, "response_types", []string{"id_token", "token", "id_token token"}),
		with("grant_types", []string{"authorization_code", "implicit", "refresh_token"}, "response_types", []string{"code", "id_token"}),
		with("jwks_uri", "https://app.example/jwks", "token_endpoint_auth_method", "private_key_jwt", "request_object_signing_alg", "RS256"),
		with("client_uri", "http://app.example", "logo_uri", "https://app.example/l.png", "request_uris", []string{"https://app.example/r"},
			"audience", []string{"https://api.example"}, "client_secret_expires_at", time.Now().Add(time.Hour).Unix(), "trusted", true,
			"privacy", map[string]any{"scopes": map[string]any{"email": map[string]any{"pii_categories": []any{map[string]any{"name": "HIPAA"}}, "purpose": "receipts"}}}),
	} {
		b["client_id"] = fmt.Sprintf("ok-%d", i)
		r := e.expect(e.do("POST", clientsPath, rootToken, b), 201).json(t)
		if i == 5 {
			p, _ := json.Marshal(r["privacy"])
			if string(p) != `{"scopes":{"email":{"pii_categories":[{"name":"HIPAA"}],"purpose":"receipts"}}}` {
				t.Fatalf("privacy: %s", p)
			}
		}
	}
}

func TestClientUpdateKeepsTheSecretAndReadOnlyFields(t *testing.T) {
	e := clientEnv(t, nil)
	created := e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "app", "authorization_server_id": "web",
		"redirect_uris": []string{"https://app.example/cb"}}), 201).json(t)
	secret := created["client_secret"].(string)
	got := e.expect(e.do("GET", clientsPath+"/app", rootToken, nil), 200).json(t)
	_, before := e.storedClient("acme", "app")

	body := maps.Clone(got)
	body["client_name"], body["trusted"] = "App 2", true
	upd := e.expect(e.do("PUT", clientsPath+"/app", rootToken, body), 200).json(t)
	_, after := e.storedClient("acme", "app")
	if upd["client_name"] != "App 2" || upd["trusted"] != true || upd["client_secret"] != "" ||
		after.SecretHash != before.SecretHash || after.ClientIDIssuedAt != before.ClientIDIssuedAt || !clientauth.ClientSecretValid(after, secret, time.Now()) {
		t.Fatalf("PUT: %v / %+v", upd, after)
	}
	for _, c := range []struct {
		name, field string
		change      map[string]any
	}{
		{"a secret", "client_secret", map[string]any{"client_secret": strings.Repeat("z", 40)}},
		{"another server", "authorization_server_id", map[string]any{"authorization_server_id": "narrow"}},
		{"system", "system", map[string]any{"system": true}},
		{"the issue time", "client_id_issued_at", map[string]any{"client_id_issued_at": 1}},
		{"a gateway", "gateway_id", map[string]any{"gateway_id": "edge"}},
		{"another id", "client_id", map[string]any{"client_id": "other", "id": "other"}},
		{"a bad redirect", "redirect_uris[0]", map[string]any{"redirect_uris": []string{"http://evil.example"}}},
	} {
		b := maps.Clone(body)
		maps.Copy(b, c.change)
		beforeSnap, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
		e.expectFieldError(e.do("PUT", clientsPath+"/app", rootToken, b), c.field)
		e.expectNothingWritten(t, "acme", beforeSnap, beforeOAuth, "a refused PUT ("+c.name+") wrote")
	}
	// PATCH: a merge patch through the PUT rules.
	p := e.expect(e.do("PATCH", clientsPath+"/app", rootToken, map[string]any{"post_logout_redirect_uris": []string{"https://app.example/bye"}},
		"Content-Type", admin.MergePatchType), 200).json(t)
	if fmt.Sprint(p["post_logout_redirect_uris"]) != "[https://app.example/bye]" || p["client_name"] != "App 2" {
		t.Fatalf("PATCH: %v", p)
	}
	// A client made public loses its secret.
	pub := e.expect(e.do("PATCH", clientsPath+"/app", rootToken, map[string]any{"public": true, "token_endpoint_auth_method": "none"},
		"Content-Type", admin.MergePatchType), 200).json(t)
	if _, spec := e.storedClient("acme", "app"); pub["public"] != true || spec.SecretHash != "" || clientauth.ClientSecretValid(spec, secret, time.Now()) {
		t.Fatalf("public client keeps a secret: %+v", spec)
	}
	e.expect(e.do("PUT", clientsPath+"/ghost", rootToken, map[string]any{"authorization_server_id": "web", "grant_types": []string{"client_credentials"}}), 404)
}

func TestClientSecretRotationWithGrace(t *testing.T) {
	e := clientEnv(t, nil)
	old := strings.Repeat("o", 32)
	e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web",
		"grant_types": []string{"client_credentials"}, "client_secret": old}), 201)
	rot := e.expect(e.do("POST", clientsPath+"/svc/secret", rootToken, map[string]any{"grace_period": "1h"}), 200)
	if rot.header.Get("Cache-Control") != "no-store" {
		t.Errorf("rotation answer is cacheable: %v", rot.header)
	}
	m := rot.json(t)
	next := m["client_secret"].(string)
	if len(next) != 43 || next == old || m["previous_secret_expires_at"] == nil {
		t.Fatalf("rotation: %v", m)
	}
	now := time.Now()
	o, spec := e.storedClient("acme", "svc")
	raw, _ := json.Marshal(o)
	if bytes.Contains(raw, []byte(next)) || bytes.Contains(raw, []byte(old)) {
		t.Fatalf("a clear secret is stored: %s", raw)
	}
	if !clientauth.ClientSecretValid(spec, next, now) || !clientauth.ClientSecretValid(spec, old, now) {
		t.Fatal("during the grace period both secrets are valid")
	}
	if end := spec.PreviousSecretExpiresAt; end == nil || end.Sub(now) > time.Hour || end.Sub(now) < 59*time.Minute {
		t.Fatalf("grace ends at %v", end)
	}
	later := now.Add(time.Hour + time.Second)
	if clientauth.ClientSecretValid(spec, old, later) || !clientauth.ClientSecretValid(spec, next, later) {
		t.Fatal("after the grace period only the new secret is valid")
	}
	// GET: no secret, the end of the grace period.
	g := e.expect(e.do("GET", clientsPath+"/svc", rootToken, nil), 200)
	if bytes.Contains(g.body, []byte(next)) || g.json(t)["previous_secret_expires_at"] == nil {
		t.Fatalf("GET after rotation: %s", g.body)
	}
	// No body: grace 0, the previous secret stops at once.
	third := e.expect(e.do("POST", clientsPath+"/svc/secret", rootToken, nil), 200).json(t)["client_secret"].(string)
	_, spec = e.storedClient("acme", "svc")
	if clientauth.ClientSecretValid(spec, next, time.Now()) || clientauth.ClientSecretValid(spec, old, time.Now()) || !clientauth.ClientSecretValid(spec, third, time.Now()) {
		t.Fatal("a rotation without grace left an old secret valid")
	}
	// Audited, without the secret.
	evs := e.eventsOf("acme", "clients")
	if len(evs) != 3 || evs[0]["action"] != "rotate" {
		t.Fatalf("events: %v", evs)
	}
	if raw, _ := json.Marshal(evs); bytes.Contains(raw, []byte(third)) || bytes.Contains(raw, []byte(spec.SecretHash)) {
		t.Fatalf("the rotate event shows the secret or its hash: %s", raw)
	}

	e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "cli", "authorization_server_id": "web", "public": true,
		"redirect_uris": []string{"http://127.0.0.1/cb"}}), 201)
	for _, c := range []struct {
		path  string
		body  any
		field string
	}{
		{"/svc/secret", map[string]any{"grace_period": "soon"}, "grace_period"},
		{"/svc/secret", map[string]any{"grace_period": "721h"}, "grace_period"},
		{"/svc/secret", map[string]any{"grace_period": "-1s"}, "grace_period"},
		{"/svc/secret", map[string]any{"grace": "1h"}, "grace"},
		{"/cli/secret", nil, "public"},
	} {
		before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
		e.expectFieldError(e.do("POST", clientsPath+c.path, rootToken, c.body), c.field)
		e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused rotation wrote")
	}
	// Expired secrets: a rotation would give one that does not work.
	e.expect(e.do("PATCH", clientsPath+"/svc", rootToken, map[string]any{"client_secret_expires_at": time.Now().Add(-time.Minute).Unix()},
		"Content-Type", admin.MergePatchType), 200)
	before, beforeOAuth := e.snapshot(), e.oauthObjects("acme")
	e.expectFieldError(e.do("POST", clientsPath+"/svc/secret", rootToken, nil), "client_secret_expires_at")
	e.expectNothingWritten(t, "acme", before, beforeOAuth, "a refused rotation of an expired client wrote")
	if r := e.do("POST", clientsPath+"/ghost/secret", rootToken, nil); r.status != 404 || r.errorCode(t) != httpapi.CodeNotFound {
		t.Fatalf("rotate an unknown client: %d %s", r.status, r.body)
	}
	if r := e.do("POST", clientsPath+"/svc/secret", rootToken, nil, "If-Match", `"1"`); r.status != 412 {
		t.Fatalf("rotate with a stale If-Match: %d %s", r.status, r.body)
	}
}

// markingRevoker records, in the delete's transaction, that a client's
// tokens were revoked (a token-revocations object), or fails.
type markingRevoker struct{ fail bool }

func (m markingRevoker) RevokeClient(ctx context.Context, tx store.Tx, tid, serverID, clientID string) error {
	if m.fail {
		return fmt.Errorf("revocation list: %w", store.ErrUnavailable)
	}
	spec, _ := json.Marshal(model.TokenRevocationSpec{Issuer: "https://gh.example/" + tid + "/" + serverID, Subject: clientID,
		ClientID: clientID, NotBefore: new(time.Now()), ExpiresAt: time.Now().Add(time.Hour)})
	return tx.Create(ctx, &store.Object{Kind: model.KindTokenRevocation, TenantID: tid, ID: "revoked-" + clientID, Spec: spec})
}

func TestClientDeleteRevokesItsTokensInTheTransaction(t *testing.T) {
	e := clientEnv(t, func(o *admin.Options) { o.Tokens = markingRevoker{} })
	e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web", "grant_types": []string{"client_credentials"}}), 201)
	e.expect(e.do("DELETE", clientsPath+"/svc", rootToken, nil), 204)
	e.expect(e.do("GET", clientsPath+"/svc", rootToken, nil), 404)
	if objs := e.oauthObjects("acme"); !strings.Contains(objs, model.KindTokenRevocation+"/revoked-svc") {
		t.Fatalf("no revocation was written with the delete: %s", objs)
	}
	// A revocation that fails aborts the delete: nothing changes.
	f := clientEnv(t, func(o *admin.Options) { o.Tokens = markingRevoker{fail: true} })
	f.expect(f.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web", "grant_types": []string{"client_credentials"}}), 201)
	before, beforeOAuth := f.snapshot(), f.oauthObjects("acme")
	if r := f.do("DELETE", clientsPath+"/svc", rootToken, nil); r.status != 503 {
		t.Fatalf("delete with a failing revocation: %d %s", r.status, r.body)
	}
	f.expectNothingWritten(t, "acme", before, beforeOAuth, "a delete whose revocation failed wrote")
	f.expect(f.do("GET", clientsPath+"/svc", rootToken, nil), 200)
}

func TestClientDeleteAndIsolation(t *testing.T) {
	e := clientEnv(t, nil)
	e.createTenant("other")
	e.oauthServer("other", "web")
	otherTok := e.credential("other")
	e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web", "grant_types": []string{"client_credentials"}}), 201)
	// Tenant other's credential: 403 on every route of acme's clients.
	for _, c := range []struct{ method, path string }{
		{"GET", clientsPath}, {"POST", clientsPath}, {"GET", clientsPath + "/svc"}, {"PUT", clientsPath + "/svc"},
		{"DELETE", clientsPath + "/svc"}, {"POST", clientsPath + "/svc/secret"},
	} {
		if r := e.do(c.method, c.path, otherTok, map[string]any{"authorization_server_id": "web"}); r.status != 403 {
			t.Errorf("%s %s with tenant other's credential: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// Acme's client does not exist for tenant other, nor acme's server.
	e.expect(e.do("GET", "/api/admin/other/clients/svc", otherTok, nil), 404)
	if l := e.expect(e.do("GET", "/api/admin/other/clients", otherTok, nil), 200).json(t); l["total"].(float64) != 0 {
		t.Fatalf("tenant other lists acme's clients: %v", l)
	}
	e.expect(e.do("POST", "/api/admin/other/clients", otherTok, map[string]any{"client_id": "x", "authorization_server_id": "narrow", "grant_types": []string{"client_credentials"}}), 400)
	// The server cannot go while it has clients.
	sch, err := admin.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.store.Update(context.Background(), func(ctx context.Context, tx store.Tx) error {
		_, err := sch.Delete(ctx, tx, model.KindServer, "acme", "web", 0, nil)
		return err
	})
	if err == nil {
		t.Fatal("a server with clients was deleted")
	}
	e.expect(e.do("DELETE", clientsPath+"/svc", rootToken, nil), 204)
	e.expect(e.do("DELETE", clientsPath+"/svc", rootToken, nil), 404)
	evs := e.eventsOf("acme", "clients")
	if len(evs) != 2 || evs[0]["action"] != "delete" {
		t.Fatalf("events: %v", evs)
	}
}

func TestClientsInTheConfigurationDocument(t *testing.T) {
	e := clientEnv(t, nil)
	e.expect(e.do("POST", clientsPath, rootToken, map[string]any{"client_id": "svc", "authorization_server_id": "web",
		"grant_types": []string{"client_credentials"}, "client_secret": strings.Repeat("k", 32)}), 201)
	e.expect(e.do("POST", clientsPath+"/svc/secret", rootToken, map[string]any{"grace_period": "2h"}), 200)
	e.expect(e.do("POST", "/api/admin/acme/claims", rootToken, map[string]any{"id": "mail", "authorization_server_id": "web", "name": "email",
		"mapping": "email", "type": "id_token", "scopes": []string{"email"}}), 201)
	_, src := e.storedClient("acme", "svc")
	doc := decodeDoc(t, e.expect(e.configDocument("acme", nil), 200).body)
	item, _ := docItem(t, doc, "clients", "svc")
	if item["secret_hash"] != src.SecretHash || item["previous_secret_hash"] != src.PreviousSecretHash || item["client_secret"] != nil || item["metadata"] != nil {
		t.Fatalf("exported client: %v", item)
	}
	// Into another tenant with the same server: the client authenticates
	// as before.
	e.createTenant("copy")
	e.oauthServer("copy", "web")
	e.oauthServer("copy", "narrow")
	e.expect(e.configDocument("copy", doc), 200)
	_, dst := e.storedClient("copy", "svc")
	if dst.SecretHash != src.SecretHash || dst.PreviousSecretHash != src.PreviousSecretHash || !dst.PreviousSecretExpiresAt.Equal(*src.PreviousSecretExpiresAt) ||
		dst.ClientIDIssuedAt != src.ClientIDIssuedAt {
		t.Fatalf("imported client: %+v, want %+v", dst, src)
	}
	claim := e.expect(e.do("GET", "/api/admin/copy/claims/mail", rootToken, nil), 200).json(t)
	if claim["name"] != "email" || fmt.Sprint(claim["scopes"]) != "[email]" {
		t.Fatalf("imported claim: %v", claim)
	}
	// Re-importing changes nothing; a bad hash is refused naming it.
	res := e.expect(e.configDocument("acme", doc), 200).json(t)
	if res["unchanged"].(map[string]any)["clients"] != float64(1) || res["unchanged"].(map[string]any)["claims"] != float64(1) {
		t.Fatalf("re-import: %v", res)
	}
	_, at := docItem(t, doc, "clients", "svc")
	docList(doc, "clients")[at].(map[string]any)["secret_hash"] = "not-hex"
	r := e.configDocument("acme", doc)
	if r.status != 400 || errDetails(t, r)["field"] != fmt.Sprintf("clients[%d].secret_hash", at) {
		t.Fatalf("import with a bad hash: %d %s", r.status, r.body)
	}
	// Nor can a document bring a client of the console's reserved id.
	docList(doc, "clients")[at].(map[string]any)["secret_hash"] = src.SecretHash
	docList(doc, "clients")[at].(map[string]any)["client_id"] = model.ConsoleClientID
	delete(docList(doc, "clients")[at].(map[string]any), "id")
	r = e.configDocument("acme", doc)
	if r.status != 400 || errDetails(t, r)["field"] != fmt.Sprintf("clients[%d].client_id", at) || !strings.Contains(string(r.body), "reserved") {
		t.Fatalf("import of the console's client id: %d %s", r.status, r.body)
	}
}
