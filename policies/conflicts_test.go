package policies

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// conflictService is a service with its APIs ("METHOD /path" keyed by id).
type conflictService struct {
	id    string
	hosts []string
	apis  [][3]string // id, method, path
}

func conflictConfig(gateways map[string][]string, services ...conflictService) *Config {
	cfg := &Config{}
	for gid, ids := range gateways {
		cfg.Gateways = append(cfg.Gateways, Object[model.GatewaySpec]{ID: gid, Name: gid, Spec: model.GatewaySpec{Type: model.GatewayEnvoy, ServiceIDs: ids}})
	}
	for _, s := range services {
		cfg.Services = append(cfg.Services, Object[model.ServiceSpec]{ID: s.id, Name: s.id, Spec: model.ServiceSpec{URL: "http://" + s.id, Hosts: s.hosts}})
		for _, a := range s.apis {
			cfg.APIs = append(cfg.APIs, Object[model.APISpec]{ID: a[0], Spec: model.APISpec{ServiceID: s.id, Method: a[1], Path: a[2]}})
		}
	}
	return cfg
}

func conflictStrings(rcs []RouteConflict) []string {
	var out []string
	for _, rc := range rcs {
		out = append(out, fmt.Sprintf("%s %s %s@%s", rc.GatewayID, rc.A.ID, rc.B.ID, rc.Domain))
	}
	return out
}

// TestRouteConflictsAcrossVirtualHosts: two services conflict when a host
// of one is covered by the other the way routing selects virtual hosts
// (exact, longest wildcard, default) and they have APIs of one path shape
// with overlapping methods.
func TestRouteConflictsAcrossVirtualHosts(t *testing.T) {
	all := map[string][]string{"edge": nil}
	get := func(id, path string) [3]string { return [3]string{id, "GET", path} }
	cases := []struct {
		name     string
		gateways map[string][]string
		a, b     conflictService
		want     []string // "gateway A B@domain"
		// host and path of a request that, for a conflict, each service
		// alone routes to its API and both together route to only one.
		host, path string
	}{
		{name: "same exact host", a: conflictService{"a", []string{"api.example.com"}, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", []string{"API.example.com"}, [][3]string{get("b1", "/admin")}},
			want: []string{"edge a1 b1@api.example.com"}, host: "api.example.com", path: "/admin"},
		{name: "exact under a covering wildcard", a: conflictService{"a", []string{"*.example.com"}, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", []string{"other.test", "api.example.com"}, [][3]string{get("b1", "/admin")}},
			want: []string{"edge a1 b1@api.example.com"}, host: "api.example.com", path: "/admin"},
		{name: "wildcard of another suffix", a: conflictService{"a", []string{"*.example.org"}, [][3]string{get("a1", "/admin")}},
			b: conflictService{"b", []string{"api.example.com"}, [][3]string{get("b1", "/admin")}}},
		{name: "wildcard does not cover its apex", a: conflictService{"a", []string{"*.example.com"}, [][3]string{get("a1", "/admin")}},
			b: conflictService{"b", []string{"example.com"}, [][3]string{get("b1", "/admin")}}},
		{name: "wildcard does not cover a name ending in its suffix without the dot", a: conflictService{"a", []string{"*.example.com"}, [][3]string{get("a1", "/admin")}},
			b: conflictService{"b", []string{"badexample.com"}, [][3]string{get("b1", "/admin")}}},
		{name: "narrower wildcard", a: conflictService{"a", []string{"*.example.com"}, [][3]string{get("a1", "/pets/{id}")}},
			b:    conflictService{"b", []string{"*.api.example.com"}, [][3]string{get("b1", "/pets/{x}")}},
			want: []string{"edge a1 b1@*.api.example.com"}, host: "v1.api.example.com", path: "/pets/7"},
		{name: "exact host over the default vhost", a: conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", []string{"api.example.com"}, [][3]string{get("b1", "/admin")}},
			want: []string{"edge a1 b1@api.example.com"}, host: "api.example.com", path: "/admin"},
		{name: "wildcard over the default vhost", a: conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", []string{"*.example.com"}, [][3]string{get("b1", "/admin")}},
			want: []string{"edge a1 b1@*.example.com"}, host: "x.example.com", path: "/admin"},
		{name: "the smallest shared host is reported", a: conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", []string{"z.test", "m.test"}, [][3]string{get("b1", "/admin")}},
			want: []string{"edge a1 b1@m.test"}, host: "m.test", path: "/admin"},
		{name: "default and default", a: conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", nil, [][3]string{get("b1", "/admin")}},
			want: []string{"edge a1 b1@*"}, host: "unlisted.test", path: "/admin"},
		{name: "different shapes", a: conflictService{"a", nil, [][3]string{get("a1", "/admin"), get("a2", "/pets/{id}")}},
			b: conflictService{"b", []string{"api.example.com"}, [][3]string{get("b1", "/admin/{x}"), get("b2", "/{x}"), get("b3", "/pets/mine")}}},
		{name: "same service", a: conflictService{"a", nil, [][3]string{get("a1", "/pets/{id}"), get("a2", "/pets/{x}"), {"a3", "*", "/pets/{y}"}}},
			b: conflictService{"b", []string{"api.example.com"}, nil}},
		{name: "GET and POST", a: conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b: conflictService{"b", []string{"api.example.com"}, [][3]string{{"b1", "POST", "/admin"}}}},
		{name: "GET and any method", a: conflictService{"a", nil, [][3]string{get("a1", "/admin"), {"a2", "POST", "/other"}}},
			b:    conflictService{"b", []string{"api.example.com"}, [][3]string{{"b1", "*", "/admin"}, {"b2", "get", "/other"}}},
			want: []string{"edge a1 b1@api.example.com"}, host: "api.example.com", path: "/admin"},
		{name: "service not in the gateway", gateways: map[string][]string{"edge": {"a"}},
			a: conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b: conflictService{"b", []string{"api.example.com"}, [][3]string{get("b1", "/admin")}}},
		{name: "each gateway serving both", gateways: map[string][]string{"edge": {"a", "b"}, "inner": {"b"}, "all": nil},
			a:    conflictService{"a", nil, [][3]string{get("a1", "/admin")}},
			b:    conflictService{"b", []string{"api.example.com"}, [][3]string{get("b1", "/admin")}},
			want: []string{"all a1 b1@api.example.com", "edge a1 b1@api.example.com"}, host: "api.example.com", path: "/admin"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gws := tc.gateways
			if gws == nil {
				gws = all
			}
			// Both orders of the services give the same answer.
			for _, order := range [][2]conflictService{{tc.a, tc.b}, {tc.b, tc.a}} {
				got := conflictStrings(conflictConfig(gws, order[0], order[1]).RouteConflicts())
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Fatalf("services %s,%s: conflicts %q, want %q", order[0].id, order[1].id, got, tc.want)
				}
			}
			if tc.want == nil {
				return
			}
			// The reported conflict is real: alone, each service routes the
			// request to its API; together, one of them loses it.
			match := func(ss ...conflictService) string {
				t.Helper()
				var in []routing.ServiceRoutes
				for _, s := range ss {
					sr := routing.ServiceRoutes{ServiceID: s.id, Hosts: s.hosts}
					for _, a := range s.apis {
						sr.APIs = append(sr.APIs, routing.APIRoute{APIID: a[0], Method: a[1], Path: a[2]})
					}
					in = append(in, sr)
				}
				tbl, err := routing.Build(in)
				if err != nil {
					t.Fatal(err)
				}
				r, _, ok := tbl.Match("GET", tc.host, tc.path)
				if !ok {
					return ""
				}
				return r.APIID
			}
			aAlone, bAlone, both := match(tc.a), match(tc.b), match(tc.a, tc.b)
			if aAlone == "" || bAlone == "" || aAlone == bAlone || (both != aAlone && both != bAlone) {
				t.Fatalf("GET %s%s: %q alone, %q alone, %q together: not a takeover", tc.host, tc.path, aAlone, bAlone, both)
			}
		})
	}
}

// TestRouteConflictsManyServices: conflicts among many services on many
// hosts are found in one pass, sorted, each API pair once per gateway.
func TestRouteConflictsManyServices(t *testing.T) {
	var ss []conflictService
	ss = append(ss, conflictService{"default", nil, [][3]string{{"d-admin", "GET", "/admin"}}})
	for i := 0; i < 200; i++ {
		s := conflictService{id: fmt.Sprintf("s%03d", i), hosts: []string{fmt.Sprintf("h%03d.example.com", i)}}
		for j := 0; j < 20; j++ {
			s.apis = append(s.apis, [3]string{fmt.Sprintf("s%03d-%02d", i, j), "GET", fmt.Sprintf("/s%03d/r%02d/{id}", i, j)})
		}
		if i%50 == 0 { // a few services take over the default's /admin on their host
			s.apis = append(s.apis, [3]string{fmt.Sprintf("s%03d-admin", i), "*", "/admin"})
		}
		ss = append(ss, s)
	}
	got := conflictStrings(conflictConfig(map[string][]string{"edge": nil}, ss...).RouteConflicts())
	want := []string{
		"edge d-admin s000-admin@h000.example.com",
		"edge d-admin s050-admin@h050.example.com",
		"edge d-admin s100-admin@h100.example.com",
		"edge d-admin s150-admin@h150.example.com",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("conflicts %q, want %q", got, want)
	}
}
