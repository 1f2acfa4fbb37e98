package oauth

import (
	"net/http"
	"net/url"
	"strings"
)

// CORS: zitadel's default allows every origin with credentials, so its
// middleware is off (op.WithCORSOptions(nil)) and cors answers instead:
// cross-origin calls are allowed only from the origins of the redirect
// URIs of the server's clients, without credentials (the endpoints are
// authenticated by tokens and client credentials, not cookies).

// cors sets the CORS headers of an allowed origin and answers preflight
// requests itself; it reports whether the request is done.
func (p *Provider) cors(w http.ResponseWriter, r *http.Request, rq *request) bool {
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if origin == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	allowed := p.originAllowed(r, rq, origin)
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "Content-Length")
	}
	if !preflight {
		return false
	}
	if allowed {
		switch strings.ToUpper(r.Header.Get("Access-Control-Request-Method")) {
		case http.MethodGet, http.MethodHead, http.MethodPost:
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST")
			h.Set("Access-Control-Allow-Headers", "Accept, Accept-Language, Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", "600")
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}

// originAllowed reports whether origin is the origin of a redirect URI of
// a client of the request's server (the built-in console client's
// included).
func (p *Provider) originAllowed(r *http.Request, rq *request, origin string) bool {
	if origin == "null" {
		return false
	}
	if o := p.consoleOrigin(rq); o != "" && o == origin {
		return true
	}
	clients, err := rq.cfg.serverClients(r.Context())
	if err != nil {
		return false
	}
	for _, c := range clients {
		for _, u := range c.Spec.RedirectURIs {
			if pu, err := url.Parse(u); err == nil && pu.Scheme+"://"+pu.Host == origin {
				return true
			}
		}
	}
	return false
}
