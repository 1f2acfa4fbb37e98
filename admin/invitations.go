package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Invitations (issue 14 item 7, WAVE2 §1.4 rows 40-48, seed 002 §A.2.7):
// /api/admin/{tid}/invitations[/{invitation}], PUT …/accept, …/decline
// (an admin's straight answer: no user is mapped or activated) and
// …/revoke. The invitee's side — the summary, decline and accept by key
// — is the tenant's default server's ({issuer}/login/invitations/{key},
// oauth/invitations.go). The key is 36 letters and digits, stored as its
// SHA-256 only (the envelope name) and shown once: appended to
// invitation_url in the create answer (?key= or &key=); GET and lists
// show invitation_url without it. Delivering the URL is the caller's
// business (Gatehouse sends no mail). Invitations are not part of the
// configuration document; DELETE removes one (its key stops working).

// maxInvitationURL caps invitation_url.
const maxInvitationURL = 2048

// invitationRequest is the body of POST …/invitations.
type invitationRequest struct {
	// ID is optional (generated when left out).
	ID                   string `json:"id"`
	InvitedEmailAddress  string `json:"invited_email_address"`
	InvitationURL        string `json:"invitation_url"`
	TargetUserIdentityID string `json:"target_user_identity_id"`
	// ToTenantID, when given, must be the path's tenant.
	ToTenantID string `json:"to_tenant_id"`
}

// invitationResponse is an invitation as GET renders it.
type invitationResponse struct {
	ID                   string                `json:"id"`
	TenantID             string                `json:"tenant_id"`
	ToTenantID           string                `json:"to_tenant_id"`
	FromIdentityID       string                `json:"from_identity_id"`
	InvitedEmailAddress  string                `json:"invited_email_address"`
	InvitationURL        string                `json:"invitation_url"`
	TargetUserIdentityID string                `json:"target_user_identity_id"`
	Expiration           time.Time             `json:"expiration"`
	Accepted             *bool                 `json:"accepted"`
	ResponseReceivedAt   *time.Time            `json:"response_received_at"`
	RevokedAt            *time.Time            `json:"revoked_at"`
	State                model.InvitationState `json:"state"`
	Metadata             *Metadata             `json:"metadata"`
}

func renderInvitation(t *store.Typed[model.InvitationSpec]) invitationResponse {
	sp := &t.Spec
	return invitationResponse{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, ToTenantID: t.Meta.TenantID, FromIdentityID: sp.FromIdentityID,
		InvitedEmailAddress: sp.InvitedEmailAddress, InvitationURL: sp.InvitationURL, TargetUserIdentityID: sp.TargetUserIdentityID,
		Expiration: sp.Expiration.UTC(), Accepted: sp.Accepted, ResponseReceivedAt: sp.ResponseReceivedAt, RevokedAt: sp.RevokedAt,
		State: sp.State(time.Now()), Metadata: metadataOf(&t.Meta),
	}
}

// addInvitationKinds registers invitations: tenant-scoped, deleted for
// good, not exported, changed only by their answers (no PUT or PATCH).
func addInvitationKinds(sch *resource.Scheme) {
	k := &resource.Kind{Name: model.KindInvitation, Singular: "invitation"}
	k.API = &kindAPI{
		param: "invitation", current: typedCurrent(directory.Invitations, renderInvitation),
		list: (*Server).listInvitations,
		get: func(s *Server, c *gin.Context) {
			getKind(s, c, directory.Invitations, "invitation", k.Singular, renderInvitation)
		},
		create: (*Server).createInvitation,
		routes: func(s *Server, _, adm *gin.RouterGroup) {
			for _, action := range []string{directory.InvitationAccept, directory.InvitationDecline, directory.InvitationRevoke} {
				adm.PUT("/invitations/:invitation/"+action, s.answerInvitation(action))
			}
		},
	}
	sch.MustRegister(k)
}

// invitationURLErrors checks where the invitee is sent: an absolute https
// URL (http only to a loopback host) without credentials or fragment,
// and without a key parameter of its own.
func invitationURLErrors(raw string) field.ErrorList {
	p := field.NewPath("invitation_url")
	if raw == "" {
		return field.ErrorList{field.Required(p)}
	}
	if len(raw) > maxInvitationURL {
		return field.ErrorList{field.Invalid(p, "must be at most %d characters", maxInvitationURL)}
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Hostname() == "" || u.User != nil || u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n") ||
		!(u.Scheme == "https" || u.Scheme == "http" && model.LoopbackRedirectHost(u.Hostname())):
		return field.ErrorList{field.Invalid(p, "must be an absolute https URL (http only to localhost, 127.0.0.1 or ::1) without credentials or fragment")}
	case u.Query().Has("key"):
		return field.ErrorList{field.Invalid(p, "must not have a key parameter: the invitation's key is appended to it")}
	}
	return nil
}

// withInvitationKey is url with the key appended as its key parameter.
func withInvitationKey(raw, key string) string {
	sep := "?"
	if strings.Contains(raw, "?") {
		sep = "&"
		if strings.HasSuffix(raw, "?") || strings.HasSuffix(raw, "&") {
			sep = ""
		}
	}
	return raw + sep + "key=" + key
}

// callerIdentity is the directory identity of the caller in tenant tid:
// the user or service account an access token of the tenant's servers
// names ("" for the bootstrap token, an admin credential or a system-wide
// token).
func callerIdentity(ctx context.Context, rd store.Reader, c *gin.Context, tid string) (string, error) {
	rest, ok := strings.CutPrefix(actor(c), "token:"+tid+"/")
	if !ok {
		return "", nil
	}
	_, sub, ok := strings.Cut(rest, ":")
	if !ok || !model.ValidObjectID(sub) {
		return "", nil
	}
	for _, kind := range []string{model.KindUser, model.KindServiceAccount} {
		_, err := rd.Get(ctx, kind, tid, sub)
		if err == nil {
			return sub, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	return "", nil
}

func (s *Server) createInvitation(c *gin.Context) {
	tid := tenantID(c)
	var req invitationRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	var errs field.ErrorList
	id, idErr := newObjectID("id", req.ID)
	if idErr != nil {
		errs.Extend(idErr.Fields())
	}
	errs.Extend(emailErrors(field.NewPath("invited_email_address"), req.InvitedEmailAddress))
	errs.Extend(invitationURLErrors(req.InvitationURL))
	if req.TargetUserIdentityID != "" && !model.ValidObjectID(req.TargetUserIdentityID) {
		errs.Add(field.Invalid(field.NewPath("target_user_identity_id"), "invalid id %q (%s)", req.TargetUserIdentityID, model.ObjectIDRule))
	}
	if req.ToTenantID != "" && req.ToTenantID != tid {
		errs.Add(field.Invalid(field.NewPath("to_tenant_id"), "does not match the tenant in the path"))
	}
	if len(errs) > 0 {
		abort(c, fieldErrors(errs))
		return
	}
	key, hash, err := directory.NewInvitationKey()
	if err != nil {
		abort(c, internalError(err))
		return
	}
	now := time.Now().UTC()
	t := &store.Typed[model.InvitationSpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: hash, CreatedBy: actor(c)},
		Spec: model.InvitationSpec{InvitedEmailAddress: strings.TrimSpace(req.InvitedEmailAddress), InvitationURL: req.InvitationURL,
			TargetUserIdentityID: req.TargetUserIdentityID, Expiration: now.Add(model.InvitationTTL), KeyHash: hash},
	}
	if !s.write(c, "invitation", t.Meta.ID, func(ctx context.Context, tx store.Tx) error {
		if id := t.Spec.TargetUserIdentityID; id != "" {
			if _, err := directory.Users.Get(ctx, tx, tid, id); errors.Is(err, store.ErrNotFound) {
				return unknownReference("target_user_identity_id", "user", id)
			} else if err != nil {
				return err
			}
		}
		from, err := callerIdentity(ctx, tx, c, tid)
		if err != nil {
			return err
		}
		t.Spec.FromIdentityID = from
		if err := directory.Invitations.Create(ctx, tx, t); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "create", model.KindInvitation, t.Meta.ID)
	}) {
		return
	}
	out := renderInvitation(t)
	out.InvitationURL = withInvitationKey(t.Spec.InvitationURL, key)
	c.Header("Location", "/api/admin/"+tid+"/invitations/"+t.Meta.ID)
	respondObject(c, http.StatusCreated, t.Meta.Revision, out)
}

// answerInvitation answers PUT …/invitations/{invitation}/{action}: the
// state machine of directory.RespondInvitation, an illegal transition a
// 409 invalid_transition that changes nothing.
func (s *Server) answerInvitation(action string) gin.HandlerFunc {
	return func(c *gin.Context) {
		updateKind(s, c, directory.Invitations, "invitation", "invitation", renderInvitation,
			func(c *gin.Context, _ string) (func(context.Context, store.Tx, *store.Typed[model.InvitationSpec]) error, *Error) {
				if c.Request.ContentLength > 0 {
					var empty struct{}
					if apiErr := decodeJSON(c, &empty); apiErr != nil {
						return nil, apiErr
					}
				}
				return func(_ context.Context, _ store.Tx, t *store.Typed[model.InvitationSpec]) error {
					return invitationAnswerError(directory.RespondInvitation(&t.Spec, action, time.Now()))
				}, nil
			})
	}
}

// invitationAnswerError is the API's form of a refused answer.
func invitationAnswerError(err error) error {
	var te *directory.InvitationTransitionError
	if errors.As(err, &te) {
		return newError(http.StatusConflict, httpapi.CodeInvalidTransition, te.Error(),
			map[string]any{"field": "state", "from": string(te.From), "action": te.Action})
	}
	return err
}

// invitationStates are the states a states filter may name.
var invitationStates = []model.InvitationState{model.InvitationOpen, model.InvitationAccepted, model.InvitationDeclined,
	model.InvitationExpired, model.InvitationRevoked}

// listInvitations answers GET …/invitations; the filters are AND-ed:
// invited_email_address (the whole address, case-insensitive),
// target_user_identity_id (alias target_identity_id), from_identity_id,
// states (comma-separated).
func (s *Server) listInvitations(c *gin.Context) {
	email := model.NormalizeEmail(c.Query("invited_email_address"))
	targets := slices.DeleteFunc([]string{c.Query("target_user_identity_id"), c.Query("target_identity_id")}, func(v string) bool { return v == "" })
	from := c.Query("from_identity_id")
	var states []model.InvitationState
	if raw, ok := c.GetQuery("states"); ok {
		for _, v := range strings.Split(raw, ",") {
			v = strings.TrimSpace(v)
			i := slices.IndexFunc(invitationStates, func(s model.InvitationState) bool { return strings.EqualFold(string(s), v) })
			if i < 0 {
				abort(c, fieldError("states", "unknown state %q (Open, Accepted, Declined, Expired, Revoked)", v))
				return
			}
			states = append(states, invitationStates[i])
		}
	}
	now := time.Now()
	pageWhere(s, c, directory.Invitations, "invitation", "invitations", store.Query{TenantID: tenantID(c)}, func(t *store.Typed[model.InvitationSpec]) bool {
		sp := &t.Spec
		for _, id := range targets {
			if sp.TargetUserIdentityID != id {
				return false
			}
		}
		return (email == "" || model.NormalizeEmail(sp.InvitedEmailAddress) == email) && (from == "" || sp.FromIdentityID == from) &&
			(len(states) == 0 || slices.Contains(states, sp.State(now)))
	}, renderInvitation)
}
