package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Identities (WAVE2 §1.4 rows 24–25, §1.2 row 15, §1.3):
//
//   - GET /api/admin/{tid}/identities/{id}: a user or a service account of
//     the tenant by id, polymorphic by type.
//   - GET /api/identity/{tid}/self, /api/identity/tenants and
//     /api/identity/{tid}/projects: the caller's own identity, for a
//     bearer access token (JWT) that a server of tenant T issued to a
//     user of T (gh_sub_type "user", gh_tid T, sub the user id), verified
//     in process as the tenant's gateways verify it (UserTokenVerifier).
//     The user must be live and active. /tenants is the tenants where the
//     caller has a user: a token names one user of one tenant, so it is
//     [T] (a user of another tenant with the same email is another
//     identity, reached with a token of that tenant). A token of tenant A
//     on /api/identity/B/… is 403.
//   - GET /api/system/users?email=: the live users having that email in
//     every tenant (system-wide callers only).

// UserTokenVerifier authenticates the bearer tokens of /api/identity:
// VerifyUserToken returns the tenant and the user id (sub) of an access
// token a server of that tenant issued to a user of it; accepted is false
// for any other token (401); err is the verifier's own failure.
type UserTokenVerifier interface {
	VerifyUserToken(ctx context.Context, raw string) (tenantID, subject string, accepted bool, err error)
}

// identityBody is a user or service account as /identities shows it.
type identityBody struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	State string `json:"state"`
}

func userIdentity(u *store.Typed[model.UserSpec]) identityBody {
	return identityBody{Type: model.PrincipalUser, ID: u.Meta.ID, Name: u.Spec.DisplayName(), Email: u.Spec.Email, State: string(u.Spec.State)}
}

// identityOf finds id among the tenant's users, then its service
// accounts (store.ErrNotFound for neither).
func identityOf(ctx context.Context, rd store.Reader, tid, id string) (identityBody, error) {
	u, err := directory.Users.Get(ctx, rd, tid, id)
	if err == nil {
		return userIdentity(u), nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return identityBody{}, err
	}
	a, err := serviceAccountRepo.Get(ctx, rd, tid, id)
	if err != nil {
		return identityBody{}, err
	}
	return identityBody{Type: model.PrincipalServiceAccount, ID: a.Meta.ID, Name: a.Meta.Name, Email: a.Spec.ContactEmail, State: string(a.Spec.State)}, nil
}

// identityRoutes registers the routes of this file.
func (s *Server) identityRoutes(e *gin.Engine) {
	e.GET("/api/admin/:tid/identities/:id", s.authenticate, s.loadTenant, s.getIdentity)
	e.GET("/api/system/users", s.authenticate, s.requireSystem, s.usersByEmail)
	idn := e.Group("/api/identity", s.authenticateUser)
	idn.GET("/tenants", s.callerTenants)
	idn.GET("/:tid/self", s.callerTenant, s.callerSelf)
	idn.GET("/:tid/projects", s.callerTenant, s.callerProjects)
}

// getIdentity answers GET /api/admin/{tid}/identities/{id}.
func (s *Server) getIdentity(c *gin.Context) {
	id, apiErr := objectIDParam(c, "id")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	out, err := identityOf(c.Request.Context(), s.store, tenantID(c), id)
	if err != nil {
		fail(c, err, "identity", id)
		return
	}
	c.JSON(http.StatusOK, out)
}

// systemUserBody is a user of GET /api/system/users.
type systemUserBody struct {
	TenantID string `json:"tenant_id"`
	identityBody
}

// usersByEmail answers GET /api/system/users?email=: one lookup by email
// (the users' unique name) per tenant.
func (s *Server) usersByEmail(c *gin.Context) {
	email := model.NormalizeEmail(c.Query("email"))
	if email == "" {
		abort(c, newError(http.StatusBadRequest, httpapi.CodeMissingField, "email: required (the email to look for)", map[string]any{"field": "email"}))
		return
	}
	ctx := c.Request.Context()
	out := []systemUserBody{}
	if err := s.store.View(ctx, func(ctx context.Context, rd store.Reader) error {
		tenants, err := tenantRepo.ListAll(ctx, rd, store.Query{})
		if err != nil {
			return err
		}
		for _, t := range tenants {
			if t.Spec.Status == model.TenantDeleted {
				continue
			}
			u, err := directory.UserByEmail(ctx, rd, t.Meta.ID, email)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, systemUserBody{TenantID: t.Meta.ID, identityBody: userIdentity(u)})
		}
		return nil
	}); err != nil {
		fail(c, err, "user", "")
		return
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TenantID < out[j].TenantID })
	c.JSON(http.StatusOK, gin.H{"users": out, "total": len(out)})
}

// The caller of an /api/identity route (set by authenticateUser and
// callerTenant).
const (
	ctxCaller     = "gatehouse.identity.caller"
	ctxCallerUser = "gatehouse.identity.user"
)

// identityCaller is who a user token names.
type identityCaller struct {
	tenantID, userID string
}

// authenticateUser requires a user's access token of one of its tenant's
// servers.
func (s *Server) authenticateUser(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	raw = strings.TrimSpace(raw)
	switch {
	case h == "":
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized, "missing bearer token in the Authorization header", nil))
		return
	case !ok || !strings.EqualFold(scheme, "Bearer") || raw == "":
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized, "the Authorization header must be \"Bearer <token>\"", nil))
		return
	case s.userTokens == nil:
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized, "this control plane verifies no user tokens", nil))
		return
	}
	tid, sub, accepted, err := s.userTokens.VerifyUserToken(c.Request.Context(), raw)
	switch {
	case err != nil:
		abort(c, internalError(fmt.Errorf("verify a user token: %w", err)))
		return
	case !accepted:
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized,
			"invalid bearer token (an access token a server of your tenant issued to you is needed)", nil))
		return
	}
	c.Set(ctxCaller, identityCaller{tenantID: tid, userID: sub})
	httpapi.SetActor(c, "user:"+tid+"/"+sub)
	c.Next()
}

func caller(c *gin.Context) identityCaller { return c.MustGet(ctxCaller).(identityCaller) }

// activeUser is the caller's user: live and active, else a 403.
func activeUser(ctx context.Context, rd store.Reader, who identityCaller) (*store.Typed[model.UserSpec], error) {
	u, err := directory.Users.Get(ctx, rd, who.tenantID, who.userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, forbidden(fmt.Sprintf("the token's subject is not a user of tenant %q", who.tenantID))
	case err != nil:
		return nil, err
	case u.Spec.State != model.UserActive:
		return nil, forbidden(fmt.Sprintf("user %q of tenant %q is %s", who.userID, who.tenantID, u.Spec.State))
	}
	return u, nil
}

// callerTenant guards /api/identity/{tid}/…: the caller's token is of
// tenant tid, which exists, and names an active user of it.
func (s *Server) callerTenant(c *gin.Context) {
	tid := c.Param("tid")
	who := caller(c)
	if !model.ValidTenantID(tid) {
		abort(c, fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule))
		return
	}
	if who.tenantID != tid {
		abort(c, forbidden(fmt.Sprintf("this token is of tenant %q and cannot access tenant %q", who.tenantID, tid)))
		return
	}
	ctx := c.Request.Context()
	if _, err := tenantRepo.Get(ctx, s.store, "", tid); err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	u, err := activeUser(ctx, s.store, who)
	if err != nil {
		fail(c, err, "user", who.userID)
		return
	}
	c.Set(ctxCallerUser, u)
	c.Next()
}

// callerSelf answers GET /api/identity/{tid}/self.
func (s *Server) callerSelf(c *gin.Context) {
	c.JSON(http.StatusOK, userIdentity(c.MustGet(ctxCallerUser).(*store.Typed[model.UserSpec])))
}

// callerTenants answers GET /api/identity/tenants: the token's tenant,
// when the token names an active user of it.
func (s *Server) callerTenants(c *gin.Context) {
	who := caller(c)
	ctx := c.Request.Context()
	out := []gin.H{}
	t, err := tenantRepo.Get(ctx, s.store, "", who.tenantID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		fail(c, err, "tenant", who.tenantID)
		return
	}
	if err == nil && t.Spec.Status != model.TenantDeleted {
		if _, err := activeUser(ctx, s.store, who); err == nil {
			out = append(out, gin.H{"id": t.Meta.ID, "name": t.Spec.Name})
		} else if refused := (*Error)(nil); !errors.As(err, &refused) {
			fail(c, err, "user", who.userID)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"tenants": out, "total": len(out)})
}

// callerProjectBody is a project of GET /api/identity/{tid}/projects.
type callerProjectBody struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Status      string            `json:"status"`
	Membership  projectMembership `json:"membership"`
}

// callerProjects answers GET /api/identity/{tid}/projects: the projects
// the caller is a member of (directly or through a group).
func (s *Server) callerProjects(c *gin.Context) {
	who := caller(c)
	list, err := projectsOf(c.Request.Context(), s.store, who.tenantID, model.PrincipalKey(model.PrincipalUser, who.userID))
	if err != nil {
		fail(c, err, "project", "")
		return
	}
	out := make([]callerProjectBody, 0, len(list))
	for _, p := range list {
		out = append(out, callerProjectBody{ID: p.project.Meta.ID, Name: p.project.Meta.Name, Description: p.project.Meta.Description,
			Status: model.ProjectStatusReady, Membership: projectMembership{Direct: p.direct, GroupIDs: nonNilStrings(p.groups)}})
	}
	c.JSON(http.StatusOK, gin.H{"projects": out, "total": len(out)})
}
