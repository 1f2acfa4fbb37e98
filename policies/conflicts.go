package policies

import (
	"sort"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// RouteConflict is a route takeover: two APIs of different services that
// one gateway serves, where a host of one service is covered by the other
// (listed exactly, matched by a wildcard, or served by the default vhost),
// with the same path shape (the same paths match both) and overlapping
// methods. Requests for that host go to one vhost only (routing.SelectVHost
// never falls back), so one API would silently take the other's requests
// (to its own upstream, under its own policy), and the admin API refuses to
// create one. Routes of different shapes may overlap across services — the
// more specific wins, the same way in Go, Rego and Envoy — and equivalent
// routes within one service are refused on their own (one route name per
// service).
type RouteConflict struct {
	GatewayID string
	// Domain is a host of one service that the other covers ("*" when
	// both services have no hosts).
	Domain string
	// A and B are the two APIs, A's id sorting first.
	A, B Object[model.APISpec]
}

// Involves reports whether the conflict involves an API of the given ids
// or of the given services.
func (c RouteConflict) Involves(apiIDs, serviceIDs map[string]bool) bool {
	return apiIDs[c.A.ID] || apiIDs[c.B.ID] || serviceIDs[c.A.Spec.ServiceID] || serviceIDs[c.B.Spec.ServiceID]
}

// routeEntry is one API with its normalised method.
type routeEntry struct {
	api    Object[model.APISpec]
	method string
}

// serviceRoutes is one service's hosts and APIs, indexed for conflict checks.
type serviceRoutes struct {
	// domains are the service's hosts, sorted and deduplicated, or ["*"]
	// for a service without hosts.
	domains []string
	// isDefault: no hosts, the default vhost (covers every host).
	isDefault bool
	exact     map[string]bool
	// suffixes of the service's wildcards ("*.x" → ".x").
	suffixes []string
	// byShape maps a path shape to the service's APIs with that shape.
	byShape map[string][]routeEntry
}

func newServiceRoutes(s Object[model.ServiceSpec], apis []Object[model.APISpec]) *serviceRoutes {
	sr := &serviceRoutes{exact: map[string]bool{}, byShape: map[string][]routeEntry{}}
	if len(s.Spec.Hosts) == 0 {
		sr.isDefault = true
		sr.domains = []string{"*"}
	}
	for _, h := range s.Spec.Hosts {
		d, err := routing.ValidateDomain(h)
		if err != nil || sr.exact[d] {
			continue
		}
		sr.exact[d] = true
		sr.domains = append(sr.domains, d)
		if strings.HasPrefix(d, "*.") {
			sr.suffixes = append(sr.suffixes, d[1:])
		}
	}
	sort.Strings(sr.domains)
	for _, a := range apis {
		m, err := routing.NormalizeMethod(a.Spec.Method)
		if err != nil {
			continue
		}
		tpl, err := routing.ParseTemplate(a.Spec.Path)
		if err != nil {
			continue
		}
		sh := tpl.Shape()
		sr.byShape[sh] = append(sr.byShape[sh], routeEntry{a, m})
	}
	return sr
}

// covers reports whether requests for domain d could be routed to this
// service's vhost: it lists d, has a wildcard "*.x" with d a longer name
// (or narrower wildcard) ending in ".x", or is in the default vhost.
func (sr *serviceRoutes) covers(d string) bool {
	if sr.isDefault || sr.exact[d] {
		return true
	}
	for _, suf := range sr.suffixes {
		if len(d) > len(suf) && strings.HasSuffix(d, suf) {
			return true
		}
	}
	return false
}

// sharedDomain is the smallest domain of s covered by t or of t covered by
// s, and whether there is one.
func sharedDomain(s, t *serviceRoutes) (string, bool) {
	best, found := "", false
	for _, pair := range [2][2]*serviceRoutes{{s, t}, {t, s}} {
		for _, d := range pair[0].domains { // sorted: the first hit is the smallest
			if pair[1].covers(d) {
				if !found || d < best {
					best, found = d, true
				}
				break
			}
		}
	}
	return best, found
}

func methodsOverlap(a, b string) bool {
	return a == b || a == "*" || b == "*"
}

// RouteConflicts lists the route takeovers of every gateway of the
// configuration, deterministically ordered. Hosts are compared the way
// virtual hosts are selected (exact, then the longest wildcard, then the
// default vhost). APIs whose method or path does not parse, and hosts that
// do not validate, are ignored (the admin API validates them earlier).
func (c *Config) RouteConflicts() []RouteConflict {
	apisOf := map[string][]Object[model.APISpec]{}
	for _, a := range c.APIs {
		apisOf[a.Spec.ServiceID] = append(apisOf[a.Spec.ServiceID], a)
	}
	indexed := map[string]*serviceRoutes{}
	var out []RouteConflict
	for i := range c.Gateways {
		gw := &c.Gateways[i]
		var srs []*serviceRoutes
		for _, s := range c.servicesOf(gw) {
			if len(apisOf[s.ID]) == 0 {
				continue
			}
			sr := indexed[s.ID]
			if sr == nil {
				sr = newServiceRoutes(s, apisOf[s.ID])
				indexed[s.ID] = sr
			}
			srs = append(srs, sr)
		}
		for x := range srs {
			for y := x + 1; y < len(srs); y++ {
				s, t := srs[x], srs[y]
				if len(t.byShape) < len(s.byShape) {
					s, t = t, s
				}
				var domain string
				var shared, checked bool
				for sh, es := range s.byShape {
					ts := t.byShape[sh]
					if len(ts) == 0 {
						continue
					}
					if !checked {
						checked = true
						domain, shared = sharedDomain(s, t)
					}
					if !shared {
						break
					}
					for _, a := range es {
						for _, b := range ts {
							if !methodsOverlap(a.method, b.method) {
								continue
							}
							rc := RouteConflict{GatewayID: gw.ID, Domain: domain, A: a.api, B: b.api}
							if rc.B.ID < rc.A.ID {
								rc.A, rc.B = rc.B, rc.A
							}
							out = append(out, rc)
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
