package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// request is what the gin handler learnt about one request to an
// authorization server, put into its context for every storage call:
// zitadel passes the request's context to the storage, and finds the
// issuer with issuerFromRequest.
type request struct {
	tenantID string
	serverID string
	issuer   string
	server   *store.Typed[model.ServerSpec]
	// sessionHash is the hash of the login session cookie the request
	// carried ("" without one).
	sessionHash string

	mu   sync.Mutex
	keys *keys.Set // loaded once per request
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

// spec is the server's configuration.
func (rq *request) spec() *model.ServerSpec { return &rq.server.Spec }

// keySet loads the server's key set once per request; with ensure, a
// server without keys gets its first key.
func (rq *request) keySet(ctx context.Context, p *Provider, ensure bool) (*keys.Set, error) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if rq.keys != nil && (rq.keys.Len() > 0 || !ensure) {
		return rq.keys, nil
	}
	policy := keys.PolicyOf(rq.spec())
	var (
		set *keys.Set
		err error
	)
	if ensure {
		set, err = p.keys.Ensure(ctx, rq.tenantID, rq.serverID, keys.Rotation{Policy: policy, Now: p.now()})
	} else {
		set, err = p.keys.Load(ctx, rq.tenantID, rq.serverID, policy)
	}
	if err != nil {
		return nil, fmt.Errorf("keys of server %s/%s: %w", rq.tenantID, rq.serverID, err)
	}
	rq.keys = set
	return set, nil
}
