package policies

import (
	"reflect"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// VHostCORS is the CORS settings under which a virtual host's preflights
// are answered without authorization: those of its services when every
// service with a route on it has cors settings and they are all the same;
// nil otherwise. A preflight answered by one service's settings would
// otherwise grant another service's API on the same host (a cross-origin
// DELETE with cookies, say): where the host's services disagree, a
// preflight is an OPTIONS request like any other and is authorized.
// Envoy's generated preflight routes and the reverse proxy apply it alike.
func VHostCORS(routes []routing.Route, corsOf func(serviceID string) *model.CORSSettings) *model.CORSSettings {
	var common *model.CORSSettings
	for i := range routes {
		c := corsOf(routes[i].ServiceID)
		switch {
		case c == nil:
			return nil
		case common == nil:
			common = c
		case common != c && !reflect.DeepEqual(common, c):
			return nil
		}
	}
	return common
}
