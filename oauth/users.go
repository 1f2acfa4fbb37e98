package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Tenant users (the directory, issue F) log in through the methods
// password, custom and oidc (federation). Their sub is the user id (an
// object id, never "static/…"), gh_sub_type "user"; sessions and the
// tokens issued from them carry directory.CredentialVersion of the user
// at the login, and are good only while the user is live, active and
// has that version (a password set, an MFA reset or a recovery change
// it).

// errUserInactive: the tenant user is suspended or pending.
var errUserInactive = errors.New("the user is not active")

// isStaticSubject reports whether sub is a static user's subject (every
// other user subject is a tenant user's id).
func isStaticSubject(sub string) bool { return strings.HasPrefix(sub, staticSubjectPrefix) }

// tenantUser is the live user sub of tenant tid: errNoUser when there is
// none, errUserInactive when it is not active.
func (p *Provider) tenantUser(ctx context.Context, tid, sub string) (*store.Typed[model.UserSpec], error) {
	if !model.ValidObjectID(sub) {
		return nil, errNoUser
	}
	u, err := directory.Users.Get(ctx, p.store, tid, sub)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoUser
	case err != nil:
		return nil, fmt.Errorf("read user %q: %w", sub, err)
	case u.Spec.State != model.UserActive:
		return u, errUserInactive
	}
	return u, nil
}

// subjectCurrent checks that a user subject of a session or token may
// still use it: a static user still at an enabled static method of the
// server with the password of its login (userCurrent), or a tenant user
// still live and active with the credential version of its login. A
// store failure is an error too (deny when unsure).
func (p *Provider) subjectCurrent(ctx context.Context, rq *request, sub, credential string) error {
	if isStaticSubject(sub) {
		return userCurrent(rq.spec(), sub, credential)
	}
	u, err := p.tenantUser(ctx, rq.tenantID, sub)
	if err != nil {
		return err
	}
	if credential == "" || subtle.ConstantTimeCompare([]byte(directory.CredentialVersion(&u.Spec)), []byte(credential)) != 1 {
		return errCredentialChanged
	}
	return nil
}

// enabledMethod is the server's enabled login method of id, or nil.
func enabledMethod(s *model.ServerSpec, id string) *model.AuthenticationMethod {
	for i := range s.Authentications {
		if m := &s.Authentications[i]; m.ID == id && !m.Disabled {
			return m
		}
	}
	return nil
}

// userAuthContext is the authentication context of a tenant user: the
// directory's claims of the user (email, email_verified, name,
// given_name, family_name, preferred_username, locale) over extra (what
// the method adds: an upstream identity provider's mapped claims, a
// custom login's context). The directory's values win: they are the
// tenant's, the others are what an upstream said.
func userAuthContext(u *store.Typed[model.UserSpec], extra map[string]any) map[string]any {
	out := maps.Clone(extra)
	if out == nil {
		out = map[string]any{}
	}
	s := &u.Spec
	set := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	set("email", s.Email)
	out["email_verified"] = s.EmailVerified
	set("name", s.DisplayName())
	set("given_name", s.GivenName)
	set("family_name", s.FamilyName)
	set("preferred_username", s.PreferredUsername)
	set("locale", s.Locale)
	return out
}

// completeUserLogin logs tenant user user in for auth request a, by the
// server's method methodID with the authentication methods amr (RFC
// 8176: "pwd", "otp", "fed", …) and the authentication context authCtx
// (merged under the user's directory claims, userAuthContext): it starts
// a login session (cookie gh_session) bound to the user's current
// credential version, records the user's activity, and completes the
// auth request (the browser goes on to the callback that issues the
// code). A user that is no longer active (or no longer exists) gets
// access_denied back at the client, and nothing is issued. Every login
// method of tenant users ends here.
func (p *Provider) completeUserLogin(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest,
	user *store.Typed[model.UserSpec], methodID string, amr []string, authCtx map[string]any) {
	ctx := r.Context()
	// Read again: the caller's copy may predate a suspension.
	cur, err := p.tenantUser(ctx, rq.tenantID, user.Meta.ID)
	if err != nil {
		if errors.Is(err, errNoUser) || errors.Is(err, errUserInactive) {
			p.denyLogin(w, r, rq, a, "the user is not active in this tenant")
			return
		}
		p.serverError(w, "read the user", err)
		return
	}
	value, err := grants.NewSecret()
	if err != nil {
		p.serverError(w, "start a session", err)
		return
	}
	now := p.now().UTC()
	maxAge := rq.spec().CookieMaxAge.D()
	if maxAge <= 0 {
		maxAge = time.Hour
	}
	sess := &grants.Session{ServerID: rq.serverID, Subject: cur.Meta.ID, MethodID: methodID, Username: cur.Spec.Email,
		AuthTime: now, AMR: slices.Clone(amr), AuthContext: userAuthContext(cur, authCtx),
		Credential: directory.CredentialVersion(&cur.Spec), ExpiresAt: now.Add(maxAge)}
	if err := p.records.PutSession(ctx, rq.tenantID, value, sess); err != nil {
		p.serverError(w, "start a session", err)
		return
	}
	if err := directory.TouchUser(ctx, p.store, rq.tenantID, cur.Meta.ID, now); err != nil {
		p.log.Warn("oauth: record a user's activity", "tenant", rq.tenantID, "error", err)
	}
	http.SetCookie(w, p.sessionCookie(rq, value, int(maxAge/time.Second)))
	p.complete(w, r, rq, a, sess, grants.Hash(value))
}

// denyLogin ends auth request a with access_denied at the client's
// redirect URI (its slot freed, the request deleted).
func (p *Provider) denyLogin(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, why string) {
	p.denyLoginWith(w, r, rq, a, oidc.ErrAccessDenied().WithDescription("%s", why))
}

// denyLoginWith ends auth request a with the error e at the client's
// redirect URI (its slot freed, the request deleted).
func (p *Provider) denyLoginWith(w http.ResponseWriter, r *http.Request, rq *request, a *authRequest, e *oidc.Error) {
	ctx := r.Context()
	_ = p.records.ReleaseAuthRequestSlot(ctx, rq.tenantID, a.r.Slot)
	_ = p.records.DeleteAuthRequest(ctx, rq.tenantID, a.r.ID)
	op.AuthRequestError(w, r, a, e, p.op)
}
