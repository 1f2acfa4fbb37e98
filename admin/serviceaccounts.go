package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Service accounts (WAVE2 §1.2 rows 42–46, §1.3, §1.4 rows 34–39):
// /api/admin/{tid}/service-accounts[/{said}], POST …/{said}/rotate and
// GET …/service-accounts/mapping/{client_id}.
//
// A service account is a confidential client_credentials client on the
// tenant's default server (model.ClientSpec.ServiceAccountID), made in
// the account's create transaction; its secret (256 random bits, stored
// as SHA-256) is shown by create and rotate only, with the client id and
// the server's token endpoint (authentication_url). Its tokens have sub =
// the account id and gh_sub_type "service_account" and live
// token_duration (PT1S..PT48H, default 24 h; Go or ISO-8601 durations);
// the client of a suspended or expired account fails authentication.
// issue_token: true on create or rotate also returns a long-lived access
// token, made by the OAuth provider exactly as its token endpoint makes
// client_credentials tokens (ServiceAccountTokenMinter), valid 90 days
// or the server's refresh_token_ttl when that is shorter (the server's
// longest-lived credential bounds it).
//
// Suspending, rotating (without a grace period) and deleting revoke the
// account's tokens: a not-before revocation of its subject at its
// server's issuer, which every gateway enforces, kept for
// saRevocationTTL. The answer to such a write comes once the second of
// the revocation is over: gateways compare a token's iat (whole seconds)
// with the revocation rounded up, so a token issued in that second is
// refused, and a caller who gets a new secret (or reactivates the
// account) only after it cannot get such a token. With a grace period,
// the previous secret keeps working that long and the tokens already
// issued stay valid until they expire.
//
// The account's client cannot be replaced, rotated or deleted through
// /clients (it goes with the account). group_ids are the groups the
// account is a member of (kept in the groups, groups.go): PUT replaces
// them. grant_default_roles (default true) is stored for issue G.

var serviceAccountRepo = store.Repo[model.ServiceAccountSpec]{Kind: model.KindServiceAccount}

// Limits and lifetimes of service accounts.
const (
	defaultSATokenDuration = 24 * time.Hour
	minSATokenDuration     = time.Second
	maxSATokenDuration     = 48 * time.Hour
	// saIssuedTokenTTL is the lifetime of an issue_token token, unless
	// the server's refresh_token_ttl is shorter.
	saIssuedTokenTTL = 90 * 24 * time.Hour
	// saRevocationTTL is how long a service account's not-before
	// revocation is kept: the longest any of its tokens can live (an
	// issued token is bounded by refresh_token_ttl, at most 8760 h).
	saRevocationTTL = 8760 * time.Hour
	// saMapping is the path segment of GET …/mapping/{client_id}, not an
	// account id.
	saMapping = "mapping"
)

// ServiceAccountTokenMinter issues the long-lived access token of a
// service account (the OAuth provider: oauth.Provider implements it):
// for the client clientID of server serverID of tenant tid, valid ttl.
type ServiceAccountTokenMinter interface {
	MintServiceAccountToken(ctx context.Context, tid, serverID, clientID string, ttl time.Duration) (token string, expiresAt time.Time, err error)
}

// serviceAccountRequest is the body of create and PUT (a GET body is a
// valid PUT body: client_id is read-only).
type serviceAccountRequest struct {
	ID                string            `json:"id"`
	TenantID          string            `json:"tenant_id"`
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	ContactEmail      string            `json:"contact_email"`
	TokenDuration     json.RawMessage   `json:"token_duration"`
	State             string            `json:"state"`
	ClientID          string            `json:"client_id"`
	GrantDefaultRoles *bool             `json:"grant_default_roles"`
	GroupIDs          []string          `json:"group_ids"`
	Expiry            *time.Time        `json:"expiry"`
	Labels            map[string]string `json:"labels"`
	// IssueToken (create only) also returns a long-lived access token.
	IssueToken bool `json:"issue_token"`
}

// serviceAccountBody is a service account as GET renders it.
type serviceAccountBody struct {
	ID                string            `json:"id"`
	TenantID          string            `json:"tenant_id"`
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	ContactEmail      string            `json:"contact_email"`
	TokenDuration     model.Duration    `json:"token_duration"`
	State             string            `json:"state"`
	ClientID          string            `json:"client_id"`
	GrantDefaultRoles bool              `json:"grant_default_roles"`
	GroupIDs          []string          `json:"group_ids"`
	Expiry            *time.Time        `json:"expiry,omitempty"`
	Labels            map[string]string `json:"labels"`
	Metadata          *Metadata         `json:"metadata,omitempty"`
}

// serviceAccountCredentials is the answer of create and rotate: the
// account and, this once, its client's secret (and an access token when
// asked for).
type serviceAccountCredentials struct {
	// ID is service_account.id again (every create answer names its
	// object's id at the top).
	ID                string             `json:"id"`
	ServiceAccount    serviceAccountBody `json:"service_account"`
	ClientID          string             `json:"client_id"`
	ClientSecret      string             `json:"client_secret"`
	AuthenticationURL string             `json:"authentication_url"`
	// PreviousSecretExpiresAt: a rotation's grace period ends then.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	AccessToken             string     `json:"access_token,omitempty"`
	ExpiresAt               *time.Time `json:"expires_at,omitempty"`
	// AccessTokenError says why the asked-for token could not be issued
	// after the write committed (the secret above is valid).
	AccessTokenError string `json:"access_token_error,omitempty"`
}

func renderServiceAccount(t *store.Typed[model.ServiceAccountSpec], groups []string) serviceAccountBody {
	out := serviceAccountBody{ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description,
		ContactEmail: t.Spec.ContactEmail, TokenDuration: t.Spec.TokenDuration, State: string(t.Spec.State), ClientID: t.Spec.ClientID,
		GrantDefaultRoles: t.Spec.GrantDefaultRoles, GroupIDs: nonNilStrings(groups), Labels: labelsOrEmpty(t.Meta.Labels),
		Metadata: metadataOf(&t.Meta)}
	if t.Spec.Expiry != nil {
		at := t.Spec.Expiry.UTC()
		out.Expiry = &at
	}
	return out
}

// addServiceAccountKinds registers service accounts.
func addServiceAccountKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindServiceAccount, Singular: "service account", Canonical: resource.SpecCodec[serviceAccountDocumentSpec], Exported: true,
		API: &kindAPI{
			param: "said", readOnly: []string{"client_id"}, nameField: "name",
			current: func(s *Server, c *gin.Context, tid, id string) (any, int64, error) {
				t, groups, err := loadServiceAccount(c.Request.Context(), s.store, tid, id)
				if err != nil {
					return nil, 0, err
				}
				return renderServiceAccount(t, groups), t.Meta.Revision, nil
			},
			list: (*Server).listServiceAccounts, get: (*Server).getServiceAccount,
			create: (*Server).createServiceAccount, put: (*Server).updateServiceAccount,
			onRemove: (*Server).serviceAccountRemoved,
			routes: func(s *Server, _, adm *gin.RouterGroup) {
				adm.POST("/service-accounts/:said/rotate", s.rotateServiceAccount)
				adm.GET("/service-accounts/"+saMapping+"/:client_id", s.serviceAccountByClient)
			},
			// The document's service accounts carry their client
			// (directory_config.go).
			export: exportServiceAccount, importItem: importOf(configServiceAccountObject),
			importCheck: checkConfigServiceAccounts, importWrite: (*Server).importServiceAccountWrite,
			documentState: serviceAccountDocumentState,
		},
	})
	keepAccountClientsOutOfDocuments(sch)
}

// keepAccountClientsOutOfDocuments keeps the service accounts' clients
// out of the document's clients: each is in its account's item
// (client_id, secret_hash) and goes with the account — export leaves it
// out of clients, deleteMissing of clients does not delete it
// (configuration.go; an import deletes it with its account), and a
// document client of the same id as one is refused (it would lose its
// account).
func keepAccountClientsOutOfDocuments(sch *resource.Scheme) {
	api := apiOf(sch.MustKind(model.KindClient))
	export, check := api.export, api.importCheck
	api.export = func(o *store.Object) (any, error) {
		if isAccountClient(o) {
			return nil, nil
		}
		return export(o)
	}
	api.importCheck = func(want []*configObject, stored configState, merge bool) *Error {
		for _, o := range want {
			if cur := stored[o.obj.ID]; cur != nil && isAccountClient(cur) {
				return fieldError(o.field+".client_id", "client %q is a service account's client, which configuration documents do not carry (it goes with its account)", o.obj.ID)
			}
		}
		if check != nil {
			return check(want, stored, merge)
		}
		return nil
	}
}

// isAccountClient reports whether a stored client is a service
// account's.
func isAccountClient(o *store.Object) bool {
	var spec struct {
		ServiceAccountID string `json:"service_account_id"`
	}
	return o != nil && json.Unmarshal(o.Spec, &spec) == nil && spec.ServiceAccountID != ""
}

// loadServiceAccount reads an account and its groups.
func loadServiceAccount(ctx context.Context, rd store.Reader, tid, id string) (*store.Typed[model.ServiceAccountSpec], []string, error) {
	t, err := serviceAccountRepo.Get(ctx, rd, tid, id)
	if err != nil {
		return nil, nil, err
	}
	groups, err := groupsOf(ctx, rd, tid, model.PrincipalKey(model.PrincipalServiceAccount, id))
	if err != nil {
		return nil, nil, err
	}
	return t, groups, nil
}

// isoDuration is an ISO-8601 duration without years and months (their
// length varies): PnW, PnD, PTnH, PTnM, PTn[.n]S, combined.
var isoDuration = regexp.MustCompile(`^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// parseFlexibleDuration reads a duration given as a Go duration ("24h"),
// an ISO-8601 duration ("PT24H") or a number of seconds; ok is false when
// raw is absent or null.
func parseFlexibleDuration(raw json.RawMessage) (d time.Duration, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var md model.Duration
		if err := md.UnmarshalJSON(raw); err != nil {
			return 0, false, errors.New("not a duration: give a Go duration (\"24h\"), an ISO-8601 duration (\"PT24H\") or seconds")
		}
		return md.D(), true, nil
	}
	s = strings.TrimSpace(s)
	if d, err := time.ParseDuration(s); err == nil {
		return d, true, nil
	}
	m := isoDuration.FindStringSubmatch(strings.ToUpper(s))
	if m == nil || s == "P" || strings.HasSuffix(strings.ToUpper(s), "T") {
		return 0, false, fmt.Errorf("not a duration: %q (give a Go duration such as \"24h\" or an ISO-8601 duration such as \"PT24H\"; no years or months)", s)
	}
	units := []time.Duration{7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute}
	for i, u := range units {
		if m[i+1] != "" {
			n, err := strconv.ParseInt(m[i+1], 10, 32)
			if err != nil {
				return 0, false, fmt.Errorf("not a duration: %q is too long", s)
			}
			d += time.Duration(n) * u
		}
	}
	if m[5] != "" {
		f, err := strconv.ParseFloat(m[5], 64)
		if err != nil || f > 1e9 {
			return 0, false, fmt.Errorf("not a duration: %q is too long", s)
		}
		d += time.Duration(f * float64(time.Second))
	}
	return d, true, nil
}

// validate checks a body (everything that needs no other object) into the
// account's envelope and spec (ClientID is the caller's).
func (r *serviceAccountRequest) validate(tid string, create bool) (store.Object, model.ServiceAccountSpec, *Error) {
	var errs field.ErrorList
	if e := tenantMatch(r.TenantID, tid); e != nil {
		errs.Extend(e.Fields())
	}
	errs.Extend(textErrors("name", r.Name, true, 256))
	errs.Extend(textErrors("description", r.Description, false, 1024))
	errs.Extend(labelErrors(r.Labels))
	if r.ContactEmail != "" {
		if a, err := mail.ParseAddress(r.ContactEmail); err != nil || a.Address != r.ContactEmail || len(r.ContactEmail) > 254 {
			errs.Add(field.Invalid(field.NewPath("contact_email"), "must be an email address (name@example.com)"))
		}
	}
	spec := model.ServiceAccountSpec{ContactEmail: r.ContactEmail, TokenDuration: model.Duration(defaultSATokenDuration),
		State: model.ServiceAccountActive, GrantDefaultRoles: r.GrantDefaultRoles == nil || *r.GrantDefaultRoles}
	d, ok, err := parseFlexibleDuration(r.TokenDuration)
	switch {
	case err != nil:
		errs.Add(field.Invalid(field.NewPath("token_duration"), "%s", err.Error()))
	case !ok:
	case d < minSATokenDuration || d > maxSATokenDuration:
		errs.Add(field.Invalid(field.NewPath("token_duration"), "must be between PT1S and PT48H (1s and 48h), got %s", d))
	default:
		spec.TokenDuration = model.Duration(d)
	}
	switch model.ServiceAccountState(r.State) {
	case "":
	case model.ServiceAccountActive, model.ServiceAccountSuspended:
		spec.State = model.ServiceAccountState(r.State)
	default:
		errs.Add(field.Invalid(field.NewPath("state"), "must be active or suspended, not %q", r.State))
	}
	if r.Expiry != nil {
		at := r.Expiry.UTC()
		if create && !at.After(time.Now()) {
			errs.Add(field.Invalid(field.NewPath("expiry"), "must be in the future"))
		}
		spec.Expiry = &at
	}
	errs.Extend(idListErrors("group_ids", r.GroupIDs, maxProjectGroups))
	if r.ClientID != "" {
		errs.Add(field.ReadOnly(field.NewPath("client_id"), "is read-only: Gatehouse makes the account's client"))
	}
	if r.IssueToken && !create {
		errs.Add(field.Invalid(field.NewPath("issue_token"), "is for create and POST …/rotate only"))
	}
	if create && r.IssueToken && spec.State != model.ServiceAccountActive {
		errs.Add(field.Invalid(field.NewPath("issue_token"), "a suspended service account gets no tokens"))
	}
	if len(errs) > 0 {
		return store.Object{}, model.ServiceAccountSpec{}, fieldErrors(errs)
	}
	return store.Object{Name: r.Name, Description: r.Description, Labels: r.Labels}, spec, nil
}

// accountServer is the tenant's default server, which the accounts'
// clients belong to; it must allow client_credentials.
func accountServer(ctx context.Context, rd store.Reader, tid string) (*store.Typed[model.ServerSpec], error) {
	server, err := serverRepo.Get(ctx, rd, tid, model.DefaultServerID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(http.StatusConflict, httpapi.CodeConflict,
			fmt.Sprintf("tenant %q has no %q server, which service accounts' clients belong to", tid, model.DefaultServerID), nil)
	}
	if err != nil {
		return nil, err
	}
	if g := server.Spec.GrantTypes; len(g) > 0 && !slices.Contains(g, model.GrantClientCredentials) {
		return nil, newError(http.StatusConflict, httpapi.CodeConflict,
			fmt.Sprintf("server %q does not allow the client_credentials grant, which service accounts use", model.DefaultServerID), nil)
	}
	return server, nil
}

// issuedTokenTTL is the lifetime of an issue_token token at server.
func issuedTokenTTL(server *store.Typed[model.ServerSpec]) time.Duration {
	if d := server.Spec.RefreshTokenTTL.D(); d > 0 && d < saIssuedTokenTTL {
		return d
	}
	return saIssuedTokenTTL
}

// tokenEndpoint is the token endpoint of a server of the tenant.
func (s *Server) tokenEndpoint(tid, serverID string) string {
	return model.IssuerURL(s.public, tid, serverID) + "/oauth2/token"
}

// revokeAccountTokens revokes, in tx, every token of account said issued
// at server serverID before now: a not-before of its subject.
func (s *Server) revokeAccountTokens(ctx context.Context, tx store.Tx, tid, serverID, said string, now time.Time) error {
	if err := grants.RevokeSubject(ctx, tx, tid, model.IssuerURL(s.public, tid, serverID), said, "", now, now.Add(saRevocationTTL)); err != nil {
		return fmt.Errorf("revoke the tokens of service account %q: %w", said, err)
	}
	return nil
}

// waitPastRevocation returns once the second of a revocation made at
// at is over (see the file's comment), or ctx ends.
func waitPastRevocation(ctx context.Context, at time.Time) {
	d := time.Until(at.Truncate(time.Second).Add(time.Second))
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// mint issues an account's long-lived token after its write committed;
// the error is reported in the answer (the secret is good either way).
func (s *Server) mint(c *gin.Context, out *serviceAccountCredentials, tid string, server *store.Typed[model.ServerSpec]) {
	tok, exp, err := s.saTokens.MintServiceAccountToken(c.Request.Context(), tid, server.Meta.ID, out.ClientID, issuedTokenTTL(server))
	if err != nil {
		logger(c).ErrorContext(c.Request.Context(), "issue a service account's token", "tenant", tid, "service_account", out.ID, "error", err.Error())
		out.AccessTokenError = "the access token could not be issued; the client credentials above are valid (POST …/rotate with issue_token to try again)"
		return
	}
	at := exp.UTC()
	out.AccessToken, out.ExpiresAt = tok, &at
}

func (s *Server) listServiceAccounts(c *gin.Context) {
	tid := tenantID(c)
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	ctx := c.Request.Context()
	var out []serviceAccountBody
	var pg *store.Page
	if err := s.store.View(ctx, func(ctx context.Context, rd store.Reader) error {
		items, p, err := serviceAccountRepo.List(ctx, rd, store.Query{TenantID: tid, Limit: limit, After: after})
		if err != nil {
			return err
		}
		out, pg = make([]serviceAccountBody, 0, len(items)), p
		for _, t := range items {
			groups, err := groupsOf(ctx, rd, tid, model.PrincipalKey(model.PrincipalServiceAccount, t.Meta.ID))
			if err != nil {
				return err
			}
			out = append(out, renderServiceAccount(t, groups))
		}
		return nil
	}); err != nil {
		abort(c, cursorError(err, "service account"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"service_accounts": out, "total": pg.Total, "next": pg.Next})
}

func (s *Server) getServiceAccount(c *gin.Context) {
	id, apiErr := objectIDParam(c, "said")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, groups, err := loadServiceAccount(c.Request.Context(), s.store, tenantID(c), id)
	if err != nil {
		fail(c, err, "service account", id)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, renderServiceAccount(t, groups))
}

// serviceAccountByClient answers GET /service-accounts/mapping/{client_id}.
func (s *Server) serviceAccountByClient(c *gin.Context) {
	tid := tenantID(c)
	cid, apiErr := objectIDParam(c, "client_id")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	ctx := c.Request.Context()
	var (
		t      *store.Typed[model.ServiceAccountSpec]
		groups []string
	)
	if err := s.store.View(ctx, func(ctx context.Context, rd store.Reader) error {
		client, err := oauthClientRepo.Get(ctx, rd, tid, cid)
		if errors.Is(err, store.ErrNotFound) || (err == nil && client.Spec.ServiceAccountID == "") {
			return notFound("service account of client", cid)
		}
		if err != nil {
			return err
		}
		if t, groups, err = loadServiceAccount(ctx, rd, tid, client.Spec.ServiceAccountID); errors.Is(err, store.ErrNotFound) {
			return notFound("service account of client", cid)
		}
		return err
	}); err != nil {
		fail(c, err, "service account", "")
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, renderServiceAccount(t, groups))
}

// createServiceAccount answers POST /service-accounts: the account, its
// client and group memberships in one transaction; the secret (and the
// token, with issue_token) in the answer only.
func (s *Server) createServiceAccount(c *gin.Context) {
	tid := tenantID(c)
	var req serviceAccountRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	id, idErr := newObjectID("id", req.ID)
	if idErr == nil && id == saMapping {
		idErr = fieldError("id", "%q is reserved (GET …/service-accounts/mapping/{client_id})", saMapping)
	}
	meta, spec, apiErr := req.validate(tid, true)
	if req.IssueToken && s.saTokens == nil {
		apiErr = collect(apiErr, fieldError("issue_token", "this control plane issues no service account tokens (no OAuth provider)"))
	}
	if apiErr = collect(idErr, apiErr); apiErr != nil {
		abort(c, apiErr)
		return
	}
	secret, err := clientauth.NewSecret()
	if err != nil {
		abort(c, internalError(err))
		return
	}
	spec.ClientID = uuid.NewString()
	meta.TenantID, meta.ID, meta.CreatedBy = tid, id, actor(c)
	t := &store.Typed[model.ServiceAccountSpec]{Meta: meta, Spec: spec}
	var server *store.Typed[model.ServerSpec]
	if !s.write(c, "service account", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		if server, err = accountServer(ctx, tx, tid); err != nil {
			return err
		}
		if err := serviceAccountRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := record(ctx, tx, c, tid, "create", model.KindServiceAccount, id); err != nil {
			return err
		}
		client := &store.Typed[model.ClientSpec]{
			Meta: store.Object{TenantID: tid, ID: spec.ClientID, Name: spec.ClientID, ParentID: id, CreatedBy: actor(c),
				Description: fmt.Sprintf("The OAuth client of service account %q, made by Gatehouse; it goes with the service account.", id)},
			Spec: model.ClientSpec{
				Name: "service account " + meta.Name, ServerID: server.Meta.ID, SecretHash: clientauth.HashSecret(secret), System: true,
				GrantTypes: []string{model.GrantClientCredentials}, ResponseTypes: []string{},
				TokenEndpointAuthMethod: model.AuthMethodBasic, ClientIDIssuedAt: time.Now().Unix(), ServiceAccountID: id,
			},
		}
		if err := oauthClientRepo.Create(ctx, tx, client); err != nil {
			return err
		}
		if err := record(ctx, tx, c, tid, "create", model.KindClient, client.Meta.ID); err != nil {
			return err
		}
		return setPrincipalGroups(ctx, tx, c, tid, model.PrincipalKey(model.PrincipalServiceAccount, id), "group_ids", req.GroupIDs)
	}) {
		return
	}
	out := serviceAccountCredentials{ID: id, ServiceAccount: renderServiceAccount(t, sortedCopy(req.GroupIDs)), ClientID: spec.ClientID,
		ClientSecret: secret, AuthenticationURL: s.tokenEndpoint(tid, server.Meta.ID)}
	if req.IssueToken {
		s.mint(c, &out, tid, server)
	}
	c.Header("Cache-Control", "no-store")
	respondObject(c, http.StatusCreated, t.Meta.Revision, out)
}

// sortedCopy is s sorted, s unchanged.
func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// updateServiceAccount answers PUT /service-accounts/{said} (PATCH merges
// into the current account and comes here): name, description, contact,
// state, token_duration, expiry, labels and groups; suspending revokes
// the account's tokens (answered once the revocation's second is over).
func (s *Server) updateServiceAccount(c *gin.Context) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, "said")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var req serviceAccountRequest
	if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
		abort(c, apiErr)
		return
	}
	meta, spec, apiErr := req.validate(tid, false)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var (
		t       *store.Typed[model.ServiceAccountSpec]
		revoked time.Time
	)
	if !s.write(c, "service account", id, func(ctx context.Context, tx store.Tx) error {
		revoked = time.Time{}
		var err error
		if t, err = serviceAccountRepo.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		old := t.Spec
		spec.ClientID = old.ClientID
		t.Spec = spec
		t.Meta.Name, t.Meta.Description, t.Meta.Labels = meta.Name, meta.Description, meta.Labels
		t.Meta.UpdatedBy = actor(c)
		if err := serviceAccountRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		if old.State == model.ServiceAccountActive && spec.State == model.ServiceAccountSuspended {
			client, err := oauthClientRepo.Get(ctx, tx, tid, old.ClientID)
			if err != nil {
				return fmt.Errorf("read the client of service account %q: %w", id, err)
			}
			revoked = time.Now()
			if err := s.revokeAccountTokens(ctx, tx, tid, client.Spec.ServerID, id, revoked); err != nil {
				return err
			}
		}
		if err := setPrincipalGroups(ctx, tx, c, tid, model.PrincipalKey(model.PrincipalServiceAccount, id), "group_ids", req.GroupIDs); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindServiceAccount, id)
	}) {
		return
	}
	if !revoked.IsZero() {
		waitPastRevocation(c.Request.Context(), revoked)
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, renderServiceAccount(t, sortedCopy(req.GroupIDs)))
}

// serviceAccountRotateRequest is the optional body of POST …/rotate.
type serviceAccountRotateRequest struct {
	// GracePeriod keeps the previous secret valid that long (Go or
	// ISO-8601 duration, default 0; at most 720h) and leaves the tokens
	// issued so far valid until they expire.
	GracePeriod json.RawMessage `json:"grace_period"`
	IssueToken  bool            `json:"issue_token"`
}

// rotateServiceAccount answers POST /service-accounts/{said}/rotate: a
// new secret, shown this once. Without a grace period the previous
// secret stops working and every token of the account is revoked.
func (s *Server) rotateServiceAccount(c *gin.Context) {
	tid := tenantID(c)
	id, expect, ok := pathIDAndIfMatch(c, "said")
	if !ok {
		return
	}
	var req serviceAccountRotateRequest
	if c.Request.ContentLength != 0 {
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	grace, _, err := parseFlexibleDuration(req.GracePeriod)
	var apiErr *Error
	switch {
	case err != nil:
		apiErr = fieldError("grace_period", "%s", err.Error())
	case grace < 0 || grace > maxClientGracePeriod:
		apiErr = fieldError("grace_period", "must be between 0s and %s", maxClientGracePeriod)
	case req.IssueToken && s.saTokens == nil:
		apiErr = fieldError("issue_token", "this control plane issues no service account tokens (no OAuth provider)")
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	secret, err := clientauth.NewSecret()
	if err != nil {
		abort(c, internalError(err))
		return
	}
	var (
		t       *store.Typed[model.ServiceAccountSpec]
		groups  []string
		client  *store.Typed[model.ClientSpec]
		server  *store.Typed[model.ServerSpec]
		revoked time.Time
	)
	if !s.write(c, "service account", id, func(ctx context.Context, tx store.Tx) error {
		revoked = time.Time{}
		var err error
		if t, groups, err = loadServiceAccount(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		if req.IssueToken && t.Spec.State != model.ServiceAccountActive {
			return fieldError("issue_token", "service account %q is suspended: it gets no tokens", id)
		}
		if client, err = oauthClientRepo.Get(ctx, tx, tid, t.Spec.ClientID); err != nil {
			return fmt.Errorf("read the client of service account %q: %w", id, err)
		}
		if server, err = serverRepo.Get(ctx, tx, tid, client.Spec.ServerID); err != nil {
			return fmt.Errorf("read the server of service account %q: %w", id, err)
		}
		client.Spec.PreviousSecretHash, client.Spec.PreviousSecretExpiresAt = "", nil
		if grace > 0 {
			until := time.Now().Add(grace).UTC()
			client.Spec.PreviousSecretHash, client.Spec.PreviousSecretExpiresAt = client.Spec.SecretHash, &until
		} else {
			revoked = time.Now()
			if err := s.revokeAccountTokens(ctx, tx, tid, client.Spec.ServerID, id, revoked); err != nil {
				return err
			}
		}
		client.Spec.SecretHash = clientauth.HashSecret(secret)
		client.Meta.UpdatedBy = actor(c)
		if err := oauthClientRepo.Update(ctx, tx, client, 0); err != nil {
			return err
		}
		if err := record(ctx, tx, c, tid, "rotate", model.KindClient, client.Meta.ID); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "rotate", model.KindServiceAccount, id)
	}) {
		return
	}
	if !revoked.IsZero() {
		waitPastRevocation(c.Request.Context(), revoked)
	}
	out := serviceAccountCredentials{ID: id, ServiceAccount: renderServiceAccount(t, groups), ClientID: client.Meta.ID,
		ClientSecret: secret, AuthenticationURL: s.tokenEndpoint(tid, server.Meta.ID), PreviousSecretExpiresAt: client.Spec.PreviousSecretExpiresAt}
	if req.IssueToken {
		s.mint(c, &out, tid, server)
	}
	c.Header("Cache-Control", "no-store")
	respondObject(c, http.StatusOK, t.Meta.Revision, out)
}

// serviceAccountRemoved runs in an account's delete: its tokens are
// revoked (not-before of its subject), its client is deleted and it
// leaves its groups and projects.
func (s *Server) serviceAccountRemoved(ctx context.Context, tx store.Tx, o *store.Object) error {
	var spec model.ServiceAccountSpec
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return fmt.Errorf("decode service account %q: %w", o.ID, err)
		}
	}
	serverID := model.DefaultServerID
	client, err := oauthClientRepo.Get(ctx, tx, o.TenantID, spec.ClientID)
	switch {
	case err == nil && client.Spec.ServiceAccountID == o.ID:
		serverID = client.Spec.ServerID
		if _, err := tx.Delete(ctx, model.KindClient, o.TenantID, client.Meta.ID, 0, false); err != nil {
			return fmt.Errorf("delete the client of service account %q: %w", o.ID, err)
		}
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}
	if err := s.revokeAccountTokens(ctx, tx, o.TenantID, serverID, o.ID, time.Now()); err != nil {
		return err
	}
	return removePrincipalMemberships(ctx, tx, o.TenantID, model.PrincipalKey(model.PrincipalServiceAccount, o.ID))
}
