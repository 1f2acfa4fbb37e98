package routing

import (
	"fmt"
	"sort"
	"strings"
)

// ServiceRoutes is one service's routing input.
type ServiceRoutes struct {
	ServiceID string
	// Hosts are the service's domains (exact or "*.suffix"); none puts it
	// in the default vhost.
	Hosts []string
	APIs  []APIRoute
}

// APIRoute is one API's routing input.
type APIRoute struct {
	APIID  string
	Method string // an HTTP method or "*"
	Path   string // a template
}

// Route is a compiled route.
type Route struct {
	APIID     string
	ServiceID string
	Method    string
	Template  *Template
}

// VHost groups the routes served under the same domains, in priority order.
type VHost struct {
	// Name is stable and unique within the table.
	Name string
	// Domains are the host patterns; the default vhost has ["*"].
	Domains []string
	Routes  []Route
	index   *node
}

// Wildcard maps a "*.suffix" domain to its vhost.
type Wildcard struct {
	Suffix string // ".example.com"
	VHost  int
}

// Table is a gateway's compiled routing table.
type Table struct {
	VHosts []VHost
	// Exact maps a normalised host to its vhost.
	Exact map[string]int
	// Wildcards are ordered longest suffix first.
	Wildcards []Wildcard
	// Default is the vhost of services without hosts, or -1.
	Default int
	byAPI   map[string]*Route
}

// Build compiles services into a routing table. It fails on an invalid
// method, template or host (the admin API validates them earlier).
func Build(services []ServiceRoutes) (*Table, error) {
	// Which services serve each domain ("" = the default vhost).
	byDomain := map[string][]int{}
	for i, s := range services {
		if len(s.Hosts) == 0 {
			byDomain[""] = append(byDomain[""], i)
			continue
		}
		seen := map[string]bool{}
		for _, h := range s.Hosts {
			d, err := ValidateDomain(h)
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", s.ServiceID, err)
			}
			if !seen[d] {
				seen[d] = true
				byDomain[d] = append(byDomain[d], i)
			}
		}
	}
	// Domains served by the same set of services share one vhost.
	groups := map[string][]string{}
	for d, idx := range byDomain {
		key := fmt.Sprint(idx)
		groups[key] = append(groups[key], d)
	}
	type group struct {
		domains  []string
		services []int
	}
	var gs []group
	for _, domains := range groups {
		sort.Strings(domains)
		gs = append(gs, group{domains: domains, services: byDomain[domains[0]]})
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].domains[0] < gs[j].domains[0] })

	t := &Table{Exact: map[string]int{}, Default: -1, byAPI: map[string]*Route{}}
	for _, g := range gs {
		vh := VHost{}
		for _, d := range g.domains {
			if d == "" {
				vh.Domains = append(vh.Domains, "*")
			} else {
				vh.Domains = append(vh.Domains, d)
			}
		}
		vh.Name = vhostName(vh.Domains)
		for _, si := range g.services {
			s := services[si]
			for _, a := range s.APIs {
				m, err := NormalizeMethod(a.Method)
				if err != nil {
					return nil, fmt.Errorf("api %s: %w", a.APIID, err)
				}
				tpl, err := ParseTemplate(a.Path)
				if err != nil {
					return nil, fmt.Errorf("api %s: path %q: %w", a.APIID, a.Path, err)
				}
				vh.Routes = append(vh.Routes, Route{APIID: a.APIID, ServiceID: s.ServiceID, Method: m, Template: tpl})
			}
		}
		SortRoutes(vh.Routes)
		vh.index = buildIndex(vh.Routes)
		idx := len(t.VHosts)
		for _, d := range g.domains {
			switch {
			case d == "":
				t.Default = idx
			case strings.HasPrefix(d, "*."):
				t.Wildcards = append(t.Wildcards, Wildcard{Suffix: d[1:], VHost: idx})
			default:
				t.Exact[d] = idx
			}
		}
		t.VHosts = append(t.VHosts, vh)
	}
	sort.Slice(t.Wildcards, func(i, j int) bool {
		a, b := t.Wildcards[i].Suffix, t.Wildcards[j].Suffix
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	for v := range t.VHosts {
		for r := range t.VHosts[v].Routes {
			rt := &t.VHosts[v].Routes[r]
			if _, dup := t.byAPI[rt.APIID]; !dup {
				t.byAPI[rt.APIID] = rt
			}
		}
	}
	return t, nil
}

func vhostName(domains []string) string {
	if len(domains) == 1 && domains[0] == "*" {
		return "default"
	}
	return strings.Join(domains, ",")
}

// SortRoutes puts routes in priority order: most specific path first (then,
// between patterns, more literal text first), then exact method before "*",
// HEAD before the other methods (so that a HEAD API wins over the GET API
// of the same path, which HEAD requests follow otherwise), then service id,
// then API id.
func SortRoutes(routes []Route) {
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if ka, kb := a.Template.SpecificityKey(), b.Template.SpecificityKey(); ka != kb {
			return ka > kb
		}
		if ka, kb := a.Template.patternKey(), b.Template.patternKey(); ka != kb {
			return ka > kb
		}
		if (a.Method == "*") != (b.Method == "*") {
			return b.Method == "*"
		}
		if (a.Method == "HEAD") != (b.Method == "HEAD") {
			return a.Method == "HEAD"
		}
		if a.Method != b.Method {
			return a.Method < b.Method
		}
		if a.ServiceID != b.ServiceID {
			return a.ServiceID < b.ServiceID
		}
		return a.APIID < b.APIID
	})
}

// SelectVHost returns the vhost serving host, or -1.
func (t *Table) SelectVHost(host string) int {
	h := NormalizeHost(host)
	if v, ok := t.Exact[h]; ok {
		return v
	}
	for _, w := range t.Wildcards {
		if strings.HasSuffix(h, w.Suffix) && len(h) > len(w.Suffix) {
			return w.VHost
		}
	}
	return t.Default
}

// Match finds the route for a request: the vhost by host, then the first
// route in priority order whose method and template match. It returns the
// route and its path parameters.
func (t *Table) Match(method, host, path string) (*Route, map[string]string, bool) {
	v := t.SelectVHost(host)
	if v < 0 {
		return nil, nil, false
	}
	vh := &t.VHosts[v]
	segs := SplitPath(RequestPath(path))
	best := -1
	vh.index.collect(segs, 0, func(ri int) {
		if (best < 0 || ri < best) && methodMatches(vh.Routes[ri].Method, method) {
			best = ri
		}
	})
	if best < 0 {
		return nil, nil, false
	}
	r := &vh.Routes[best]
	params, _ := r.Template.Match(segs)
	return r, params, true
}

// First is Match with another rule for the route: the first route in
// priority order, in the vhost of host, whose template matches path and
// that accept accepts (the CORS preflight rule uses it).
func (t *Table) First(host, path string, accept func(*Route) bool) (*Route, map[string]string, bool) {
	v := t.SelectVHost(host)
	if v < 0 {
		return nil, nil, false
	}
	vh := &t.VHosts[v]
	segs := SplitPath(RequestPath(path))
	best := -1
	vh.index.collect(segs, 0, func(ri int) {
		if (best < 0 || ri < best) && accept(&vh.Routes[ri]) {
			best = ri
		}
	})
	if best < 0 {
		return nil, nil, false
	}
	r := &vh.Routes[best]
	params, _ := r.Template.Match(segs)
	return r, params, true
}

// Route returns the route of an API (for requests Envoy already routed).
func (t *Table) Route(apiID string) (*Route, bool) {
	r, ok := t.byAPI[apiID]
	return r, ok
}

// MethodMatches reports whether a route of routeMethod (an API method or
// "*") matches a request of method: "*" matches every method, a GET route
// also HEAD requests (HEAD follows GET's API; a HEAD route of the same path
// is ordered first and wins), any other method only itself.
func MethodMatches(routeMethod, method string) bool {
	return routeMethod == "*" || routeMethod == method || routeMethod == "GET" && method == "HEAD"
}

func methodMatches(routeMethod, method string) bool { return MethodMatches(routeMethod, method) }

// node is a segment trie over one vhost's routes; values are route indexes.
type node struct {
	literal  map[string]*node
	param    *node
	patterns []patternChild
	ends     []int // routes whose template ends at this node
	catchAll []int // routes with a catch-all at this depth
}

func buildIndex(routes []Route) *node {
	root := &node{}
	for i, r := range routes {
		n := root
		for _, s := range r.Template.Segments {
			switch s.Kind {
			case Literal:
				if n.literal == nil {
					n.literal = map[string]*node{}
				}
				next, ok := n.literal[s.Value]
				if !ok {
					next = &node{}
					n.literal[s.Value] = next
				}
				n = next
			case Param:
				if n.param == nil {
					n.param = &node{}
				}
				n = n.param
			case Pattern:
				var next *node
				for _, pc := range n.patterns {
					if pc.prefix == s.Prefix && pc.suffix == s.Suffix {
						next = pc.next
					}
				}
				if next == nil {
					next = &node{}
					n.patterns = append(n.patterns, patternChild{prefix: s.Prefix, suffix: s.Suffix, next: next})
				}
				n = next
			case CatchAll:
				n.catchAll = append(n.catchAll, i)
			}
		}
		if !r.Template.HasCatchAll() {
			n.ends = append(n.ends, i)
		}
	}
	return root
}

// patternChild is the subtree of the routes with one pattern segment here.
type patternChild struct {
	prefix, suffix string
	next           *node
}

// collect calls fn with every route whose template matches segs[i:] from n.
func (n *node) collect(segs []string, i int, fn func(int)) {
	for _, r := range n.catchAll {
		fn(r)
	}
	if i == len(segs) {
		for _, r := range n.ends {
			fn(r)
		}
		return
	}
	if next, ok := n.literal[segs[i]]; ok {
		next.collect(segs, i+1, fn)
	}
	if n.param != nil && segs[i] != "" {
		n.param.collect(segs, i+1, fn)
	}
	for _, pc := range n.patterns {
		if _, ok := MatchPattern(pc.prefix, pc.suffix, segs[i]); ok {
			pc.next.collect(segs, i+1, fn)
		}
	}
}
