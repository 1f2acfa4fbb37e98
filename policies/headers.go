package policies

import (
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Request headers the gateway owns. A client may never send a header that
// the gateway may set for an API: every such name is removed from the
// client's request on every route of the gateway before the policy runs
// and before the decision's headers are added — by the generated Envoy
// configuration (a header_mutation filter ahead of ext_authz), by the
// authorizer (the policy's input omits them, and an allowed decision lists
// the ones the client sent in request_headers_to_remove) and by the reverse
// proxy alike.
const (
	// OwnedHeaderPrefix: every header with this prefix is the gateway's.
	OwnedHeaderPrefix = "x-gatehouse-"
)

// StrippedRequestHeaders are headers that make some upstreams use another
// method or path than the one the gateway decided on; they are removed
// from every request, like owned headers.
var StrippedRequestHeaders = []string{
	"x-http-method", "x-http-method-override", "x-method-override",
	"x-original-uri", "x-original-url", "x-rewrite-url",
}

// ownedHeaders returns the sorted, lower-cased header names the gateway
// owns: StrippedRequestHeaders, every API's claims_to_headers targets and
// the literal keys of every policy's headers rule.
func ownedHeaders(apis map[string]APIData, modules map[string]*ast.Module) []string {
	set := map[string]bool{}
	for _, h := range StrippedRequestHeaders {
		set[h] = true
	}
	for _, a := range apis {
		for _, h := range a.ClaimsToHeaders {
			set[strings.ToLower(h)] = true
		}
	}
	for _, m := range modules {
		for _, h := range PolicyHeaderNames(m) {
			set[h] = true
		}
	}
	out := make([]string, 0, len(set))
	for h := range set {
		if !strings.HasPrefix(h, OwnedHeaderPrefix) {
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out
}

// PolicyHeaderNames returns the lower-cased literal header names a policy
// module's headers rule may set: the string keys of an object value
// (headers := {"x-user": …}) and the string keys of partial object rules
// (headers["x-user"] := …). Names computed at run time cannot be known in
// advance; when set, they still overwrite what the client sent.
func PolicyHeaderNames(m *ast.Module) []string {
	var out []string
	var rules []*ast.Rule
	for _, r := range m.Rules {
		for ; r != nil; r = r.Else {
			rules = append(rules, r)
		}
	}
	for _, r := range rules {
		ref := r.Head.Ref()
		if len(ref) == 0 || !ref[0].Equal(ast.VarTerm("headers")) {
			continue
		}
		switch {
		case len(ref) == 2:
			if s, ok := ref[1].Value.(ast.String); ok {
				out = append(out, strings.ToLower(string(s)))
			}
		case len(ref) == 1 && r.Head.Value != nil:
			if obj, ok := r.Head.Value.Value.(ast.Object); ok {
				obj.Foreach(func(k, _ *ast.Term) {
					if s, ok := k.Value.(ast.String); ok {
						out = append(out, strings.ToLower(string(s)))
					}
				})
			}
		}
	}
	return out
}
