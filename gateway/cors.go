package gateway

import (
	"net/http"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/routing"
)

// CORS in the reverse proxy, answered exactly as the generated Envoy
// configuration answers it (envoy/cors.go: the CORS filter ahead of
// ext_authz, preflight routes ahead of the API routes):
//
//   - A preflight is OPTIONS with a non-empty Origin and a non-empty
//     Access-Control-Request-Method (several values of a header count as
//     one, joined with ","). It is answered, without authorization, by the
//     first route in priority order, in the vhost of its host, whose
//     template matches its canonical path, whose service's cors allows its
//     Origin and whose method matches the announced method (an API for
//     OPTIONS or "*" matches any; GET also HEAD). Its answer is a 200 with
//     Access-Control-Allow-Origin (the request's origin), -Allow-Credentials
//     when set, -Allow-Methods, -Allow-Headers ("*": the requested ones) and
//     -Max-Age when set, and no body.
//   - Every other request — a preflight no such route answers among them —
//     is authorized as before. When it routes to an API of a service whose
//     cors allows its Origin, its response (a denial too) carries
//     Access-Control-Allow-Origin, and -Allow-Credentials and
//     -Expose-Headers when set, replacing the upstream's.

// CORS response header names.
const (
	headerOrigin           = "Origin"
	headerRequestMethod    = "Access-Control-Request-Method"
	headerRequestHeaders   = "Access-Control-Request-Headers"
	headerAllowOrigin      = "Access-Control-Allow-Origin"
	headerAllowCredentials = "Access-Control-Allow-Credentials"
	headerAllowMethods     = "Access-Control-Allow-Methods"
	headerAllowHeaders     = "Access-Control-Allow-Headers"
	headerMaxAge           = "Access-Control-Max-Age"
	headerExposeHeaders    = "Access-Control-Expose-Headers"
)

// PreflightMethodMatches reports whether a route of routeMethod answers a
// preflight announcing method (Access-Control-Request-Method): an OPTIONS
// or "*" route any, another as routing.MethodMatches.
func PreflightMethodMatches(routeMethod, method string) bool {
	if method == "" {
		return false
	}
	return routeMethod == http.MethodOptions || routeMethod == "*" || routing.MethodMatches(routeMethod, method)
}

// headerValue is a request header as Envoy reads it: its values joined
// with ",".
func headerValue(h http.Header, name string) string { return strings.Join(h.Values(name), ",") }

// requestTarget is the request target as the client sent it.
func requestTarget(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// serviceCORS is the cors settings of a service of the bundle, or nil.
func (e *Engine) serviceCORS(serviceID string) *model.CORSSettings {
	if s, ok := e.cfg.Services[serviceID]; ok {
		return s.CORS
	}
	return nil
}

// PreflightRoute returns the route that answers a CORS preflight and its
// service's settings (see the rules above), or false when the request is
// no preflight or no route answers it. target is the raw request target.
func (e *Engine) PreflightRoute(method, host, target, origin, announced string) (*routing.Route, *model.CORSSettings, bool) {
	if e == nil || method != http.MethodOptions || origin == "" || announced == "" {
		return nil, nil, false
	}
	path, _, err := routing.CanonicalTarget(target)
	if err != nil {
		return nil, nil, false // refused, as Envoy's non-canonical routes do first
	}
	// Only on a vhost whose services all have the same cors settings
	// (policies.VHostCORS), as Envoy's preflight routes.
	v := e.table.SelectVHost(host)
	if v < 0 || !policies.VHostCORS(e.table.VHosts[v].Routes, e.serviceCORS).AllowsOrigin(origin) {
		return nil, nil, false
	}
	r, _, ok := e.table.First(host, path, func(r *routing.Route) bool {
		return e.serviceCORS(r.ServiceID).AllowsOrigin(origin) && PreflightMethodMatches(r.Method, announced)
	})
	if !ok {
		return nil, nil, false
	}
	return r, e.serviceCORS(r.ServiceID), true
}

// CORSPreflight answers r when it is a CORS preflight of an allowed origin
// (see the rules above) and reports whether it did; the caller then stops.
// Anything else is left to authorization. e may be nil (no bundle: never
// answered).
func CORSPreflight(w http.ResponseWriter, r *http.Request, e *Engine) bool {
	origin := headerValue(r.Header, headerOrigin)
	announced := headerValue(r.Header, headerRequestMethod)
	_, c, ok := e.PreflightRoute(r.Method, r.Host, requestTarget(r), origin, announced)
	if !ok {
		return false
	}
	h := w.Header()
	h.Set(headerAllowOrigin, origin)
	if c.AllowCredentials {
		h.Set(headerAllowCredentials, "true")
	}
	if v := c.AllowMethodsValue(); v == "*" {
		h.Set(headerAllowMethods, announced)
	} else if v != "" {
		h.Set(headerAllowMethods, v)
	}
	if v := c.AllowHeadersValue(); v == "*" {
		h.Set(headerAllowHeaders, headerValue(r.Header, headerRequestHeaders))
	} else if v != "" {
		h.Set(headerAllowHeaders, v)
	}
	if v := c.MaxAgeValue(); v != "" {
		h.Set(headerMaxAge, v)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return true
}

// CORSResponseHeaders are the headers the response to r gets: when r has an
// Origin and routes (by method, host and canonical path, as the proxy's
// decision does) to an API of a service whose cors allows that origin,
// Access-Control-Allow-Origin and, when set, -Allow-Credentials and
// -Expose-Headers; else none.
func (e *Engine) CORSResponseHeaders(r *http.Request) http.Header {
	origin := headerValue(r.Header, headerOrigin)
	if e == nil || origin == "" {
		return nil
	}
	path, _, err := routing.CanonicalTarget(requestTarget(r))
	if err != nil {
		return nil
	}
	rt, _, ok := e.table.Match(r.Method, r.Host, path)
	if !ok {
		return nil
	}
	// Only on a vhost whose services all have the same cors settings
	// (policies.VHostCORS), as Envoy's routes carry a CorsPolicy only there.
	v := e.table.SelectVHost(r.Host)
	if v < 0 || policies.VHostCORS(e.table.VHosts[v].Routes, e.serviceCORS) == nil {
		return nil
	}
	c := e.serviceCORS(rt.ServiceID)
	if !c.AllowsOrigin(origin) {
		return nil
	}
	h := http.Header{}
	h.Set(headerAllowOrigin, origin)
	if c.AllowCredentials {
		h.Set(headerAllowCredentials, "true")
	}
	if v := c.ExposeHeadersValue(); v != "" {
		h.Set(headerExposeHeaders, v)
	}
	return h
}

// CORSResponseWriter wraps w so that the response to r — the upstream's or
// a denial — carries CORSResponseHeaders(r), replacing any the upstream
// sent (as Envoy's CORS filter sets them). It returns w itself when there
// are none. e may be nil.
func CORSResponseWriter(w http.ResponseWriter, r *http.Request, e *Engine) http.ResponseWriter {
	h := e.CORSResponseHeaders(r)
	if len(h) == 0 {
		return w
	}
	return &corsWriter{ResponseWriter: w, headers: h}
}

type corsWriter struct {
	http.ResponseWriter
	headers http.Header
	wrote   bool
}

func (c *corsWriter) set() {
	if c.wrote {
		return
	}
	c.wrote = true
	for k, v := range c.headers {
		c.ResponseWriter.Header()[k] = v
	}
}

func (c *corsWriter) WriteHeader(status int) {
	if status >= 200 || status == http.StatusSwitchingProtocols {
		c.set()
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *corsWriter) Write(b []byte) (int, error) {
	c.set()
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer's Flush and
// deadlines (httputil.ReverseProxy flushes through it).
func (c *corsWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
