package oauth

import (
	"context"
	"errors"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
)

// request is what the gin handler learnt about one request to an
// authorization server, put into its context for every storage call:
// zitadel passes the request's context to the storage, and finds the
// issuer with issuerFromRequest.
type request struct {
	tenantID string
	serverID string
	issuer   string
	// cfg is the server's configuration at the store revision the
	// request started at (config.go).
	cfg *serverConfig
	// sessionHash is the hash of the login session cookie the request
	// carried ("" without one).
	sessionHash string
	// assertedClient is the client a valid, first-used client assertion
	// (private_key_jwt) of the request authenticated ("" without one).
	assertedClient string
}

type requestKey struct{}

func withRequest(ctx context.Context, rq *request) context.Context {
	return op.ContextWithIssuer(context.WithValue(ctx, requestKey{}, rq), rq.issuer)
}

// errNoRequest: a storage call outside a request the handler prepared
// (a programming error).
var errNoRequest = errors.New("oauth: no authorization server in the request context")

// requestFrom returns the request of ctx.
func requestFrom(ctx context.Context) (*request, error) {
	rq, _ := ctx.Value(requestKey{}).(*request)
	if rq == nil {
		return nil, errNoRequest
	}
	return rq, nil
}

// issuerFromRequest is the provider's issuer function: the issuer of the
// server the handler resolved, {public_url}/{tid}/{aid}.
func issuerFromRequest(bool) (op.IssuerFromRequest, error) {
	return func(r *http.Request) string {
		if rq, err := requestFrom(r.Context()); err == nil {
			return rq.issuer
		}
		return ""
	}, nil
}

// spec is the server's configuration (shared: read-only).
func (rq *request) spec() *model.ServerSpec { return &rq.cfg.server.Spec }

// keySet is the server's key set; with ensure, a server without keys
// gets its first key.
func (rq *request) keySet(ctx context.Context, p *Provider, ensure bool) (*keys.Set, error) {
	return rq.cfg.keySet(ctx, p.keys, p.now(), ensure)
}
