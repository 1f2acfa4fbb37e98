package policies

import (
	"sort"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// RouteConflict is a route takeover: two APIs of different services that
// one gateway serves on a shared host, with the same path shape (the same
// paths match both) and overlapping methods. Whichever sorts first would
// silently take the other's requests (to its own upstream, under its own
// policy), so the admin API refuses to create one. Routes of different
// shapes may overlap across services — the more specific wins, the same
// way in Go, Rego and Envoy — and equivalent routes within one service are
// refused on their own (one route name per service).
type RouteConflict struct {
	GatewayID string
	// Domain is the shared host ("*" for services without hosts).
	Domain string
	// A and B are the two APIs, A's id sorting first.
	A, B Object[model.APISpec]
}

// Involves reports whether the conflict involves an API of the given ids
// or of the given services.
func (c RouteConflict) Involves(apiIDs, serviceIDs map[string]bool) bool {
	return apiIDs[c.A.ID] || apiIDs[c.B.ID] || serviceIDs[c.A.Spec.ServiceID] || serviceIDs[c.B.Spec.ServiceID]
}

// RouteConflicts lists the route takeovers of every gateway of the
// configuration, deterministically ordered. APIs whose method or path does
// not parse are ignored (the admin API validates them earlier).
func (c *Config) RouteConflicts() []RouteConflict {
	apisOf := map[string][]Object[model.APISpec]{}
	for _, a := range c.APIs {
		apisOf[a.Spec.ServiceID] = append(apisOf[a.Spec.ServiceID], a)
	}
	var out []RouteConflict
	for i := range c.Gateways {
		gw := &c.Gateways[i]
		type entry struct {
			api    Object[model.APISpec]
			method string
		}
		// domain → path shape → the routes with that shape.
		byShape := map[string]map[string][]entry{}
		for _, s := range c.servicesOf(gw) {
			domains := []string{"*"}
			if len(s.Spec.Hosts) > 0 {
				domains = domains[:0]
				for _, h := range s.Spec.Hosts {
					if d, err := routing.ValidateDomain(h); err == nil {
						domains = append(domains, d)
					}
				}
			}
			for _, a := range apisOf[s.ID] {
				m, err := routing.NormalizeMethod(a.Spec.Method)
				if err != nil {
					continue
				}
				tpl, err := routing.ParseTemplate(a.Spec.Path)
				if err != nil {
					continue
				}
				for _, d := range dedupe(domains) {
					if byShape[d] == nil {
						byShape[d] = map[string][]entry{}
					}
					byShape[d][tpl.Shape()] = append(byShape[d][tpl.Shape()], entry{a, m})
				}
			}
		}
		seen := map[[2]string]bool{}
		domains := make([]string, 0, len(byShape))
		for d := range byShape {
			domains = append(domains, d)
		}
		sort.Strings(domains)
		for _, d := range domains {
			for _, es := range byShape[d] {
				for x := range es {
					for y := x + 1; y < len(es); y++ {
						a, b := es[x], es[y]
						if a.api.Spec.ServiceID == b.api.Spec.ServiceID || !(a.method == b.method || a.method == "*" || b.method == "*") {
							continue
						}
						if b.api.ID < a.api.ID {
							a, b = b, a
						}
						if key := [2]string{a.api.ID, b.api.ID}; !seen[key] {
							seen[key] = true
							out = append(out, RouteConflict{GatewayID: gw.ID, Domain: d, A: a.api, B: b.api})
						}
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if x.GatewayID != y.GatewayID {
			return x.GatewayID < y.GatewayID
		}
		if x.A.ID != y.A.ID {
			return x.A.ID < y.A.ID
		}
		return x.B.ID < y.B.ID
	})
	return out
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
