package admin_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/admin"
	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/resource"
)

// kindFixture is what the conformance table needs to exercise one kind.
type kindFixture struct {
	// create is a valid create body; i makes its id and name unique.
	create func(i int) map[string]any
	// sameName is a body with another id and create(0)'s unique name.
	sameName map[string]any
	// user, when set, creates an object that keeps id from being deleted
	// (a Restrict reference) and returns its path.
	user func(e *env, id string) string
	// answersOnly: the kind's objects change only through their own
	// actions (invitations: accept, decline, revoke) — no PUT or PATCH,
	// no unique name, no labels; the steps about those are skipped.
	answersOnly bool
}

// fixtures holds one entry per kind with admin routes. A kind registered
// without one fails TestEveryKindHasAConformanceFixture.
var fixtures = map[string]kindFixture{
	"policies": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "policy_name": fmt.Sprintf("conf-%d", i), "definition": goodRego}
		},
		sameName: map[string]any{"id": "dup", "policy_name": "conf-0", "definition": goodRego},
		user: func(e *env, id string) string {
			e.expect(e.do("POST", "/api/admin/acme/apis", rootToken, map[string]any{"id": "uses-policy", "service_id": "base",
				"method": "GET", "path": "/uses-policy", "policy_id": id}), 201)
			return "/api/admin/acme/apis/uses-policy"
		},
	},
	"services": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i), "url": fmt.Sprintf("http://svc%d", i)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0", "url": "http://dup"},
		user: func(e *env, id string) string {
			e.expect(e.do("POST", "/api/admin/acme/scopes", rootToken, map[string]any{"id": "uses-service", "name": "uses:service", "service_id": id}), 201)
			return "/api/admin/acme/scopes/uses-service"
		},
	},
	"apis": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "service_id": "base", "method": "GET", "path": fmt.Sprintf("/conf%d/{id}", i)}
		},
		// An API's unique name is its route in its service.
		sameName: map[string]any{"id": "dup", "service_id": "base", "method": "GET", "path": "/conf0/{other}"},
	},
	"scopes": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf:%d", i)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf:0"},
	},
	"issuers": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i), "issuer": fmt.Sprintf("https://idp%d.example", i),
				"audiences": []string{"a"}, "jwks": json.RawMessage(testJWKS)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0", "issuer": "https://dup.example", "audiences": []string{"a"}, "jwks": json.RawMessage(testJWKS)},
	},
	"gateways": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i), "type": "envoy"}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0", "type": "envoy"},
	},
	// No user: a server in use (by a client, gateway, service or scope)
	// is refused with 400 in_use rather than 409 (servers_test.go).
	"servers": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0"},
	},
	"groups": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0"},
	},
	"projects": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0"},
	},
	"service-accounts": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i)}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0"},
	},
	// The kind only tests register (admin.AddNoteKind).
	"notes": {
		create: func(i int) map[string]any {
			return map[string]any{"id": fmt.Sprintf("c%d", i), "name": fmt.Sprintf("conf-%d", i), "text": "hello"}
		},
		sameName: map[string]any{"id": "dup", "name": "conf-0", "text": "again"},
	},
}

// testScheme is the admin scheme plus the test-only notes kind.
func testScheme(t *testing.T) *resource.Scheme {
	t.Helper()
	sch := resource.NewScheme()
	admin.AddToScheme(sch)
	admin.AddNoteKind(sch)
	if err := sch.Complete(); err != nil {
		t.Fatal(err)
	}
	return sch
}

// routedKinds are the scheme's tenant kinds with admin routes.
func routedKinds(e *env, sch *resource.Scheme) []*resource.Kind {
	var out []*resource.Kind
	for _, k := range sch.Kinds() {
		if !k.Internal && !k.System {
			out = append(out, k)
		}
	}
	return out
}

func TestEveryKindHasAConformanceFixture(t *testing.T) {
	sch := testScheme(t)
	for _, k := range routedKinds(nil, sch) {
		if _, ok := fixtures[k.Name]; !ok {
			t.Errorf("kind %q has admin routes but no conformance fixture (admin/conformance_test.go)", k.Name)
		}
	}
}

// TestTheRegistryDrivesEverything: every registered kind is in each place
// that enumerates kinds — its routes, the configuration document, the
// bundle inputs — and a kind registered in a test (notes) gets all of it
// from its one registration.
func TestTheRegistryDrivesEverything(t *testing.T) {
	sch := testScheme(t)
	e := newEnvWith(t, func(o *admin.Options) { o.Scheme = sch })
	e.createTenant("acme")
	routes := map[string]bool{}
	for _, r := range e.api.Routes() {
		routes[r.Method+" "+r.Path] = true
	}
	doc := e.expect(e.do("GET", "/api/system/configuration?tid=acme", rootToken, nil), 200).json(t)
	for _, k := range sch.Kinds() {
		if !k.Internal && !k.System {
			coll := "/api/admin/:tid/" + k.Name
			for _, m := range []string{"GET", "POST"} {
				if !routes[m+" "+coll] {
					t.Errorf("kind %q: no route %s %s", k.Name, m, coll)
				}
			}
			n := 0
			for r := range routes {
				for _, m := range []string{"GET ", "PUT ", "PATCH ", "DELETE "} {
					if rest, ok := cutPrefix(r, m+coll+"/:"); ok && !containsSlash(rest) {
						n++
					}
				}
			}
			if want := map[bool]int{false: 4, true: 2}[fixtures[k.Name].answersOnly]; n != want {
				t.Errorf("kind %q: %d of GET, PUT, PATCH, DELETE %s/{id} routed, want %d", k.Name, n, coll, want)
			}
		}
		// The document's lists are the kinds' names with "_" for "-".
		if _, inDoc := doc[strings.ReplaceAll(k.Name, "-", "_")]; inDoc != k.Exported {
			t.Errorf("kind %q: exported %v, in the configuration document %v", k.Name, k.Exported, inDoc)
		}
	}
	if err := bundles.CheckInputs(sch.Bundled()); err != nil {
		t.Error(err)
	}
	// A bundled kind the compiler does not read is refused at start.
	bad := resource.NewScheme()
	admin.AddToScheme(bad)
	bad.MustRegister(&resource.Kind{Name: "widgets", Singular: "widget", Internal: true, Bundled: true})
	if _, err := admin.New(admin.Options{Store: e.store, BootstrapToken: rootToken, Bundles: e.bundles, Keys: e.keys, Scheme: bad}); err == nil {
		t.Error("a bundled kind the compiler does not read was accepted")
	}
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func containsSlash(s string) bool { return slices.Contains([]byte(s), '/') }

// TestAdminConformance runs the same specification against every kind
// with admin routes (SpiceDB's shared datastore suite, for the API).
func TestAdminConformance(t *testing.T) {
	sch := testScheme(t)
	for _, k := range routedKinds(nil, sch) {
		fx, ok := fixtures[k.Name]
		if !ok {
			continue // TestEveryKindHasAConformanceFixture fails
		}
		t.Run(k.Name, func(t *testing.T) {
			e := newEnvWith(t, func(o *admin.Options) { o.Scheme = sch })
			e.createTenant("acme")
			e.createTenant("other")
			otherTok := e.credential("other")
			e.expect(e.do("POST", "/api/admin/acme/services", rootToken, map[string]any{"id": "base", "name": "Base", "url": "http://base"}), 201)
			coll := "/api/admin/acme/" + k.Name
			one := coll + "/c0"
			var got map[string]any
			var tag string
			steps := []struct {
				name string
				run  func(t *testing.T)
			}{
				{"create answers 201 with an ETag", func(t *testing.T) {
					r := e.expect(e.do("POST", coll, rootToken, fx.create(0)), 201)
					if r.header.Get("ETag") == "" || r.json(t)["id"] != "c0" {
						t.Fatalf("create: %v %s", r.header, r.body)
					}
				}},
				{"a second object with the same name is 409", func(t *testing.T) {
					r := e.do("POST", coll, rootToken, fx.sameName)
					if r.status != http.StatusConflict {
						t.Fatalf("duplicate name: %d %s", r.status, r.body)
					}
				}},
				{"a bad field is 400 naming it and writes nothing", func(t *testing.T) {
					before := e.snapshot()
					body := fx.create(1)
					if !fx.answersOnly {
						body["labels"] = map[string]string{"-bad-": "x"}
						e.expectFieldError(e.do("POST", coll, rootToken, body), "labels.-bad-")
					}
					body = fx.create(1)
					body["colour"] = "red"
					e.expectFieldError(e.do("POST", coll, rootToken, body), "colour")
					e.requireUnchanged(t, before, "a refused create changed the store")
				}},
				{"get answers the object with its ETag, 304 when unchanged", func(t *testing.T) {
					r := e.expect(e.do("GET", one, rootToken, nil), 200)
					got, tag = r.json(t), r.header.Get("ETag")
					e.expect(e.do("GET", one, rootToken, nil, "If-None-Match", tag), 304)
				}},
				{"GET's body is a valid PUT body", func(t *testing.T) {
					r := e.expect(e.do("PUT", one, rootToken, got, "If-Match", tag), 200)
					if !sameExceptVolatile(got, r.json(t)) {
						t.Fatalf("PUT of GET's body changed the object:\nbefore %v\nafter  %v", got, r.json(t))
					}
				}},
				{"a stale If-Match is 412 for PUT and PATCH", func(t *testing.T) {
					e.expect(e.do("PUT", one, rootToken, got, "If-Match", tag), 412)
					e.expect(e.do("PATCH", one, rootToken, map[string]any{"labels": map[string]string{"x": "y"}},
						"If-Match", tag, "Content-Type", admin.MergePatchType), 412)
				}},
				{"PATCH changes only the fields given", func(t *testing.T) {
					before := e.expect(e.do("GET", one, rootToken, nil), 200).json(t)
					r := e.expect(e.do("PATCH", one, rootToken, map[string]any{"labels": map[string]string{"team": "core"}},
						"Content-Type", admin.MergePatchType), 200)
					after := r.json(t)
					if l, _ := after["labels"].(map[string]any); l["team"] != "core" {
						t.Fatalf("PATCH did not set the label: %s", r.body)
					}
					delete(before, "labels")
					delete(after, "labels")
					if !sameExceptVolatile(before, after) {
						t.Fatalf("PATCH changed other fields:\nbefore %v\nafter  %v", before, after)
					}
					e.expect(e.do("PATCH", one, rootToken, map[string]any{"labels": nil}, "Content-Type", "application/json"), 415)
					e.expectFieldError(e.do("PATCH", one, rootToken, map[string]any{"colour": "red"}, "Content-Type", admin.MergePatchType), "colour")
				}},
				{"another tenant's credential is 403 on every route", func(t *testing.T) {
					methods := []string{"GET", "PUT", "PATCH", "DELETE"}
					if fx.answersOnly {
						methods = []string{"GET", "DELETE"}
					}
					for _, m := range methods {
						if r := e.do(m, one, otherTok, got, "Content-Type", contentTypeFor(m)); r.status != 403 {
							t.Errorf("%s %s with tenant other's credential: %d %s", m, one, r.status, r.body)
						}
					}
					if r := e.do("GET", coll, otherTok, nil); r.status != 403 {
						t.Errorf("list with tenant other's credential: %d", r.status)
					}
				}},
				{"an unknown tenant is 404", func(t *testing.T) {
					e.expect(e.do("GET", "/api/admin/nosuch/"+k.Name, rootToken, nil), 404)
				}},
				{"list has total and next", func(t *testing.T) {
					m := e.expect(e.do("GET", coll+"?limit=1", rootToken, nil), 200).json(t)
					if _, ok := m["total"]; !ok {
						t.Errorf("list without total: %v", m)
					}
					if _, ok := m["next"]; !ok {
						t.Errorf("list without next: %v", m)
					}
				}},
				{"delete is 409 while the object is in use", func(t *testing.T) {
					user := fx.user(e, "c0")
					if r := e.do("DELETE", one, rootToken, nil); r.status != 409 || r.errorCode(t) != httpapi.CodeInUse {
						t.Fatalf("delete in use: %d %s", r.status, r.body)
					}
					e.expect(e.do("DELETE", user, rootToken, nil), 204)
				}},
				{"delete answers 204, then the object is gone", func(t *testing.T) {
					e.expect(e.do("DELETE", one, rootToken, nil), 204)
					e.expect(e.do("GET", one, rootToken, nil), 404)
				}},
			}
			for _, st := range steps {
				if st.name == "delete is 409 while the object is in use" && fx.user == nil {
					continue // no kind references this one with a restricting reference
				}
				if fx.answersOnly && slices.Contains(updateSteps, st.name) {
					continue
				}
				if !t.Run(st.name, func(t *testing.T) { e.t = t; st.run(t) }) {
					return
				}
			}
		})
	}
}

// updateSteps are the conformance steps of kinds with PUT, PATCH,
// unique names and labels (not answersOnly kinds).
var updateSteps = []string{"a second object with the same name is 409", "GET's body is a valid PUT body",
	"a stale If-Match is 412 for PUT and PATCH", "PATCH changes only the fields given"}

func contentTypeFor(method string) string {
	if method == "PATCH" {
		return admin.MergePatchType
	}
	return "application/json"
}

// sameExceptVolatile compares two renderings of an object, ignoring what
// every write changes (metadata) and what the server reports live
// (a gateway's status).
func sameExceptVolatile(a, b map[string]any) bool {
	strip := func(m map[string]any) map[string]any {
		m = maps.Clone(m)
		delete(m, "metadata")
		delete(m, "status")
		return m
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
