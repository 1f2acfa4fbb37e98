package openapiimport

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
	"github.com/gatehouse-dev/gatehouse/store"
)

var target = Target{TenantID: "acme", ServiceID: "pets"}

// stored is an API of service pets as the store returns it.
func stored(id, operationID, method, path string) *store.Typed[model.APISpec] {
	ep, err := routing.ParseEndpoint(method, path)
	if err != nil {
		panic(err)
	}
	return &store.Typed[model.APISpec]{
		Meta: store.Object{TenantID: "acme", ID: id, UID: "uid-" + id, Name: ep.Name("pets"), ParentID: "pets", Revision: 3, CreatedBy: "alice"},
		Spec: model.APISpec{ServiceID: "pets", Method: ep.Method, Path: ep.Template.Raw, OperationID: operationID, Imported: operationID != "", CanHavePolicy: true},
	}
}

func isUUID(s string) bool { _, err := uuid.Parse(s); return err == nil }

// planned renders the plan's APIs as "id op METHOD path pos policy created".
func planned(p *Plan) []string {
	var out []string
	for _, pa := range p.APIs {
		a := pa.API
		id := a.Meta.ID
		if isUUID(id) {
			id = "<uuid>"
		}
		out = append(out, fmt.Sprintf("%s %s %s %s %d %q %v", id, a.Spec.OperationID, a.Spec.Method, a.Spec.Path, a.Spec.Position, a.Spec.PolicyID, pa.Create))
	}
	return out
}

// TestPlanMatchesOperationsWithAPIs: an operation's API is the service's
// API with its operationId, else the one whose id its operationId gives,
// else the one with its method and path shape; the others are removed.
// New APIs get the operationId's id unless it is taken.
func TestPlanMatchesOperationsWithAPIs(t *testing.T) {
	doc := mustParse(t, spec("",
		op("/v2/pets/{id}", "get", "getPet", pathParam("id")),             // route changed: by operationId
		op("/pets", "get", "listPets", ""),                                // operationId changed: by route
		op("/pets", "post", "createPet", ""),                              // made by hand with this id: by id
		op("/toys", "get", "toys", ""), op("/show", "get", "showPet", ""), // its id is held by the API "toys" keeps
		op("/health", "get", "health", ""), op("/metrics", "get", "", ""), // no operationId
		op("/other", "get", "other", ""),                          // id held by another service's API
		op("/files;{name}", "get", "getFile", pathParam("name")))) // ignored
	getPet := stored("getPet", "getPet", "GET", "/pets/{id}")
	getPet.Spec.PolicyID, getPet.Spec.DataClassifications, getPet.Meta.Labels = "readers", []string{"pii"}, map[string]string{"k": "v"}
	st := State{
		APIs: []*store.Typed[model.APISpec]{
			getPet,
			stored("generated-1", "oldList", "GET", "/pets"),
			stored("createPet", "", "PUT", "/by-hand"),
			stored("showPet", "toys", "GET", "/toys"),
			stored("deletePet", "deletePet", "DELETE", "/pets/{id}"),
			stored("manual", "", "GET", "/old"),
		},
		TakenIDs: map[string]bool{"other": true},
	}
	p, err := NewPlan(doc, target, st)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`getPet getPet GET /v2/pets/{id} 0 "readers" false`,
		`generated-1 listPets GET /pets 1 "" false`,
		`createPet createPet POST /pets 2 "" false`,
		`showPet toys GET /toys 3 "" false`,
		`<uuid> showPet GET /show 4 "" true`,
		`health health GET /health 5 "" true`,
		`<uuid>  GET /metrics 6 "" true`,
		`<uuid> other GET /other 7 "" true`,
	}
	if got := planned(p); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fmt.Sprint(ids(p.Remove)) != "[deletePet manual]" {
		t.Fatalf("removed: %v", ids(p.Remove))
	}
	if len(p.Ignored) != 1 || p.Ignored[0].OperationID != "getFile" {
		t.Fatalf("ignored: %+v", p.Ignored)
	}
	// Updates keep the stored envelope and the user's fields, get the new
	// name; the stored objects are not changed.
	up := p.APIs[0]
	if up.API.Meta.UID != "uid-getPet" || up.API.Meta.Revision != 3 || up.API.Meta.CreatedBy != "alice" || up.StoredName != "pets GET /pets/{}" ||
		up.API.Meta.Name != "pets GET /v2/pets/{}" || fmt.Sprint(up.API.Spec.DataClassifications) != "[pii]" || up.API.Meta.Labels["k"] != "v" {
		t.Fatalf("update: %+v %+v", up, up.API)
	}
	if getPet.Spec.Path != "/pets/{id}" || getPet.Meta.Name != "pets GET /pets/{}" {
		t.Fatalf("NewPlan changed the stored API: %+v", getPet)
	}
	for _, pa := range p.APIs {
		a := pa.API
		if !a.Spec.Imported || a.Spec.ServiceID != "pets" || a.Meta.ParentID != "pets" || a.Meta.TenantID != "acme" || !model.ValidObjectID(a.Meta.ID) {
			t.Fatalf("planned API: %+v", a)
		}
		if pa.Create && (!a.Spec.CanHavePolicy || a.Meta.UID != "" || pa.StoredName != "") {
			t.Fatalf("new API: %+v", pa)
		}
	}
}

func ids(l []*store.Typed[model.APISpec]) []string {
	var out []string
	for _, a := range l {
		out = append(out, a.Meta.ID)
	}
	return out
}

// TestPlanReimportIsStable: planning the same document against what its
// first import wrote updates every API in place.
func TestPlanReimportIsStable(t *testing.T) {
	doc := mustParse(t, spec("", op("/pets", "get", "listPets", ""), op("/pets", "post", "", ""), op("/toys", "get", "日本", "")))
	first, err := NewPlan(doc, target, State{})
	if err != nil {
		t.Fatal(err)
	}
	var st State
	for _, pa := range first.APIs {
		if !pa.Create {
			t.Fatalf("first import: %+v", pa)
		}
		a := *pa.API
		a.Meta.UID = "uid-" + a.Meta.ID
		st.APIs = append(st.APIs, &a)
	}
	again, err := NewPlan(doc, target, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Remove) != 0 || fmt.Sprint(planned(again)) != strings.ReplaceAll(fmt.Sprint(planned(first)), "true", "false") {
		t.Fatalf("re-import:\n%v\nfirst\n%v\nremoved %v", planned(again), planned(first), ids(again.Remove))
	}
	for i, pa := range again.APIs {
		if pa.API.Meta.ID != first.APIs[i].API.Meta.ID || pa.API.Meta.UID != "uid-"+pa.API.Meta.ID {
			t.Fatalf("API %d: %+v", i, pa.API.Meta)
		}
	}
}

// TestPlanBindsPolicies: an operation's x-gatehouse-policy, else the
// request's default, else the document's; defaults skip public APIs and
// APIs that cannot have a policy; without any, APIs keep theirs.
func TestPlanBindsPolicies(t *testing.T) {
	paths := []opSpec{op("/a", "get", "a", "x-gatehouse-policy: own"), op("/b", "get", "b", ""), op("/c", "get", "c", ""), op("/d", "get", "d", ""), op("/e", "get", "e", "")}
	st := func() State {
		pub := stored("c", "c", "GET", "/c")
		pub.Spec.Public = true
		locked := stored("d", "d", "GET", "/d")
		locked.Spec.CanHavePolicy = false
		bound := stored("e", "e", "GET", "/e")
		bound.Spec.PolicyID = "by-hand"
		return State{APIs: []*store.Typed[model.APISpec]{pub, locked, bound}, Policies: map[string]bool{"own": true, "doc": true, "req": true, "by-hand": true}}
	}
	policies := func(p *Plan) string {
		var out []string
		for _, pa := range p.APIs {
			out = append(out, pa.API.Meta.ID+"="+pa.API.Spec.PolicyID)
		}
		return strings.Join(out, " ")
	}
	for _, c := range []struct {
		name, top, request, want string
	}{
		{"none", "", "", "a=own b= c= d= e=by-hand"},
		{"document", "x-gatehouse-policy: doc\n", "", "a=own b=doc c= d= e=doc"},
		{"request", "", "req", "a=own b=req c= d= e=req"},
		{"request over document", "x-gatehouse-policy: doc\n", "req", "a=own b=req c= d= e=req"},
	} {
		tg := target
		tg.DefaultPolicyID = c.request
		p, err := NewPlan(mustParse(t, spec(c.top, paths...)), tg, st())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := policies(p); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}

	// An operation's own policy on an API that cannot take one is refused.
	doc := mustParse(t, spec("", op("/c", "get", "c", "x-gatehouse-policy: own"), op("/d", "get", "d", "x-gatehouse-policy: own")))
	_, err := NewPlan(doc, target, st())
	var errs field.ErrorList
	if !errors.As(err, &errs) || len(errs) != 2 || errs[0].Field != "paths./c.get.x-gatehouse-policy" || !strings.Contains(errs[0].Message, "is public") ||
		errs[1].Field != "paths./d.get.x-gatehouse-policy" || !strings.Contains(errs[1].Message, "can_have_policy false") {
		t.Fatalf("own policy on public/locked APIs: %v", err)
	}
}

// TestPlanRefusesUnknownPolicies: every policy the request or the
// document names must exist; each missing one is a field error naming
// where it came from, the request's first.
func TestPlanRefusesUnknownPolicies(t *testing.T) {
	doc := mustParse(t, spec("x-gatehouse-policy: nodoc\n", op("/a", "get", "a", "x-gatehouse-policy: ok"), op("/b", "get", "b", "x-gatehouse-policy: noop"), op("/files;{name}", "get", "getFile", "x-gatehouse-policy: noignored\n      "+pathParam("name"))))
	tg := target
	tg.DefaultPolicyID = "noreq"
	_, err := NewPlan(doc, tg, State{Policies: map[string]bool{"ok": true}})
	var errs field.ErrorList
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Field+": "+e.Message)
	}
	want := []string{
		`policy_id: policy "noreq" does not exist`,
		`x-gatehouse-policy: policy "nodoc" does not exist (the document's default policy)`,
		`paths./b.get.x-gatehouse-policy: policy "noop" does not exist (operation GET /b (operationId "b"))`,
		`paths./files;{name}.get.x-gatehouse-policy: policy "noignored" does not exist (operation GET /files;{name} (operationId "getFile"))`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range errs {
		if e.Code != field.CodeInvalid {
			t.Fatalf("code %q", e.Code)
		}
	}
}

func TestPlanScopes(t *testing.T) {
	doc := mustParse(t, []byte(`openapi: 3.0.3
info: {title: t, version: '1'}
paths: {}
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: https://auth.example.com/token
          scopes: {"pets:read": Read pets, "pets:write": Write pets, "bad scope": nope}
`))
	p, err := NewPlan(doc, target, State{Scopes: map[string]string{"pets:read": "pr"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.CreateScopes) != 1 || p.CreateScopes[0].Meta.Name != "pets:write" || p.CreateScopes[0].Meta.Description != "Write pets" ||
		p.CreateScopes[0].Spec.ServiceID != "pets" || !isUUID(p.CreateScopes[0].Meta.ID) {
		t.Fatalf("created: %+v", p.CreateScopes)
	}
	if fmt.Sprint(p.IgnoredScopes) != fmt.Sprint([]IgnoredScope{
		{Name: "bad scope", Reason: `not a valid scope name (1-256 printable ASCII characters without spaces, '"' or '\')`},
		{Name: "pets:read", ScopeID: "pr", Reason: "a scope with this name already exists"},
	}) {
		t.Fatalf("ignored: %+v", p.IgnoredScopes)
	}
}
