package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Context keys set by the middleware.
const (
	ctxPrincipal = "gatehouse.principal"
	ctxTenant    = "gatehouse.tenant"
)

// authenticate requires a valid bearer token.
func (s *Server) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" {
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized, "missing bearer token in the Authorization header", nil))
		return
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized, "the Authorization header must be \"Bearer <token>\"", nil))
		return
	}
	p, err := s.auth.Authenticate(c.Request.Context(), strings.TrimSpace(token))
	if errors.Is(err, errBadCredentials) {
		abort(c, newError(http.StatusUnauthorized, httpapi.CodeUnauthorized, "invalid bearer token", nil))
		return
	}
	if err != nil {
		abort(c, internalError(err))
		return
	}
	c.Set(ctxPrincipal, p)
	httpapi.SetActor(c, p.Subject)
	c.Next()
}

func principal(c *gin.Context) (Principal, bool) {
	v, ok := c.Get(ctxPrincipal)
	if !ok {
		return Principal{}, false
	}
	return v.(Principal), true
}

func actor(c *gin.Context) string {
	p, _ := principal(c)
	return p.Subject
}

// requireSystem admits only system-wide principals (/api/system routes).
func (s *Server) requireSystem(c *gin.Context) {
	if p, _ := principal(c); !p.System() {
		abort(c, forbidden("this route needs a system-wide token; tenant tokens may only use /api/admin/"+p.TenantID+"/…"))
		return
	}
	c.Next()
}

// loadTenant guards every /api/admin/{tid} route: the id must be valid, the
// caller bound to that tenant (or system-wide), the tenant must exist, and a
// DISABLED tenant only allows reading and re-enabling itself.
func (s *Server) loadTenant(c *gin.Context) {
	tid := c.Param("tid")
	if !model.ValidTenantID(tid) {
		abort(c, fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule))
		return
	}
	p, _ := principal(c)
	if !p.CanAccessTenant(tid) {
		abort(c, forbidden(fmt.Sprintf("this token is bound to tenant %q and cannot access tenant %q", p.TenantID, tid)))
		return
	}
	// Whoever manages the system tenant (its server's clients and users)
	// mints system-wide tokens: a system-wide principal only.
	if tid == model.SystemTenantID && !p.System() {
		abort(c, forbidden(fmt.Sprintf("tenant %q is managed by system-wide principals only", tid)))
		return
	}
	t, err := tenantRepo.Get(c.Request.Context(), s.store, "", tid)
	if errors.Is(err, store.ErrNotFound) {
		abort(c, notFound("tenant", tid))
		return
	}
	if err != nil {
		abort(c, internalError(err))
		return
	}
	if t.Spec.Status == model.TenantDisabled && !disabledTenantMayUse(c) {
		abort(c, newError(http.StatusForbidden, httpapi.CodeTenantDisabled,
			fmt.Sprintf("tenant %q is disabled; only reading and re-enabling it are allowed", tid), map[string]any{"tenant_id": tid}))
		return
	}
	c.Set(ctxTenant, t)
	c.Next()
}

// disabledTenantMayUse: reading the tenant, and PUT or PATCH /tenant
// (which refuse anything but re-enabling while disabled).
func disabledTenantMayUse(c *gin.Context) bool {
	return strings.HasSuffix(c.FullPath(), "/:tid/tenant") &&
		(c.Request.Method == http.MethodGet || c.Request.Method == http.MethodPut || c.Request.Method == http.MethodPatch)
}

func currentTenant(c *gin.Context) *store.Typed[model.TenantSpec] {
	return c.MustGet(ctxTenant).(*store.Typed[model.TenantSpec])
}
