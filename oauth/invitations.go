package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The invitee's side of an invitation (issue 14 item 7, WAVE2 §1.4 rows
// 46-48), anonymous and addressed by the key, under the issuer of the
// tenant's default server only:
//
//	GET  {issuer}/login/invitations/{key}          the summary (JSON, no ids)
//	PUT  {issuer}/login/invitations/{key}/decline  decline (from Open)
//	POST {issuer}/login/invitations/{key}/accept   sign in to accept (from Open)
//	GET  {issuer}/login/invitations/done           where that sign-in ends
//
// Accepting starts an auth request of the server's built-in client
// invitationClientID (never stored, like the console's; its one redirect
// URI is the done page), bound to the browser like any other (binding
// cookie), with prompt=login, login_hint the invited email, and the key's
// hash (grants.AuthRequest.InvitationKeyHash). The login then runs as
// usual. A federated login's identity resolution hands the upstream
// identity to acceptInvitation (resolveIdentity): it is mapped to the
// invitation's target user (pending becomes active) or to a new user of
// the invited email, and the invitation becomes Accepted — all in one
// transaction, or a denial (access_denied at the done page) that changes
// nothing. A login that signs a tenant user in directly (password, a
// custom login) accepts at the done page as that user. The code the
// done page receives is taken there (its PKCE verifier was never kept,
// so it could not be exchanged anyway): the built-in client gets no
// tokens, the browser keeps its login session.

// pathInvitations is the invitation pages' prefix under an issuer.
const pathInvitations = "/login/invitations"

// invitationDone is the last segment of the done page.
const invitationDone = "done"

// invitationClientID is the default servers' built-in client of the
// invitation sign-ins.
const invitationClientID = model.InvitationClientID

// invitationClientUID is its UID (never re-created, never changes).
const invitationClientUID = "builtin:" + invitationClientID

// invitationClient is the built-in client of the request's server, nil
// unless it is a default server.
func (p *Provider) invitationClient(rq *request) *store.Typed[model.ClientSpec] {
	if rq.serverID != model.DefaultServerID {
		return nil
	}
	name := "accept the invitation"
	if rq.cfg != nil && rq.cfg.tenant != nil && rq.cfg.tenant.Spec.Name != "" {
		name = "accept the invitation to " + rq.cfg.tenant.Spec.Name
	}
	return &store.Typed[model.ClientSpec]{
		Meta: store.Object{Kind: model.KindClient, TenantID: rq.tenantID, ID: invitationClientID, UID: invitationClientUID,
			Name: invitationClientID, Description: "Built in: the sign-in that accepts an invitation."},
		Spec: model.ClientSpec{
			Name: name, ServerID: rq.serverID, System: true, Public: true,
			GrantTypes: []string{model.GrantAuthorizationCode}, ResponseTypes: []string{string(oidc.ResponseTypeCode)},
			RedirectURIs: []string{rq.issuer + pathInvitations + "/" + invitationDone}, Scopes: []string{oidc.ScopeOpenID},
			TokenEndpointAuthMethod: model.AuthMethodNone,
		},
	}
}

// serveInvitation dispatches {issuer}/login/invitations/{rest}.
func (p *Provider) serveInvitation(w http.ResponseWriter, r *http.Request, rq *request, rest string) {
	if rq.serverID != model.DefaultServerID {
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "path: invitations are answered at the tenant's default server")
		return
	}
	w.Header().Set("Referrer-Policy", "no-referrer") // the key is in the path
	if rest == invitationDone {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeErrorPage(w, http.StatusMethodNotAllowed, "The page takes GET.")
			return
		}
		p.invitationDonePage(w, r, rq)
		return
	}
	key, action, _ := strings.Cut(rest, "/")
	method := map[string]string{"": http.MethodGet, directory.InvitationDecline: http.MethodPut, directory.InvitationAccept: http.MethodPost}
	want, known := method[action]
	if !known || strings.Contains(action, "/") {
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "path: no such invitation page")
		return
	}
	if r.Method != want && !(want == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", want)
		writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "method: this invitation page takes "+want)
		return
	}
	ctx := r.Context()
	inv, err := directory.InvitationByKey(ctx, p.store, rq.tenantID, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeOAuthError(w, http.StatusNotFound, "not_found", "key: no invitation of this tenant has this key")
		return
	case err != nil:
		p.serverError(w, "read the invitation", err)
		return
	}
	switch action {
	case "":
		p.writeInvitationSummary(ctx, w, rq, inv, http.StatusOK)
	case directory.InvitationDecline:
		p.declineInvitation(w, r, rq, inv)
	case directory.InvitationAccept:
		p.startInvitationLogin(w, r, rq, inv)
	}
}

// identitySummary names a person without their id.
type identitySummary struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// invitationSummary is what the key shows: no ids (seed 002
// InvitationSummary).
type invitationSummary struct {
	FromIdentity        *identitySummary      `json:"from_identity,omitempty"`
	TargetIdentity      *identitySummary      `json:"target_identity,omitempty"`
	InvitedEmailAddress string                `json:"invited_email_address"`
	ToTenantName        string                `json:"to_tenant_name"`
	State               model.InvitationState `json:"state"`
	Expiration          time.Time             `json:"expiration"`
	Accepted            *bool                 `json:"accepted"`
}

// identityOf is the summary of the user or service account id of tid
// (nil when there is none).
func (p *Provider) identityOf(ctx context.Context, tid, id string) (*identitySummary, error) {
	if id == "" {
		return nil, nil
	}
	u, err := directory.Users.Get(ctx, p.store, tid, id)
	if err == nil {
		return &identitySummary{Name: u.Spec.DisplayName(), Email: u.Spec.Email}, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	sa, err := serviceAccountRepo.Get(ctx, p.store, tid, id)
	if err == nil {
		return &identitySummary{Name: sa.Meta.Name, Email: sa.Spec.ContactEmail}, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	return nil, err
}

// writeInvitationSummary answers the invitation's summary.
func (p *Provider) writeInvitationSummary(ctx context.Context, w http.ResponseWriter, rq *request, inv *store.Typed[model.InvitationSpec], status int) {
	from, err := p.identityOf(ctx, rq.tenantID, inv.Spec.FromIdentityID)
	if err != nil {
		p.serverError(w, "read the invitation", err)
		return
	}
	target, err := p.identityOf(ctx, rq.tenantID, inv.Spec.TargetUserIdentityID)
	if err != nil {
		p.serverError(w, "read the invitation", err)
		return
	}
	out := invitationSummary{FromIdentity: from, TargetIdentity: target, InvitedEmailAddress: inv.Spec.InvitedEmailAddress,
		ToTenantName: rq.cfg.tenant.Spec.Name, State: inv.Spec.State(p.now()), Expiration: inv.Spec.Expiration.UTC(), Accepted: inv.Spec.Accepted}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}

// writeTransitionError answers an answer the invitation's state refuses.
func writeTransitionError(w http.ResponseWriter, err error) bool {
	var te *directory.InvitationTransitionError
	if !errors.As(err, &te) {
		return false
	}
	writeOAuthError(w, http.StatusConflict, "invalid_transition", "state: "+te.Error())
	return true
}

// declineInvitation is PUT …/{key}/decline: Open → Declined (audited),
// the summary answered; any other state a 409 that changes nothing.
func (p *Provider) declineInvitation(w http.ResponseWriter, r *http.Request, rq *request, inv *store.Typed[model.InvitationSpec]) {
	var out *store.Typed[model.InvitationSpec]
	_, err := p.store.Update(r.Context(), func(ctx context.Context, tx store.Tx) error {
		cur, err := directory.Invitations.Get(ctx, tx, rq.tenantID, inv.Meta.ID)
		if err != nil {
			return err
		}
		if err := directory.RespondInvitation(&cur.Spec, directory.InvitationDecline, p.now()); err != nil {
			return err
		}
		cur.Meta.UpdatedBy = invitationActor(cur.Meta.ID)
		if err := directory.Invitations.Update(ctx, tx, cur, 0); err != nil {
			return err
		}
		out = cur
		return tx.AppendEvent(ctx, &store.Event{TenantID: rq.tenantID, Actor: invitationActor(cur.Meta.ID), Action: "update",
			Kind: model.KindInvitation, ObjectID: cur.Meta.ID})
	})
	switch {
	case writeTransitionError(w, err):
	case errors.Is(err, store.ErrNotFound):
		writeOAuthError(w, http.StatusNotFound, "not_found", "key: no invitation of this tenant has this key")
	case err != nil:
		p.serverError(w, "decline the invitation", err)
	default:
		p.writeInvitationSummary(r.Context(), w, rq, out, http.StatusOK)
	}
}

// invitationActor names the invitee in audit events.
func invitationActor(id string) string { return "invitation:" + id }

// startInvitationLogin is POST …/{key}/accept: for an Open invitation, a
// new auth request of the built-in client bound to this browser, and a
// 303 to the server's login page; any other state a 409.
func (p *Provider) startInvitationLogin(w http.ResponseWriter, r *http.Request, rq *request, inv *store.Typed[model.InvitationSpec]) {
	if st := inv.Spec.State(p.now()); st != model.InvitationOpen {
		writeTransitionError(w, &directory.InvitationTransitionError{Action: directory.InvitationAccept, From: st})
		return
	}
	ctx := r.Context()
	nonce, err1 := grants.NewSecret()
	verifier, err2 := grants.NewSecret()
	state, err3 := grants.NewSecret()
	id, err4 := grants.NewID()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		p.serverError(w, "start the sign-in", err)
		return
	}
	now := p.now().UTC()
	expires := now.Add(grants.LoginWindow)
	slot, ok, err := p.records.AcquireAuthRequestSlot(ctx, rq.tenantID, rq.serverID, p.maxPending, expires)
	if err != nil {
		p.serverError(w, "start the sign-in", err)
		return
	}
	if !ok {
		w.Header().Set("Retry-After", "60")
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "request: too many sign-ins are in progress at this server; try again in a few minutes")
		return
	}
	// The verifier is dropped: nobody can exchange the code, which the
	// done page takes.
	sum := sha256.Sum256([]byte(verifier))
	hint := inv.Spec.InvitedEmailAddress
	if len(hint) > maxLoginHintBytes {
		hint = ""
	}
	client := p.invitationClient(rq)
	a := &grants.AuthRequest{
		ID: id, ServerID: rq.serverID, ClientID: invitationClientID, RedirectURI: client.Spec.RedirectURIs[0],
		ResponseType: string(oidc.ResponseTypeCode), Scopes: []string{oidc.ScopeOpenID}, State: state,
		CodeChallenge: base64.RawURLEncoding.EncodeToString(sum[:]), CodeChallengeMethod: string(oidc.CodeChallengeMethodS256),
		Prompt: []string{oidc.PromptLogin}, LoginHint: hint, CreatedAt: now, ExpiresAt: expires,
		BrowserHash: grants.Hash(nonce), Slot: slot, InvitationKeyHash: inv.Spec.KeyHash,
	}
	if err := p.records.PutAuthRequest(ctx, rq.tenantID, a); err != nil {
		_ = p.records.ReleaseAuthRequestSlot(ctx, rq.tenantID, slot)
		p.serverError(w, "start the sign-in", err)
		return
	}
	maxAge := grants.LoginWindow + rq.spec().AuthorizationCodeTTL.D()
	http.SetCookie(w, p.bindingCookie(rq, id, nonce, int(maxAge/time.Second)))
	http.Redirect(w, r, rq.issuer+pathLogin+"?auth_request="+id, http.StatusSeeOther)
}

// invitee is the identity a login resolved, for acceptInvitation: a user
// of the tenant it signed in (UserID), and/or an upstream identity
// (IdentityProviderID, ExternalSubject) with its claims.
type invitee struct {
	UserID             string
	IdentityProviderID string
	ExternalSubject    string
	Email              string
	EmailVerified      bool
	GivenName          string
	FamilyName         string
	PreferredUsername  string
	Locale             string
}

// federatedInvitee is the invitee of a federated login.
func federatedInvitee(idp *identityProvider, ext *externalIdentity) invitee {
	return invitee{IdentityProviderID: idp.id(), ExternalSubject: ext.Subject, Email: ext.Email, EmailVerified: ext.EmailVerified,
		GivenName: ext.GivenName, FamilyName: ext.FamilyName, PreferredUsername: ext.PreferredUsername, Locale: ext.Locale}
}

// errInvitationDenied rolls back an acceptance that ends in a denial.
var errInvitationDenied = errors.New("invitation denied")

// acceptInvitation accepts, for the identity a login resolved, the
// invitation of tenant tid whose key hashes to keyHash, in one
// transaction (audited as "invitation:<id>"), and returns the user the
// login signs in as:
//
//   - the invitation must be Open (else a denial naming its state);
//   - a user the login signed in (who.UserID), or the one the upstream
//     identity is mapped to, is that user: it must be the invitation's
//     target when there is one;
//   - an unmapped upstream identity is mapped to the target (which must
//     not have another identity at that provider), or, without a target,
//     to a new user of the invited email (its email verified only when
//     the upstream verified that same address) — unless a user of that
//     email exists (then the invitation must name it);
//   - a pending user becomes active; a suspended one is denied.
//
// denial is the access_denied description ("" on success); nothing is
// written then. err is a store failure.
func (p *Provider) acceptInvitation(ctx context.Context, tid, keyHash string, who invitee) (user *store.Typed[model.UserSpec], denial string, err error) {
	deny := func(why string) error { denial = why; return errInvitationDenied }
	_, err = p.store.Update(ctx, func(ctx context.Context, tx store.Tx) error {
		user, denial = nil, ""
		inv, err := directory.Invitations.GetByName(ctx, tx, tid, keyHash)
		if errors.Is(err, store.ErrNotFound) {
			return deny("the invitation no longer exists")
		}
		if err != nil {
			return err
		}
		actor := invitationActor(inv.Meta.ID)
		event := func(action, kind, id string) error {
			return tx.AppendEvent(ctx, &store.Event{TenantID: tid, Actor: actor, Action: action, Kind: kind, ObjectID: id})
		}
		if err := directory.RespondInvitation(&inv.Spec, directory.InvitationAccept, p.now()); err != nil {
			var te *directory.InvitationTransitionError
			if errors.As(err, &te) {
				return deny(te.Error())
			}
			return err
		}
		target := inv.Spec.TargetUserIdentityID
		uid := who.UserID
		if uid == "" && who.IdentityProviderID != "" {
			m, err := directory.IdentityMappings.GetByName(ctx, tx, tid, model.IdentityMappingName(who.IdentityProviderID, who.ExternalSubject))
			switch {
			case err == nil:
				uid = m.Spec.UserID
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
		}
		created := false
		switch {
		case uid != "":
			if target != "" && uid != target {
				return deny("you signed in as another user than the one this invitation is for")
			}
			if user, err = directory.Users.Get(ctx, tx, tid, uid); errors.Is(err, store.ErrNotFound) {
				return deny("the identity is mapped to a user that no longer exists")
			} else if err != nil {
				return err
			}
		case who.IdentityProviderID == "":
			return deny("the sign-in did not name a user of this tenant")
		case target != "":
			if user, err = directory.Users.Get(ctx, tx, tid, target); errors.Is(err, store.ErrNotFound) {
				return deny("the user this invitation is for no longer exists")
			} else if err != nil {
				return err
			}
			mine, err := directory.IdentityMappings.ListAll(ctx, tx, store.Query{TenantID: tid, ParentID: user.Meta.ID})
			if err != nil {
				return err
			}
			for _, m := range mine {
				if m.Spec.IdentityProviderID == who.IdentityProviderID {
					return deny("the invited user already has another identity at this identity provider")
				}
			}
		default:
			email := model.NormalizeEmail(inv.Spec.InvitedEmailAddress)
			if _, err := directory.UserByEmail(ctx, tx, tid, email); err == nil {
				return deny("a user of this tenant already has the invited email; an invitation naming that user (target_user_identity_id) can be accepted")
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			user = &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: tid, ID: uuid.NewString(), CreatedBy: actor},
				Spec: model.UserSpec{Email: email, EmailVerified: who.EmailVerified && model.NormalizeEmail(who.Email) == email,
					GivenName: printableUnicode(who.GivenName, 256), FamilyName: printableUnicode(who.FamilyName, 256),
					PreferredUsername: printableUnicode(who.PreferredUsername, 256), Locale: printableUnicode(who.Locale, 35),
					State: model.UserActive}}
			if err := directory.CreateUser(ctx, tx, user); err != nil {
				if errors.Is(err, directory.ErrEmailTaken) || errors.Is(err, directory.ErrSubjectTaken) {
					return deny("another user of this tenant has the invited email")
				}
				return err
			}
			created = true
			if err := event("create", model.KindUser, user.Meta.ID); err != nil {
				return err
			}
		}
		if who.IdentityProviderID != "" && uid == "" {
			m, err := directory.AddMapping(ctx, tx, tid, user.Meta.ID, who.IdentityProviderID, who.ExternalSubject)
			if errors.Is(err, directory.ErrMappingTaken) {
				return deny("the identity was mapped to another user meanwhile; sign in again")
			}
			if err != nil {
				return err
			}
			if err := event("create", model.KindIdentityMapping, m.Meta.ID); err != nil {
				return err
			}
		}
		switch user.Spec.State {
		case model.UserSuspended:
			return deny("the user is suspended in this tenant")
		case model.UserPending:
			if !created {
				user.Spec.State = model.UserActive
				user.Meta.UpdatedBy = actor
				if err := directory.Users.Update(ctx, tx, user, 0); err != nil {
					return err
				}
				if err := event("update", model.KindUser, user.Meta.ID); err != nil {
					return err
				}
			}
		}
		inv.Meta.UpdatedBy = actor
		if err := directory.Invitations.Update(ctx, tx, inv, 0); err != nil {
			return err
		}
		return event("update", model.KindInvitation, inv.Meta.ID)
	})
	switch {
	case errors.Is(err, errInvitationDenied):
		return nil, denial, nil
	case err != nil:
		return nil, "", fmt.Errorf("accept an invitation: %w", err)
	}
	return user, "", nil
}

// invitationDonePage is where an invitation's sign-in ends: with the
// login's error (access_denied: nothing was accepted), or with a code,
// which it takes. A login that signed a tenant user in without accepting
// (a password login) accepts here as that user.
func (p *Provider) invitationDonePage(w http.ResponseWriter, r *http.Request, rq *request) {
	ctx := r.Context()
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		p.writeInvitationPage(w, http.StatusForbidden, "The invitation was not accepted",
			printableText(q.Get("error_description"), 512)+" ("+printableText(e, 64)+")")
		return
	}
	c, ok, err := p.records.TakeCode(ctx, rq.tenantID, q.Get("code"))
	if err != nil {
		p.serverError(w, "finish the invitation's sign-in", err)
		return
	}
	if !ok || c.ServerID != rq.serverID || c.ClientID != invitationClientID {
		writeErrorPage(w, http.StatusBadRequest, "code: unknown, expired or already used; open the invitation again.")
		return
	}
	a, err := p.records.AuthRequest(ctx, rq.tenantID, c.AuthRequestID)
	if errors.Is(err, store.ErrNotFound) {
		writeErrorPage(w, http.StatusBadRequest, "The sign-in expired; open the invitation again.")
		return
	}
	if err != nil {
		p.serverError(w, "finish the invitation's sign-in", err)
		return
	}
	_ = p.records.DeleteAuthRequest(ctx, rq.tenantID, a.ID)
	if a.InvitationKeyHash == "" || a.ClientID != invitationClientID || !a.Done || a.State != q.Get("state") {
		writeErrorPage(w, http.StatusBadRequest, "This sign-in was not started by an invitation.")
		return
	}
	inv, err := directory.Invitations.GetByName(ctx, p.store, rq.tenantID, a.InvitationKeyHash)
	if errors.Is(err, store.ErrNotFound) {
		p.writeInvitationPage(w, http.StatusNotFound, "The invitation was not accepted", "It no longer exists.")
		return
	}
	if err != nil {
		p.serverError(w, "read the invitation", err)
		return
	}
	if inv.Spec.State(p.now()) == model.InvitationOpen {
		if isStaticSubject(a.Subject) || !model.ValidObjectID(a.Subject) {
			p.writeInvitationPage(w, http.StatusForbidden, "The invitation was not accepted", "Sign in as a user of this tenant to accept it.")
			return
		}
		_, denial, err := p.acceptInvitation(ctx, rq.tenantID, a.InvitationKeyHash, invitee{UserID: a.Subject})
		if err != nil {
			p.serverError(w, "accept the invitation", err)
			return
		}
		if denial != "" {
			p.writeInvitationPage(w, http.StatusForbidden, "The invitation was not accepted", denial+".")
			return
		}
	} else if st := inv.Spec.State(p.now()); st != model.InvitationAccepted {
		p.writeInvitationPage(w, http.StatusConflict, "The invitation was not accepted", "It is "+string(st)+".")
		return
	}
	p.writeInvitationPage(w, http.StatusOK, "Invitation accepted", "You are now a member of "+rq.cfg.tenant.Spec.Name+".")
}

var invitationPage = template.Must(template.New("invitation").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem">
<h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// writeInvitationPage shows the done page's outcome.
func (p *Provider) writeInvitationPage(w http.ResponseWriter, status int, title, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = invitationPage.Execute(w, struct{ Title, Message string }{title, message})
}
