package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

const configPath = "/api/system/configuration"

// buildRichTenant configures tenant tid through the API with every kind of
// object and every optional field set somewhere. It returns the token of
// the gateway "edge" and every secret in clear the API handed out or was
// given (server and client secrets, the gateway client's secret, a static
// user's password), none of which may ever appear in an export.
func (e *env) buildRichTenant(tid string) (edgeToken string, secrets []string) {
	e.t.Helper()
	base := "/api/admin/" + tid
	post := func(path string, body map[string]any) map[string]any {
		e.t.Helper()
		return e.expect(e.do("POST", base+path, rootToken, body), 201).json(e.t)
	}
	e.expect(e.do("PUT", base+"/tenant", rootToken, map[string]any{
		"name": "Rich " + tid, "description": "a tenant with everything", "labels": map[string]string{"env": "prod"},
		"authentication_context_settings": map[string]any{"attributes": []any{map[string]any{"name": "email", "type": "string"}}},
	}), 200)
	post("/policies", map[string]any{"id": "keyed", "policy_name": "keyed", "description": "needs a key", "definition": goodRego,
		"labels": map[string]string{"team": "a"}})
	post("/policies", map[string]any{"id": "hdr", "policy_name": "header check", "type": "api", "dry_run": true,
		"validators": []any{map[string]any{"name": "header", "conf": map[string]any{"name": "x-key", "value": "k"}}}, "tests": "package policy\n\ntest_key if allow with input as {\"attributes\": {\"request\": {\"http\": {\"headers\": {\"x-key\": \"k\"}}}}}\n"})
	post("/services", map[string]any{"id": "pets", "name": "Pets", "description": "pet store", "url": "http://pets.internal:8080",
		"hosts": []string{"Pets.Example.com", "*.pets.example.com"}, "server_id": "default", "labels": map[string]string{"tier": "1"}})
	post("/services", map[string]any{"id": "shop", "name": "Shop", "url": "https://shop.internal",
		"cors": map[string]any{"allowed_origins": []string{"https://shop.example.com"}, "allowed_methods": []string{"GET"}, "max_age": 60}})
	post("/services", map[string]any{"id": "legacy", "name": "Legacy", "url": "http://legacy"})
	e.expect(e.do("POST", base+"/services/legacy/apis/import/text", rootToken, fixture(e.t, "petstore-3.0.yaml"), "Content-Type", "text/plain"), 200)
	post("/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "get", "path": "/pets/{id}", "policy_id": "keyed",
		"data_classifications": []string{"pii"}, "claims_to_headers": map[string]string{"sub": "x-user"}, "labels": map[string]string{"v": "1"}})
	post("/apis", map[string]any{"id": "files", "service_id": "pets", "method": "*", "path": "/files/{path...}", "can_have_policy": false, "position": 3})
	post("/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/health", "public": true})
	post("/apis", map[string]any{"id": "items", "service_id": "shop", "method": "GET", "path": "/items", "policy_id": "hdr"})
	post("/scopes", map[string]any{"id": "pets-read", "name": "pets.read", "display_name": "Read pets", "description": "read",
		"service_id": "pets", "server_id": "default", "labels": map[string]string{"k": "v"}})
	post("/scopes", map[string]any{"id": "profile", "name": "profile"})
	post("/issuers", map[string]any{"id": "idp", "name": "IdP", "description": "corporate", "issuer": "https://idp.example.com",
		"audiences": []string{"pets-api", "shop"}, "jwks": json.RawMessage(testJWKS), "labels": map[string]string{"k": "v"}})
	post("/issuers", map[string]any{"id": "remote", "name": "Remote", "issuer": "https://login.example.org", "audiences": []string{"x"},
		"jwks_uri": "https://login.example.org/keys"})
	post("/issuers", map[string]any{"id": "oidc", "name": "OIDC", "issuer": "https://accounts.example.net", "audiences": []string{"y"}, "discovery": true})
	gw := post("/gateways", map[string]any{"id": "edge", "name": "Edge", "description": "the edge", "service_ids": []string{"shop", "pets"},
		"dry_run": true, "allow_unmatched_routes": true, "server_id": "default", "listener_address": "127.0.0.1", "listener_port": 10001,
		"request_body": map[string]any{"max_request_bytes": 4096, "allow_partial_message": true}, "labels": map[string]string{"zone": "eu"}})
	post("/gateways", map[string]any{"id": "mesh", "name": "Mesh", "type": "grpc"})

	// An authorization server with every setting, a static login, two
	// clients (one with a secret rotated under a grace period, one
	// authenticating with its keys) and a claim.
	serverSecret := "server-secret-" + strings.Repeat("s", 32)
	srv := post("/servers", map[string]any{"id": "login", "name": "Login", "description": "the login server", "secret": serverSecret,
		"key_type": "ecdsa", "grant_types": []string{"authorization_code", "refresh_token", "client_credentials"},
		"authorization_code_ttl": "5m", "access_token_ttl": "30m", "id_token_ttl": "20m", "refresh_token_ttl": "48h",
		"cookie_max_age": "2h", "key_activation_delay": "1m", "enforce_pkce": true, "profiles": []string{},
		"logo_uri": "https://login.example.com/logo.png", "access_token_strategy": "opaque", "single_session_per_client": true,
		"audiences": []string{"pets-api"}, "enable_dynamic_client_registration": false, "user_policy_id": "", "developer_policy_id": "",
		"labels": map[string]string{"k": "v"}})
	password := "alice-password-" + tid
	e.expect(e.do("PUT", base+"/servers/login/authentications", rootToken, map[string]any{"methods": []any{map[string]any{
		"id": "static", "name": "Accounts", "method": "static", "static": map[string]any{"hint": "alice",
			"users": []any{map[string]any{"username": "alice", "password": password, "authentication_context": map[string]any{"email": "alice@example.com"}}}}}}}), 200)
	clientSecret := "client-secret-" + strings.Repeat("c", 32)
	web := post("/clients", map[string]any{"client_id": "web", "client_secret": clientSecret, "client_name": "Web app", "description": "the web app",
		"authorization_server_id": "login", "developer_id": "dev-1", "trusted": true, "audience": []string{"pets-api"},
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"redirect_uris": []string{"https://app.example.com/cb"}, "post_logout_redirect_uris": []string{"https://app.example.com/bye"},
		"scopes": []string{"profile"}, "token_endpoint_auth_method": "client_secret_post",
		"request_uris": []string{"https://app.example.com/request"}, "sector_identifier_uri": "https://app.example.com/sector.json",
		"client_uri": "https://app.example.com", "logo_uri": "https://app.example.com/logo.png", "policy_uri": "https://app.example.com/policy",
		"tos_uri": "https://app.example.com/tos", "client_secret_expires_at": time.Now().Add(24 * time.Hour).Unix(),
		"labels": map[string]string{"app": "web"}, "privacy": map[string]any{"scopes": map[string]any{"profile": map[string]any{
			"pii_categories": []any{map[string]any{"name": "email"}}, "purpose": "login"}}}})
	rotated := e.expect(e.do("POST", base+"/clients/web/secret", rootToken, map[string]any{"grace_period": "1h"}), 200).json(e.t)
	post("/clients", map[string]any{"client_id": "signer", "authorization_server_id": "login", "grant_types": []string{"client_credentials"},
		"token_endpoint_auth_method": "private_key_jwt", "jwks": json.RawMessage(testJWKS), "token_endpoint_signing_alg": "ES256",
		"request_object_signing_alg": "ES256", "userinfo_signed_response_alg": "ES256", "tls_client_certificate_bound_access_tokens": false})
	post("/claims", map[string]any{"id": "mail", "authorization_server_id": "login", "name": "email", "mapping": "email", "type": "id_token",
		"scopes": []string{"profile"}, "description": "the user's mail", "labels": map[string]string{"k": "v"}})

	e.waitBundles(tid, "edge", "mesh")
	secrets = []string{serverSecret, srv["secret"].(string), password, clientSecret, web["client_secret"].(string),
		rotated["client_secret"].(string), gw["client"].(map[string]any)["client_secret"].(string)}
	for i, s := range secrets {
		if len(s) < 32 && s != password {
			e.t.Fatalf("secret %d is too short to be one: %q", i, s)
		}
	}
	return gw["credential"].(map[string]any)["token"].(string), secrets
}

// checkNoClearSecrets fails unless the exported document is free of every
// secret in clear: none of the given secrets appears anywhere in it (in
// any encoding json.Marshal would use), and the only members whose names
// speak of secrets or passwords are hashes: secret hashes of 64 lowercase
// hex digits (SHA-256), password hashes as argon2id PHC strings.
func checkNoClearSecrets(t *testing.T, exported []byte, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		quoted, _ := json.Marshal(s)
		if bytes.Contains(exported, []byte(s)) || bytes.Contains(exported, quoted[1:len(quoted)-1]) {
			t.Fatalf("the export contains the secret %q: %s", s, exported)
		}
	}
	hashes := 0
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				lower := strings.ToLower(k)
				if strings.Contains(lower, "secret") || strings.Contains(lower, "password") {
					s, _ := x.(string)
					switch {
					case strings.Contains(lower, "secret") && strings.HasSuffix(lower, "_hash") && validSHA256Hex(s):
						hashes++
					case lower == "password_hash" && strings.HasPrefix(s, "$argon2id$"):
						hashes++
					case k == "client_secret_expires_at" || k == "previous_secret_expires_at":
					case k == "client_secret_set" && (x == true || x == false): // an identity provider's: whether it has one
					case k == "password" && isJSONObject(x): // a password login method's settings ({hint})
					default:
						t.Fatalf("the export has %s.%s = %v: only secret hashes (64 hex digits) and argon2id password hashes may be exported", path, k, x)
					}
				}
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	walk("", decodeDoc(t, exported))
	if hashes == 0 {
		t.Fatal("the export carries no secret hashes: the check above proves nothing")
	}
}

func isJSONObject(x any) bool { _, ok := x.(map[string]any); return ok }

// validSHA256Hex reports whether s is a SHA-256 digest in lowercase hex.
func validSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// waitBundles waits until the gateways have bundles, which also means the
// tenant's signing key exists: after that, the bundle manager writes
// nothing that moves the store revision.
func (e *env) waitBundles(tid string, gateways ...string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, gw := range gateways {
		for e.bundles.Get(tid, gw) == nil {
			if time.Now().After(deadline) {
				e.t.Fatalf("gateway %s/%s has no bundle", tid, gw)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (e *env) exportConfig(tid string) []byte {
	e.t.Helper()
	return e.expect(e.do("GET", configPath+"?tid="+tid, rootToken, nil), 200).body
}

func (e *env) importConfig(tid, mode string, doc any) resp {
	e.t.Helper()
	q := configPath + "?tid=" + tid
	if mode != "" {
		q += "&mode=" + mode
	}
	return e.do("PUT", q, rootToken, doc)
}

// importCounts imports and returns the counts as "action kind" -> n, for
// the non-zero ones.
func (e *env) importCounts(tid, mode string, doc any) map[string]int {
	e.t.Helper()
	m := e.expect(e.importConfig(tid, mode, doc), 200).json(e.t)
	out := map[string]int{}
	for _, action := range []string{"created", "updated", "deleted", "unchanged"} {
		counts := m[action].(map[string]any)
		for _, kind := range configKeys {
			n, ok := counts[kind].(float64)
			if !ok {
				e.t.Fatalf("%s.%s missing: %s", action, kind, m)
			}
			if n != 0 {
				out[action+" "+kind] = int(n)
			}
		}
		if len(counts) != len(configKeys) {
			e.t.Fatalf("%s: %v", action, counts)
		}
	}
	return out
}

// configKeys are the document's arrays, one per exported kind.
var configKeys = []string{"services", "apis", "policies", "scopes", "issuers", "identity_providers", "servers", "clients", "claims", "gateways",
	"users", "service_accounts", "groups", "projects"}

// sizes counts the objects of each kind in a document.
func sizes(doc map[string]any) map[string]int {
	n := map[string]int{}
	for _, key := range configKeys {
		n[key] = len(docList(doc, key))
	}
	return n
}

// counts builds the expected result of importCounts from per-kind counts
// for each action, given as alternating action and counts.
func counts(parts ...any) map[string]int {
	out := map[string]int{}
	for i := 0; i+1 < len(parts); i += 2 {
		for kind, n := range parts[i+1].(map[string]int) {
			if n != 0 {
				out[parts[i].(string)+" "+kind] += n
			}
		}
	}
	return out
}

// minus subtracts per-kind counts.
func minus(a, b map[string]int) map[string]int {
	out := maps.Clone(a)
	for k, v := range b {
		out[k] -= v
	}
	return out
}

func (e *env) expectCounts(got, want map[string]int) {
	e.t.Helper()
	if !maps.Equal(got, want) {
		e.t.Fatalf("import counts %v, want %v", got, want)
	}
}

func decodeDoc(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// docList returns one array of a document.
func docList(doc map[string]any, key string) []any { return doc[key].([]any) }

// docItem returns the object with that id in one array of a document, and
// its index.
func docItem(t *testing.T, doc map[string]any, key, id string) (map[string]any, int) {
	t.Helper()
	for i, x := range docList(doc, key) {
		if x.(map[string]any)["id"] == id {
			return x.(map[string]any), i
		}
	}
	t.Fatalf("no %s %q in the document", key, id)
	return nil, 0
}

// deepCopy clones a decoded document.
func deepCopy(t *testing.T, doc map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return decodeDoc(t, b)
}

func (e *env) eventCount(tid string) int {
	e.t.Helper()
	return len(e.expect(e.do("GET", "/api/admin/"+tid+"/events?limit=1000", rootToken, nil), 200).json(e.t)["events"].([]any))
}

// resourceView lists a kind through its resource endpoint, without the
// envelope fields that differ between tenants.
func (e *env) resourceView(tid, kind string) []map[string]any {
	e.t.Helper()
	// The document's list service_accounts is the collection service-accounts.
	list := items(e.t, e.expect(e.do("GET", "/api/admin/"+tid+"/"+strings.ReplaceAll(kind, "_", "-")+"?limit=1000", rootToken, nil), 200).json(e.t), kind)
	for _, x := range list {
		delete(x, "metadata")
		delete(x, "tenant_id")
		// Servers' and gateways' issuer URLs name the tenant, and so
		// does a gateway client's audience.
		if u, ok := x["issuer_url"].(string); ok {
			x["issuer_url"] = strings.Replace(u, "/"+tid+"/", "/{tid}/", 1)
		}
		if aud, ok := x["audience"].([]any); ok {
			for i, a := range aud {
				if a == model.GatewayAudience(tid, fmt.Sprint(x["gateway_id"])) {
					aud[i] = model.GatewayAudience("{tid}", fmt.Sprint(x["gateway_id"]))
				}
			}
		}
	}
	return list
}

// tenantNeutral is an exported document with the tenant's id, where it
// names the tenant (tenant.id, gateway clients' audiences), replaced by
// "{tid}".
func tenantNeutral(doc []byte, tid string) []byte {
	doc = bytes.Replace(doc, []byte(`"tenant":{"id":"`+tid+`"`), []byte(`"tenant":{"id":"{tid}"`), 1)
	return bytes.ReplaceAll(doc, []byte(`"`+model.GatewayAudience(tid, "")), []byte(`"`+model.GatewayAudience("{tid}", "")))
}

func TestConfigurationRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.createTenant("src")
	_, secrets := e.buildRichTenant("src")

	exported := e.exportConfig("src")
	if again := e.exportConfig("src"); !bytes.Equal(exported, again) {
		t.Fatalf("two exports differ:\n%s\n%s", exported, again)
	}
	// No secret in clear: servers and clients carry the SHA-256 of their
	// secrets (secret_hash), static users their argon2id hashes, and
	// nothing else; no gateway credential, no envelope field, no key.
	checkNoClearSecrets(t, exported, secrets)
	// (The grant type client_credentials and the signer client's method
	// private_key_jwt are the only "credential" and "private" that may be
	// there.)
	scrubbed := bytes.ReplaceAll(exported, []byte(`"token_endpoint_auth_method":"private_key_jwt"`), nil)
	scrubbed = bytes.ReplaceAll(scrubbed, []byte(`"client_credentials"`), nil)
	for _, word := range []string{"ghg_", "ghc_", "credential", "metadata", "revision", "uid", "tenant_id", "private", "sealed", `"d":`} {
		if bytes.Contains(scrubbed, []byte(word)) {
			t.Fatalf("the export contains %q: %s", word, exported)
		}
	}
	doc := decodeDoc(t, exported)
	if doc["version"] != float64(1) {
		t.Fatalf("version: %v", doc["version"])
	}
	tenant := doc["tenant"].(map[string]any)
	if tenant["id"] != "src" || tenant["name"] != "Rich src" || tenant["status"] != "AVAILABLE" || tenant["labels"].(map[string]any)["env"] != "prod" {
		t.Fatalf("tenant: %v", tenant)
	}
	n := sizes(doc)
	// Three services, the legacy one imported from OpenAPI with its APIs
	// and scopes.
	// Four servers: the tenant's system servers admin, developer and
	// default, and login. Three clients: web, signer and the gateway
	// edge's (it names a server).
	if n["services"] != 3 || n["apis"] < 6 || n["policies"] != 2 || n["scopes"] < 3 || n["gateways"] != 2 ||
		n["servers"] != 4 || n["clients"] != 3 || n["claims"] != 1 {
		t.Fatalf("exported objects: %v", n)
	}
	for _, key := range configKeys {
		list := docList(doc, key)
		ids := make([]string, 0, len(list))
		for _, x := range list {
			ids = append(ids, x.(map[string]any)["id"].(string))
		}
		if !slices.IsSorted(ids) {
			t.Fatalf("%s not sorted by id: %v", key, ids)
		}
	}
	if svc, _ := docItem(t, doc, "services", "pets"); fmt.Sprint(svc["hosts"]) != "[pets.example.com *.pets.example.com]" {
		t.Fatalf("hosts are exported normalised: %v", svc)
	}
	if gw, _ := docItem(t, doc, "gateways", "edge"); fmt.Sprint(gw["service_ids"]) != "[pets shop]" || gw["dry_run"] != true ||
		gw["allow_unmatched_routes"] != true || gw["listener_port"] != float64(10001) {
		t.Fatalf("gateway: %v", gw)
	}

	// Every writable field of every request body is in the document.
	spec, err := admin.OpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for schema, key := range map[string]string{"ServiceRequest": "services", "APIRequest": "apis", "PolicyRequest": "policies",
		"ScopeRequest": "scopes", "IssuerRequest": "issuers", "GatewayRequest": "gateways", "TenantRequest": "tenant",
		"ServerRequest": "servers", "ClientRequest": "clients", "ClaimRequest": "claims"} {
		seen := map[string]bool{}
		objs := []any{doc["tenant"]}
		if key != "tenant" {
			objs = docList(doc, key)
		}
		for _, x := range objs {
			for k := range x.(map[string]any) {
				seen[k] = true
			}
		}
		readOnly := []string{"tenant_id", "metadata", "status", "credential"}
		switch key {
		case "tenant":
			readOnly = []string{"url", "created", "metadata"}
			// The directory settings are the tenant's own, not its
			// configuration's: domains are unique across tenants and
			// provider_id names an identity provider (whose sealed
			// secret the document cannot carry); identity_provider
			// and admin_user are inputs of the tenant's create only.
			readOnly = append(readOnly, "organization_type", "domains", "provider_scope", "provider_id", "mfa_provider", "realm_name",
				"identity_provider", "admin_user")
		case "services", "scopes":
			// authorization_server_id is server_id's alias on input.
			readOnly = append(readOnly, "authorization_server_id")
		case "gateways":
			// The gateway's client is in clients; its issuer and the
			// server URL follow from server_id.
			readOnly = append(readOnly, "authorization_server_id", "client_id", "client", "issuer_url", "server_url")
		case "servers":
			// The secret is exported as secret_hash; the issuer URL
			// follows from the tenant and the id.
			// user_policy_id and developer_policy_id can only be empty
			// and are left out when they are. jwks imports private keys,
			// which are never exported (a copied server makes its own).
			readOnly = append(readOnly, "secret", "issuer_url", "user_policy_id", "developer_policy_id", "jwks")
		case "clients":
			// The secret is exported as secret_hash, scope (space
			// separated) as scopes; the mutual-TLS fields can only be
			// empty and are left out when they are.
			readOnly = append(readOnly, "client_secret", "scope", "tls_client_auth_subject_dn", "tls_client_auth_san_dns",
				"tls_client_auth_san_uri", "tls_client_auth_san_ip", "tls_client_auth_san_email")
		}
		for prop := range spec.Components.Schemas[schema].Value.Properties {
			if !seen[prop] && !slices.Contains(readOnly, prop) {
				t.Errorf("%s.%s is not in the exported %s", schema, prop, key)
			}
		}
	}

	// Import into another tenant: the same configuration, the same bytes.
	// The copy has its own system servers already: they are updated
	// (they take the document's secret hashes), every other object is
	// created.
	e.createTenant("copy")
	events := e.eventCount("copy")
	systemServers := map[string]int{"servers": 3}
	e.expectCounts(e.importCounts("copy", "", exported), counts("created", minus(n, systemServers), "updated", systemServers))
	// One event per object, plus the tenant's update.
	total := 0
	for _, k := range n {
		total += k
	}
	if got := e.eventCount("copy") - events; got != total+1 {
		t.Fatalf("%d audit events for the import, want %d", got, total+1)
	}
	// The copy's gateway client is the copy's gateway's: its tokens carry
	// the audience the copy's bundle service requires.
	if cl := e.expect(e.do("GET", "/api/admin/copy/clients/gateway-edge", rootToken, nil), 200).json(t); fmt.Sprint(cl["audience"]) !=
		"["+model.GatewayAudience("copy", "edge")+"]" || cl["gateway_id"] != "edge" || cl["system"] != true {
		t.Errorf("the copy's gateway client has audience %v, want [%s] (its tokens would not authenticate the copy's gateway edge): %v",
			cl["audience"], model.GatewayAudience("copy", "edge"), cl)
	}
	copied := e.exportConfig("copy")
	if !bytes.Equal(tenantNeutral(copied, "copy"), tenantNeutral(exported, "src")) {
		t.Fatalf("the copy exports differently:\n%s\n%s", exported, copied)
	}
	for _, kind := range configKeys {
		if a, b := e.resourceView("src", kind), e.resourceView("copy", kind); !reflect.DeepEqual(a, b) {
			t.Errorf("%s differ through the API:\n%v\n%v", kind, a, b)
		}
	}
	if a, b := e.expect(e.do("GET", "/api/admin/copy/tenant", rootToken, nil), 200).json(t), tenant; a["name"] != b["name"] ||
		a["description"] != b["description"] || fmt.Sprint(a["labels"]) != fmt.Sprint(b["labels"]) ||
		fmt.Sprint(a["authentication_context_settings"]) != fmt.Sprint(b["authentication_context_settings"]) {
		t.Fatalf("tenant not applied: %v", a)
	}

	// The imported gateways get bundles.
	e.waitBundles("copy", "edge", "mesh")

	// Re-importing the same document changes nothing at all.
	for _, tid := range []string{"copy", "src"} {
		before := e.snapshot()
		for _, mode := range []string{"replace", "merge"} {
			e.expectCounts(e.importCounts(tid, mode, exported), counts("unchanged", n))
		}
		e.requireUnchanged(t, before, "an unchanged re-import into "+tid+" wrote to the store")
	}

	// The imported gateway has no credential; one minted for it works.
	if creds := e.expect(e.do("GET", "/api/admin/copy/gateways/edge/credentials", rootToken, nil), 200).json(t); creds["total"] != float64(0) {
		t.Fatalf("an imported gateway got credentials: %v", creds)
	}
	cred := e.expect(e.do("POST", "/api/admin/copy/gateways/edge/credentials", rootToken, nil), 201).json(t)["token"].(string)
	e.waitBundle("/api/system/copy/gateways/edge/opa/bundle", cred)
}

// waitBundle fetches a gateway's bundle with its token until it is served.
func (e *env) waitBundle(path, token string) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	r := e.fetchBundle(path, token)
	for r.status != 200 && r.status != 401 && r.status != 403 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		r = e.fetchBundle(path, token)
	}
	if r.status != 200 {
		e.t.Fatalf("bundle %s: %d %s", path, r.status, r.body)
	}
}

func TestConfigurationReplaceMergeAndRenames(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	edgeToken, _ := e.buildRichTenant("acme")
	exported := e.exportConfig("acme")
	e.waitBundle("/api/system/acme/gateways/edge/opa/bundle", edgeToken)

	// Objects the document does not have.
	e.expect(e.do("POST", "/api/admin/acme/services", rootToken, map[string]any{"id": "extra", "name": "Extra", "url": "http://extra"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/apis", rootToken, map[string]any{"id": "extra-api", "service_id": "extra", "method": "GET", "path": "/x"}), 201)
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "unused", "policy_name": "unused", "definition": goodRego}), 201)
	e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "extra-scope", "name": "extra", "service_id": "extra"}), 201)
	gw2 := e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "gw2", "name": "gw2", "service_ids": []string{"extra"}}), 201).
		json(t)["credential"].(map[string]any)["token"].(string)
	e.waitBundle("/api/system/acme/gateways/gw2/opa/bundle", gw2)

	// merge keeps them.
	doc := decodeDoc(t, exported)
	n := sizes(doc)
	e.expectCounts(e.importCounts("acme", "merge", exported), counts("unchanged", n))
	e.expect(e.do("GET", "/api/admin/acme/services/extra", rootToken, nil), 200)
	// A merge may refer to objects the tenant has but the document lacks.
	merged := deepCopy(t, doc)
	merged["apis"] = append(docList(merged, "apis"), map[string]any{"id": "extra-2", "service_id": "extra", "method": "POST", "path": "/x", "policy_id": "unused"})
	e.expectCounts(e.importCounts("acme", "merge", merged), counts("unchanged", n, "created", map[string]int{"apis": 1}))
	// ... but a replace may not: they would be deleted.
	if r := e.importConfig("acme", "replace", merged); r.status != 400 ||
		r.json(t)["details"].(map[string]any)["field"] != fmt.Sprintf("apis[%d].service_id", n["apis"]) {
		t.Fatalf("replace with a reference outside the document: %d %s", r.status, r.body)
	}
	// A merge cannot give a new object a name a kept object has.
	clash := deepCopy(t, doc)
	clash["services"] = append(docList(clash, "services"), map[string]any{"id": "extra-twin", "name": "Extra", "url": "http://twin"})
	if r := e.importConfig("acme", "merge", clash); r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != "services[3].name" {
		t.Fatalf("merge with a name clash: %d %s", r.status, r.body)
	}

	// replace deletes them, the gateway's credentials with it.
	events := e.eventCount("acme")
	e.expectCounts(e.importCounts("acme", "replace", exported),
		counts("unchanged", n, "deleted", map[string]int{"apis": 2, "gateways": 1, "policies": 1, "scopes": 1, "services": 1}))
	if got := e.eventCount("acme") - events; got != 6+1 { // six objects and gw2's credential
		t.Fatalf("%d audit events for the replace, want 7", got)
	}
	for _, p := range []string{"services/extra", "apis/extra-api", "policies/unused", "scopes/extra-scope", "gateways/gw2"} {
		e.expect(e.do("GET", "/api/admin/acme/"+p, rootToken, nil), 404)
	}
	if r := e.fetchBundle("/api/system/acme/gateways/gw2/opa/bundle", gw2); r.status != 401 && r.status != 404 {
		t.Fatalf("a deleted gateway's credential still works: %d", r.status)
	}
	if !bytes.Equal(e.exportConfig("acme"), exported) {
		t.Fatal("after the replace the export differs from the document")
	}

	// Renames and swaps in one import: the services swap names, two APIs
	// swap paths, a policy takes the name of one the import deletes, and
	// the gateway "edge" is updated.
	e.expect(e.do("POST", "/api/admin/acme/policies", rootToken, map[string]any{"id": "old", "policy_name": "legacy name", "definition": goodRego}), 201)
	edited := deepCopy(t, doc)
	pets, _ := docItem(t, edited, "services", "pets")
	shop, _ := docItem(t, edited, "services", "shop")
	pets["name"], shop["name"] = shop["name"], pets["name"]
	getPet, _ := docItem(t, edited, "apis", "get-pet")
	health, _ := docItem(t, edited, "apis", "health")
	getPet["path"], health["path"] = "/health", "/pets/{petId}"
	keyed, _ := docItem(t, edited, "policies", "keyed")
	keyed["policy_name"] = "legacy name"
	edge, _ := docItem(t, edited, "gateways", "edge")
	edge["description"] = "still the edge"
	updated := map[string]int{"services": 2, "apis": 2, "policies": 1, "gateways": 1}
	e.expectCounts(e.importCounts("acme", "", edited),
		counts("updated", updated, "unchanged", minus(n, updated), "deleted", map[string]int{"policies": 1}))
	editedJSON, _ := json.Marshal(edited)
	if got := e.exportConfig("acme"); !reflect.DeepEqual(decodeDoc(t, got), decodeDoc(t, editedJSON)) {
		t.Fatalf("after the renames:\n%s\nwant\n%s", got, editedJSON)
	}
	// The updated gateway kept its credential.
	e.waitBundle("/api/system/acme/gateways/edge/opa/bundle", edgeToken)
	if creds := e.expect(e.do("GET", "/api/admin/acme/gateways/edge/credentials", rootToken, nil), 200).json(t); creds["total"] != float64(1) {
		t.Fatalf("credentials after the import: %v", creds)
	}

	// What the resource endpoints refuse to change, an import refuses too.
	moved := deepCopy(t, edited)
	_, i := docItem(t, moved, "apis", "items")
	docList(moved, "apis")[i].(map[string]any)["service_id"] = "pets"
	typed := deepCopy(t, edited)
	_, j := docItem(t, typed, "gateways", "edge")
	docList(typed, "gateways")[j].(map[string]any)["type"] = "grpc"
	rev := e.snapshot()
	for field, bad := range map[string]map[string]any{fmt.Sprintf("apis[%d].service_id", i): moved, fmt.Sprintf("gateways[%d].type", j): typed} {
		if r := e.importConfig("acme", "", bad); r.status != 400 || r.json(t)["details"].(map[string]any)["field"] != field {
			t.Errorf("%s: %d %s", field, r.status, r.body)
		}
	}
	e.requireUnchanged(t, rev, "a refused import changed the store")
}

func TestConfigurationInvalidDocuments(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.buildRichTenant("acme")
	exported := e.exportConfig("acme")
	doc := decodeDoc(t, exported)
	_, keyedAt := docItem(t, doc, "policies", "keyed")
	_, getPetAt := docItem(t, doc, "apis", "get-pet")
	_, edgeAt := docItem(t, doc, "gateways", "edge")
	_, petsReadAt := docItem(t, doc, "scopes", "pets-read")
	_, petsAt := docItem(t, doc, "services", "pets")
	n := sizes(doc)
	firstPetsAPI := slices.IndexFunc(docList(doc, "apis"), func(a any) bool { return a.(map[string]any)["service_id"] == "pets" })

	// edit returns a copy of the document changed by fn.
	edit := func(fn func(d map[string]any)) map[string]any {
		d := deepCopy(t, doc)
		fn(d)
		return d
	}
	at := func(d map[string]any, key string, i int) map[string]any { return docList(d, key)[i].(map[string]any) }
	badRego := "package policy\n\nallow if {\n\tx == 1\n}\n"
	cases := []struct {
		name        string
		body        any
		query       string
		status      int
		code, field string
	}{
		{"bad rego", edit(func(d map[string]any) { at(d, "policies", keyedAt)["definition"] = badRego }), "", 400, admin.CodeInvalidPolicy,
			fmt.Sprintf("policies[%d].definition", keyedAt)},
		{"bad validator", edit(func(d map[string]any) {
			at(d, "policies", 0)["validators"] = []any{map[string]any{"name": "telepathy"}}
			delete(at(d, "policies", 0), "definition")
			at(d, "policies", 0)["language"] = "validators"
		}), "", 400, admin.CodeInvalidPolicy, "policies[0].validators[0].name"},
		{"dangling service", edit(func(d map[string]any) { at(d, "apis", 0)["service_id"] = "ghost" }), "", 400, httpapi.CodeInvalidField, "apis[0].service_id"},
		{"dangling policy", edit(func(d map[string]any) { at(d, "apis", getPetAt)["policy_id"] = "ghost" }), "", 400, httpapi.CodeInvalidField,
			fmt.Sprintf("apis[%d].policy_id", getPetAt)},
		{"dangling scope service", edit(func(d map[string]any) { at(d, "scopes", petsReadAt)["service_id"] = "ghost" }), "", 400, httpapi.CodeInvalidField,
			fmt.Sprintf("scopes[%d].service_id", petsReadAt)},
		{"dangling gateway service", edit(func(d map[string]any) { at(d, "gateways", edgeAt)["service_ids"] = []string{"pets", "ghost"} }), "", 400,
			httpapi.CodeInvalidField, fmt.Sprintf("gateways[%d].service_ids[1]", edgeAt)},
		{"service deleted but referenced", edit(func(d map[string]any) {
			d["services"] = slices.Delete(docList(d, "services"), petsAt, petsAt+1)
		}), "", 400, httpapi.CodeInvalidField, fmt.Sprintf("apis[%d].service_id", firstPetsAPI)},
		{"duplicate id", edit(func(d map[string]any) {
			d["services"] = append(docList(d, "services"), map[string]any{"id": "pets", "name": "Another", "url": "http://x"})
		}), "", 400, httpapi.CodeInvalidField, "services[3].id"},
		{"duplicate name", edit(func(d map[string]any) {
			d["scopes"] = append(docList(d, "scopes"), map[string]any{"id": "again", "name": "pets.read"})
		}), "", 400, httpapi.CodeInvalidField, fmt.Sprintf("scopes[%d].name", n["scopes"])},
		{"duplicate route", edit(func(d map[string]any) {
			d["apis"] = append(docList(d, "apis"), map[string]any{"id": "twin", "service_id": "pets", "method": "GET", "path": "/pets/{petId}"})
		}), "", 400, httpapi.CodeInvalidField, fmt.Sprintf("apis[%d].path", n["apis"])},
		{"bad template", edit(func(d map[string]any) { at(d, "apis", 0)["path"] = "/files/{name}.{ext}" }), "", 400, httpapi.CodeInvalidField, "apis[0].path"},
		{"bad method", edit(func(d map[string]any) { at(d, "apis", 0)["method"] = "FETCH" }), "", 400, httpapi.CodeInvalidField, "apis[0].method"},
		{"bad url", edit(func(d map[string]any) { at(d, "services", 0)["url"] = "ftp://x" }), "", 400, httpapi.CodeInvalidField, "services[0].url"},
		{"bad host", edit(func(d map[string]any) { at(d, "services", petsAt)["hosts"] = []string{"ok.example", "not a host"} }), "", 400,
			httpapi.CodeInvalidField, fmt.Sprintf("services[%d].hosts[1]", petsAt)},
		{"bad gateway type", edit(func(d map[string]any) { at(d, "gateways", 0)["type"] = "pyron" }), "", 400, httpapi.CodeInvalidField, "gateways[0].type"},
		{"bad label", edit(func(d map[string]any) { at(d, "scopes", 0)["labels"] = map[string]string{"-bad-": "v"} }), "", 400,
			httpapi.CodeInvalidField, "scopes[0].labels.-bad-"},
		{"bad tenant", edit(func(d map[string]any) { d["tenant"].(map[string]any)["name"] = " " }), "", 400, httpapi.CodeMissingField, "tenant.name"},
		{"bad tenant id", edit(func(d map[string]any) { d["tenant"].(map[string]any)["id"] = "Not_Valid" }), "", 400, httpapi.CodeInvalidField, "tenant.id"},
		{"missing id", edit(func(d map[string]any) { delete(at(d, "gateways", 1), "id") }), "", 400, httpapi.CodeMissingField, "gateways[1].id"},
		{"bad id", edit(func(d map[string]any) { at(d, "policies", 1)["id"] = "a b" }), "", 400, httpapi.CodeInvalidField, "policies[1].id"},
		{"unknown field", edit(func(d map[string]any) { at(d, "services", 1)["colour"] = "red" }), "", 400, httpapi.CodeUnknownField, "services[1].colour"},
		{"unknown read-only field", edit(func(d map[string]any) { at(d, "apis", 1)["metadata"] = map[string]any{} }), "", 400, httpapi.CodeUnknownField,
			"apis[1].metadata"},
		{"unknown top-level field", edit(func(d map[string]any) { d["widgets"] = []any{} }), "", 400, httpapi.CodeUnknownField, "widgets"},
		{"wrong type", edit(func(d map[string]any) { at(d, "services", 0)["hosts"] = "x" }), "", 400, httpapi.CodeInvalidField, "services[0].hosts"},
		{"not an object", edit(func(d map[string]any) { docList(d, "scopes")[2] = 5 }), "", 400, httpapi.CodeInvalidField, "scopes[2]"},
		{"missing version", edit(func(d map[string]any) { delete(d, "version") }), "", 400, httpapi.CodeMissingField, "version"},
		{"future version", edit(func(d map[string]any) { d["version"] = 2 }), "", 400, httpapi.CodeInvalidField, "version"},
		{"missing tenant", edit(func(d map[string]any) { delete(d, "tenant") }), "", 400, httpapi.CodeMissingField, "tenant"},
		{"malformed JSON", `{"version":1,`, "", 400, httpapi.CodeInvalidJSON, ""},
		{"missing tid", exported, configPath, 400, httpapi.CodeMissingField, "tid"},
		{"bad tid", exported, configPath + "?tid=Not_Valid", 400, httpapi.CodeInvalidField, "tid"},
		{"bad mode", exported, configPath + "?tid=acme&mode=overwrite", 400, httpapi.CodeInvalidField, "mode"},
		{"unknown tenant", exported, configPath + "?tid=nobody", 404, httpapi.CodeNotFound, ""},
		{"too large", `{"version":1,"tenant":{"name":"` + strings.Repeat("x", 10<<20) + `"}}`, "", 413, httpapi.CodeBodyTooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rev := e.snapshot()
			path := c.query
			if path == "" {
				path = configPath + "?tid=acme"
			}
			r := e.do("PUT", path, rootToken, c.body)
			if r.status != c.status || r.errorCode(t) != c.code {
				t.Fatalf("status %d %q, want %d %q: %.400s", r.status, r.errorCode(t), c.status, c.code, r.body)
			}
			m := r.json(t)
			if c.field != "" {
				if f := m["details"].(map[string]any)["field"]; f != c.field {
					t.Fatalf("details.field %v, want %q: %.400s", f, c.field, r.body)
				}
				if !strings.HasPrefix(m["error"].(string), c.field+": ") {
					t.Fatalf("message does not start with the field: %s", m["error"])
				}
			}
			if c.code == admin.CodeInvalidPolicy && c.field == fmt.Sprintf("policies[%d].definition", keyedAt) {
				first := m["details"].(map[string]any)["errors"].([]any)[0].(map[string]any)
				if first["line"] != float64(4) || first["column"] != float64(2) {
					t.Fatalf("policy problem without its position: %v", first)
				}
			}
			e.requireUnchanged(t, rev, "a rejected import changed the store")
		})
	}
	if !bytes.Equal(e.exportConfig("acme"), exported) {
		t.Fatal("rejected imports changed the configuration")
	}
}

func TestConfigurationAccess(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	tok := e.credential("acme")
	doc := e.exportConfig("acme")
	for _, r := range []resp{
		e.do("GET", configPath+"?tid=acme", tok, nil),
		e.do("PUT", configPath+"?tid=acme", tok, doc),
	} {
		if r.status != 403 || r.errorCode(t) != httpapi.CodeForbidden {
			t.Errorf("tenant-bound credential: %d %s", r.status, r.body)
		}
	}
	e.expect(e.do("GET", configPath+"?tid=acme", "", nil), 401)
	for _, c := range []struct {
		path        string
		status      int
		code, field string
	}{
		{configPath, 400, httpapi.CodeMissingField, "tid"},
		{configPath + "?tid=", 400, httpapi.CodeMissingField, "tid"},
		{configPath + "?tid=UPPER", 400, httpapi.CodeInvalidField, "tid"},
		{configPath + "?tid=nobody", 404, httpapi.CodeNotFound, ""},
	} {
		r := e.do("GET", c.path, rootToken, nil)
		if r.status != c.status || r.errorCode(t) != c.code {
			t.Errorf("GET %s: %d %s", c.path, r.status, r.body)
		}
		if f, _ := r.json(t)["details"].(map[string]any)["field"].(string); f != c.field {
			t.Errorf("GET %s: field %q", c.path, f)
		}
	}
	// An empty tenant exports empty arrays, but for its system servers.
	m := decodeDoc(t, doc)
	for _, key := range configKeys {
		l, ok := m[key].([]any)
		if !ok {
			t.Errorf("%s: %v", key, m[key])
			continue
		}
		if key != "servers" {
			if len(l) != 0 {
				t.Errorf("%s: %v", key, m[key])
			}
			continue
		}
		var ids []string
		for _, x := range l {
			if x.(map[string]any)["system"] != true {
				t.Errorf("a new tenant's server is not a system server: %v", x)
			}
			ids = append(ids, x.(map[string]any)["id"].(string))
		}
		if fmt.Sprint(ids) != "[admin default developer]" {
			t.Errorf("a new tenant's servers: %v", ids)
		}
	}
}

// TestConfigurationReplaceKeepsAGatewaysClient: a gateway's client goes
// with its gateway (DELETE of the client alone is 400 in_use), so a
// replace import whose document keeps the gateway but lacks its client
// either keeps the client or is refused changing nothing; it never
// leaves the gateway without the client its tokens come from.
func TestConfigurationReplaceKeepsAGatewaysClient(t *testing.T) {
	e := newEnv(t)
	e.createTenant("acme")
	e.expect(e.do("POST", "/api/admin/acme/gateways", rootToken, map[string]any{"id": "edge", "name": "Edge", "server_id": "default"}), 201)
	doc := decodeDoc(t, e.exportConfig("acme"))
	if _, at := docItem(t, doc, "clients", "gateway-edge"); at != 0 || len(docList(doc, "clients")) != 1 {
		t.Fatalf("exported clients: %v", doc["clients"])
	}
	doc["clients"] = []any{}
	before := e.snapshot()
	r := e.importConfig("acme", "replace", doc)
	switch r.status {
	case 200:
		if c := e.do("GET", "/api/admin/acme/clients/gateway-edge", rootToken, nil); c.status != 200 {
			t.Fatalf("a replace import without the gateway's client deleted it (%s) and kept the gateway: GET %d %s", r.body, c.status, c.body)
		}
	case 400:
		e.requireUnchanged(t, before, "a refused import changed the store")
	default:
		t.Fatalf("replace without the gateway's client: %d %s", r.status, r.body)
	}
}
