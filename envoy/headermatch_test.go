package envoy

import (
	"regexp"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// envoyHeadersMatch is how Envoy applies a route's header matchers to a
// request's headers (lower-case names, ":method" among them; several
// values of one header joined with ","): every matcher must match; a
// string_match needs the header present (exact, prefix, or an RE2 full
// match), present_match its presence.
func envoyHeadersMatch(t testing.TB, hms []*routev3.HeaderMatcher, headers map[string]string) bool {
	t.Helper()
	for _, hm := range hms {
		v, ok := headers[strings.ToLower(hm.GetName())]
		var m bool
		switch spec := hm.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			m = ok == spec.PresentMatch
		case *routev3.HeaderMatcher_StringMatch:
			sm := spec.StringMatch
			switch {
			case !ok:
				m = false
			case sm.GetSafeRegex() != nil:
				m = regexp.MustCompile(`^(?:` + sm.GetSafeRegex().GetRegex() + `)$`).MatchString(v)
			case sm.GetPrefix() != "":
				m = strings.HasPrefix(v, sm.GetPrefix())
			default:
				m = v == sm.GetExact()
			}
		default:
			t.Fatalf("unexpected header matcher %v", hm)
		}
		if m == hm.GetInvertMatch() {
			return false
		}
	}
	return true
}

// envoyRouteMatches applies a route's path specifier and header matchers.
func envoyRouteMatches(t *testing.T, m *routev3.RouteMatch, method, path string, headers map[string]string) bool {
	t.Helper()
	h := map[string]string{":method": method}
	for k, v := range headers {
		h[strings.ToLower(k)] = v
	}
	return envoyPathMatches(t, m, path) && envoyHeadersMatch(t, m.GetHeaders(), h)
}

// listenerHCMFilters lists the names of a listener's HTTP filters.
func listenerHCMFilters(t *testing.T, l *listenerv3.Listener) ([]string, *hcmv3.HttpConnectionManager) {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	return names, hcm
}
