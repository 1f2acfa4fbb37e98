package oauth

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/internal/secretbox"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Paths under an issuer {public_url}/{tid}/{aid}.
const (
	pathAuthorize      = "oauth2/authorize"
	pathToken          = "oauth2/token"
	pathIntrospect     = "oauth2/introspect"
	pathRevoke         = "oauth2/revoke"
	pathUserinfo       = "userinfo"
	pathLogout         = "oauth2/logout"
	pathJWKS           = ".well-known/jwks.json"
	pathOIDCDiscovery  = "/.well-known/openid-configuration"
	pathOAuthDiscovery = "/.well-known/oauth-authorization-server"
	pathLogin          = "/login"
	pathLoggedOut      = "/login/logged-out"
)

// Options configure the provider.
type Options struct {
	// Store holds the tenants, servers, clients, claims and scopes, and
	// the runtime records (package grants).
	Store store.Store
	// Keys holds the servers' signing keys.
	Keys *keys.Manager
	// PublicURL is the process's public base URL; the issuer of server
	// aid of tenant tid is {PublicURL}/{tid}/{aid}. https unless the host
	// is a loopback address.
	PublicURL string
	// CryptoKey encrypts opaque access tokens and authorization codes and
	// keys the login form's CSRF tokens (derive it from the master key).
	CryptoKey [32]byte
	// Logger records failures (never secrets); nil discards.
	Logger *slog.Logger
	// Now is the clock of the records and keys (nil: time.Now).
	Now func() time.Time
	// MaxPendingAuthRequests bounds, per server, the auth requests waiting
	// for their login, across every replica sharing the store (0:
	// DefaultMaxPendingAuthRequests); beyond it /authorize answers
	// temporarily_unavailable and stores nothing.
	MaxPendingAuthRequests int
	// PasswordVerifications bounds the password verifications (argon2id,
	// 19 MiB each) this process runs at once (0: twice GOMAXPROCS).
	PasswordVerifications int
	// PasswordWait is how long a login waits for a verification slot
	// before it is answered 503 with Retry-After (0: 2 s).
	PasswordWait time.Duration
	// Box seals the secrets the login keeps (tenant users' TOTP seeds);
	// nil: TOTP enrolment fails (500) and sealed seeds cannot be read.
	Box *secretbox.Box
	// IdPAllowPrivateURLs lets the login's federation reach identity
	// providers on loopback, private and link-local addresses, and over
	// plain http (tests and labs: --idp-allow-private-urls).
	IdPAllowPrivateURLs bool
}

// Provider is the process's one OAuth 2.0 / OpenID Connect provider,
// serving every authorization server of every tenant at its issuer.
type Provider struct {
	op      *op.Provider
	storage *storage
	store   store.Store
	configs *configCache
	keys    *keys.Manager
	records *grants.Records
	public  string
	// console is the redirect URI of the web console's built-in client
	// (console.go), "" when the public URL cannot have one.
	console string
	secure  bool
	csrfKey []byte
	log     *slog.Logger
	now     func() time.Time
	issuer  *op.IssuerInterceptor
	// maxPending is Options.MaxPendingAuthRequests.
	maxPending int
	// verifySlots bounds the concurrent password verifications; pwWait is
	// how long a login waits for one.
	verifySlots chan struct{}
	pwWait      time.Duration
	// dummyHash is what unknown usernames are verified against.
	dummyHash func() (string, error)
	// box is Options.Box.
	box *secretbox.Box
	// idpHTTP is the client of every request to an identity provider;
	// idps caches their configurations (federation.go).
	idpHTTP *http.Client
	idps    *idpCache
}

// New builds the provider.
func New(opts Options) (*Provider, error) {
	if opts.Store == nil || opts.Keys == nil {
		return nil, errors.New("oauth: a store and a key manager are required")
	}
	pub, err := url.Parse(strings.TrimRight(opts.PublicURL, "/"))
	if err != nil || pub.Host == "" || (pub.Scheme != "https" && pub.Scheme != "http") || pub.RawQuery != "" || pub.Fragment != "" {
		return nil, fmt.Errorf("oauth: the public URL %q is not an http(s) base URL", opts.PublicURL)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mac := hmac.New(sha256.New, opts.CryptoKey[:])
	mac.Write([]byte("gatehouse/oauth/login-csrf"))
	p := &Provider{
		store:       opts.Store,
		configs:     newConfigCache(opts.Store),
		keys:        opts.Keys,
		records:     grants.NewRecords(opts.Store, now),
		public:      pub.String(),
		console:     consoleRedirect(pub),
		secure:      pub.Scheme == "https",
		csrfKey:     mac.Sum(nil),
		log:         log,
		now:         now,
		maxPending:  cmp.Or(opts.MaxPendingAuthRequests, DefaultMaxPendingAuthRequests),
		verifySlots: make(chan struct{}, cmp.Or(opts.PasswordVerifications, 2*runtime.GOMAXPROCS(0))),
		pwWait:      cmp.Or(opts.PasswordWait, 2*time.Second),
		dummyHash:   sync.OnceValues(newDummyHash),
		box:         opts.Box,
		idpHTTP:     newIdPHTTPClient(opts.IdPAllowPrivateURLs),
		idps:        newIdPCache(),
	}
	if p.console == "" {
		log.Warn("oauth: the web console cannot sign in with Gatehouse: its redirect URI would be plain http to a host that is not loopback; "+
			"use an https --public-url (pasting a credential still works)", "public_url", p.public)
	}
	p.storage = &storage{p: p}
	config := &op.Config{
		CryptoKey:               opts.CryptoKey,
		CodeMethodS256:          true,
		AuthMethodPost:          true,
		AuthMethodPrivateKeyJWT: true,
		GrantTypeRefreshToken:   true,
		SupportedScopes:         standardScopes,
	}
	endpoint := op.NewEndpoint
	provider, err := op.NewProvider(config, p.storage, issuerFromRequest,
		op.WithAllowInsecure(), // the issuer function is ours: https is checked above
		op.WithCustomEndpoints(endpoint(pathAuthorize), endpoint(pathToken), endpoint(pathUserinfo),
			endpoint(pathRevoke), endpoint(pathLogout), endpoint(pathJWKS)),
		op.WithCustomIntrospectionEndpoint(endpoint(pathIntrospect)),
		op.WithCORSOptions(nil), // cors.go
	)
	if err != nil {
		return nil, fmt.Errorf("oauth: build the provider: %w", err)
	}
	p.op = provider
	p.issuer = op.NewIssuerInterceptor(provider.IssuerFromRequest)
	return p, nil
}

// Register adds the authorization servers' routes: every path
// /{tid}/{aid}/… (the issuer's endpoints, discovery and the login page).
func (p *Provider) Register(r gin.IRouter) {
	r.Any("/:tid/:aid/*rest", p.handle)
}

// RevokeClient implements admin.TokenRevoker: in tx (which deletes the
// client) every unexpired access token server serverID issued to
// clientID is added to the revocation list; its refresh tokens die with
// the client (refreshes check the client's UID).
func (p *Provider) RevokeClient(ctx context.Context, tx store.Tx, tenantID, serverID, clientID string) error {
	return grants.RevokeClient(ctx, tx, p.store, tenantID, serverID, clientID, p.issuerOf(tenantID, serverID))
}

// issuerOf is the issuer URL of a server.
func (p *Provider) issuerOf(tenantID, serverID string) string {
	return model.IssuerURL(p.public, tenantID, serverID)
}

var (
	tenantRepo = store.Repo[model.TenantSpec]{Kind: model.KindTenant}
	serverRepo = store.Repo[model.ServerSpec]{Kind: model.KindServer}
)

// handle resolves tenant and server and dispatches the request.
func (p *Provider) handle(c *gin.Context) {
	tid, aid, rest := c.Param("tid"), c.Param("aid"), c.Param("rest")
	ctx := c.Request.Context()
	cfg, err := p.configs.get(ctx, tid, aid)
	switch {
	case errors.Is(err, errNoTenant):
		writeOAuthError(c.Writer, http.StatusNotFound, "invalid_request", "tid: no tenant "+tid)
		return
	case errors.Is(err, errNoServer):
		writeOAuthError(c.Writer, http.StatusNotFound, "invalid_request", "aid: no authorization server "+aid+" in tenant "+tid)
		return
	case err != nil:
		p.serverError(c.Writer, "read the server's configuration", err)
		return
	case cfg.tenant.Spec.Status == model.TenantDisabled:
		writeOAuthError(c.Writer, http.StatusForbidden, "access_denied", "tid: tenant "+tid+" is disabled")
		return
	}
	rq := &request{tenantID: tid, serverID: aid, issuer: p.issuerOf(tid, aid), cfg: cfg}
	if ck, err := c.Request.Cookie(sessionCookie); err == nil && ck.Value != "" {
		rq.sessionHash = grants.Hash(ck.Value)
	}
	r := c.Request.WithContext(withRequest(ctx, rq))
	w := c.Writer
	if p.cors(w, r, rq) {
		return
	}
	if key, ok := strings.CutPrefix(rest, pathInvitations+"/"); ok {
		p.serveInvitation(w, r, rq, key)
		return
	}
	switch rest {
	case pathOIDCDiscovery, pathOAuthDiscovery:
		p.discovery(w, r, rq)
	case pathLogin:
		p.issuer.Handler(http.HandlerFunc(p.login)).ServeHTTP(w, r)
	case pathLoggedOut:
		p.loggedOut(w, r)
	case pathLoginCallback:
		p.issuer.Handler(http.HandlerFunc(p.loginCallback)).ServeHTTP(w, r)
	case pathCustomCallback:
		p.issuer.Handler(http.HandlerFunc(p.customCallback)).ServeHTTP(w, r)
	case "/" + pathAuthorize:
		p.serveAuthorize(w, r, rq)
	case "/" + pathAuthorize + "/callback":
		p.serveCallback(w, r, rq)
	case "/" + pathToken:
		if !p.tokenGrantAllowed(w, r, rq) || p.assertionReplayed(w, r, rq) {
			return
		}
		p.serveProvider(w, r, rq, jsonErrors)
	case "/" + pathIntrospect, "/" + pathRevoke:
		if p.assertionReplayed(w, r, rq) {
			return
		}
		p.serveProvider(w, r, rq, jsonErrors)
	case "/" + pathLogout:
		if p.logoutNeedsConfirmation(w, r, rq) {
			return
		}
		p.serveProvider(w, r, rq, jsonErrors)
	case "/" + pathUserinfo, "/" + pathJWKS:
		p.serveProvider(w, r, rq, jsonErrors)
	default:
		if key, ok := strings.CutPrefix(rest, pathRecover); ok {
			p.recoverPage(w, r, rq, key)
			return
		}
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "path: no endpoint "+rest+" at this issuer")
	}
}

// serveProvider hands the request to zitadel's router below the issuer
// path, rewriting its plain-text error answers (see errors.go).
func (p *Provider) serveProvider(w http.ResponseWriter, r *http.Request, rq *request, errs errorStyle) {
	rec := newRecorder()
	http.StripPrefix("/"+rq.tenantID+"/"+rq.serverID, p.op).ServeHTTP(rec, r)
	p.finish(w, r, rq, rec, errs)
}

// tokenGrantAllowed refuses, before zitadel sees them, the grants this
// server does not allow and those Gatehouse does not offer (device code,
// token exchange, JWT bearer), with unsupported_grant_type.
func (p *Provider) tokenGrantAllowed(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if r.Method != http.MethodPost {
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method: the token endpoint takes POST")
		return false
	}
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "body: not a form (application/x-www-form-urlencoded)")
		return false
	}
	grant := r.PostForm.Get("grant_type")
	switch {
	case grant == "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type: missing")
		return false
	case grant == model.GrantImplicit || !tokenGrants[grant]:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type: not supported (authorization_code, refresh_token or client_credentials)")
		return false
	case !serverAllows(rq.spec(), grant):
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type: "+grant+" is not enabled on this server")
		return false
	}
	return true
}

// tokenGrants are the grants of the token endpoint.
var tokenGrants = map[string]bool{
	model.GrantAuthorizationCode: true,
	model.GrantRefreshToken:      true,
	model.GrantClientCredentials: true,
}

// serverAllows reports whether the server allows a grant type.
func serverAllows(s *model.ServerSpec, grant string) bool {
	for _, g := range s.GrantTypes {
		if g == grant {
			return true
		}
	}
	return false
}

// serverError answers 500 server_error and logs the cause.
func (p *Provider) serverError(w http.ResponseWriter, what string, err error) {
	p.log.Error("oauth: "+what, "error", err)
	status := http.StatusInternalServerError
	if errors.Is(err, store.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	writeOAuthError(w, status, "server_error", "the server could not "+what)
}
