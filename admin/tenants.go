package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/oauth/keys"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

var tenantRepo = store.Repo[model.TenantSpec]{Kind: model.KindTenant, SoftDelete: true}

// tenantRequest is the body of POST /api/system/tenants and of the tenant
// PUTs. url, created and metadata are read-only: accepted unchanged (a PUT
// that changes url or created is a 400 naming it) so a GET response can
// be sent back as it is.
type tenantRequest struct {
	ID                            string                     `json:"id"`
	Name                          string                     `json:"name"`
	Description                   string                     `json:"description"`
	Status                        model.TenantStatus         `json:"status"`
	Labels                        map[string]string          `json:"labels"`
	AuthenticationContextSettings *model.AuthContextSettings `json:"authentication_context_settings"`
	URL                           string                     `json:"url"`
	Created                       *time.Time                 `json:"created"`
	Metadata                      json.RawMessage            `json:"metadata"`
}

// tenantResponse is how a tenant is rendered.
type tenantResponse struct {
	ID                            string                     `json:"id"`
	Name                          string                     `json:"name"`
	Description                   string                     `json:"description"`
	Status                        model.TenantStatus         `json:"status"`
	URL                           string                     `json:"url"`
	Labels                        map[string]string          `json:"labels"`
	AuthenticationContextSettings *model.AuthContextSettings `json:"authentication_context_settings,omitempty"`
	Created                       time.Time                  `json:"created"`
	Metadata                      *Metadata                  `json:"metadata"`
}

// tenantURL is the URL a tenant advertises: its own admin route
// (GET /api/admin/{tid}/tenant), which answers the tenant's credentials
// and system-wide tokens.
func tenantURL(public, tid string) string {
	return strings.TrimSuffix(public, "/") + "/api/admin/" + tid + "/tenant"
}

func (s *Server) renderTenant(t *store.Typed[model.TenantSpec]) tenantResponse {
	labels := t.Meta.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return tenantResponse{
		ID: t.Meta.ID, Name: t.Spec.Name, Description: t.Meta.Description, Status: t.Spec.Status,
		URL: tenantURL(s.public, t.Meta.ID), Labels: labels,
		AuthenticationContextSettings: t.Spec.AuthenticationContextSettings,
		Created:                       t.Meta.CreatedAt, Metadata: metadataOf(&t.Meta),
	}
}

// addTenantKinds registers tenants (system-level, soft-deleted: a deleted
// tenant frees its id and takes everything under it along) and the
// tenant-bound objects without routes of their own: admin credentials and
// the bundle signing key.
func addTenantKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindTenant, Singular: "tenant", System: true, SoftDelete: true, Bundled: true,
		API: &kindAPI{param: "tid", readOnly: []string{"url", "created"}, routes: (*Server).tenantRoutes,
			current: func(s *Server, c *gin.Context, _, id string) (any, int64, error) {
				t, err := tenantRepo.Get(c.Request.Context(), s.store, "", id)
				if err != nil {
					return nil, 0, err
				}
				return s.renderTenant(t), t.Meta.Revision, nil
			}},
	})
	sch.MustRegister(&resource.Kind{Name: model.KindAdminCredential, Singular: "admin credential", Internal: true})
	sch.MustRegister(&resource.Kind{Name: model.KindSigningKey, Singular: "signing key", Internal: true})
	// Authorization servers' signing key sets (oauth/keys), sealed; their
	// public keys are the servers' inline JWKS in bundles.
	sch.MustRegister(&resource.Kind{Name: keys.Kind, Singular: "server key set", Internal: true, Bundled: true})
	// Token revocations (written by the OAuth endpoints and by deletes),
	// enforced by every gateway: data.gatehouse.config.revocations.
	sch.MustRegister(&resource.Kind{Name: model.KindTokenRevocation, Singular: "token revocation", Internal: true, Bundled: true})
}

func (s *Server) tenantRoutes(sys, adm *gin.RouterGroup) {
	sys.GET("/tenants", s.listTenants)
	sys.POST("/tenants", s.createTenant)
	sys.GET("/tenants/:tid", s.getTenant)
	// PUT and PATCH of a tenant, system-wide or through its own route,
	// go through the kind's read-only and merge-patch handling.
	api := apiOf(s.scheme.MustKind(model.KindTenant))
	k := s.scheme.MustKind(model.KindTenant)
	systemTenant := func(c *gin.Context) (string, string, *Error) {
		id, apiErr := tenantIDParam(c)
		return "", id, apiErr
	}
	ownTenant := func(c *gin.Context) (string, string, *Error) { return "", tenantID(c), nil }
	sys.PUT("/tenants/:tid", s.replaceObject(api, systemTenant, (*Server).updateTenant))
	sys.PATCH("/tenants/:tid", s.patchObject(k, api, systemTenant, (*Server).updateTenant))
	sys.DELETE("/tenants/:tid", s.deleteTenant)
	sys.GET("/tenants/:tid/credentials", s.listCredentials)
	sys.POST("/tenants/:tid/credentials", s.createCredential)
	sys.DELETE("/tenants/:tid/credentials/:cid", s.deleteCredential)
	adm.GET("/tenant", s.getAdminTenant)
	adm.PUT("/tenant", s.replaceObject(api, ownTenant, (*Server).updateAdminTenant))
	adm.PATCH("/tenant", s.patchObject(k, api, ownTenant, (*Server).updateAdminTenant))
}

func (r *tenantRequest) validate() *Error {
	if err := validateText("name", r.Name, true, 256); err != nil {
		return err
	}
	if err := validateText("description", r.Description, false, 4096); err != nil {
		return err
	}
	if err := validateLabels(r.Labels); err != nil {
		return err
	}
	if r.Status != "" && !r.Status.Valid() {
		return fieldError("status", "unknown status %q (one of CREATING, AVAILABLE, UPDATING, DISABLED, DELETED)", r.Status)
	}
	if a := r.AuthenticationContextSettings; a != nil {
		seen := map[string]bool{}
		for i, attr := range a.Attributes {
			field := fmt.Sprintf("authentication_context_settings.attributes[%d].name", i)
			if err := validateText(field, attr.Name, true, 256); err != nil {
				return err
			}
			if seen[attr.Name] {
				return fieldError(field, "duplicate attribute %q", attr.Name)
			}
			seen[attr.Name] = true
		}
	}
	return nil
}

func tenantIDParam(c *gin.Context) (string, *Error) {
	tid := c.Param("tid")
	if !model.ValidTenantID(tid) {
		return "", fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule)
	}
	return tid, nil
}

func (s *Server) listTenants(c *gin.Context) {
	withDeleted, apiErr := boolQuery(c, "include_deleted")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	listObjects(s, c, tenantRepo, "tenant", "tenants", store.Query{IncludeDeleted: withDeleted}, s.renderTenant)
}

func (s *Server) createTenant(c *gin.Context) {
	var req tenantRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID == "" {
		req.ID = uuid.NewString()
	} else if !model.ValidTenantID(req.ID) {
		abort(c, fieldError("id", "invalid tenant id %q (%s)", req.ID, model.TenantIDRule))
		return
	} else if model.ReservedTenantID(req.ID) {
		abort(c, fieldError("id", "tenant id %q is reserved (reserved: %s): the process serves those paths itself", req.ID,
			strings.Join(model.ReservedTenantIDs(), ", ")))
		return
	}
	if apiErr := req.validate(); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.Status == "" {
		req.Status = model.TenantAvailable
	}
	if !model.ClientSettableStatus(req.Status) {
		abort(c, fieldError("status", "a new tenant can be AVAILABLE or DISABLED, not %s", req.Status))
		return
	}
	t := &store.Typed[model.TenantSpec]{
		Meta: store.Object{ID: req.ID, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: model.TenantSpec{Name: req.Name, Status: req.Status, AuthenticationContextSettings: req.AuthenticationContextSettings},
	}
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		if err := tenantRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		// Its system servers come with it (the tenant's event records
		// them: they are part of its creation).
		if err := createSystemServers(ctx, tx, t.Meta.ID, actor(c), tenantSystemServers...); err != nil {
			return err
		}
		return record(ctx, tx, c, t.Meta.ID, "create", model.KindTenant, t.Meta.ID)
	})
	if err != nil {
		fail(c, err, "tenant", req.ID)
		return
	}
	c.Header("Location", "/api/system/tenants/"+t.Meta.ID)
	respondObject(c, http.StatusCreated, t.Meta.Revision, s.renderTenant(t))
}

func (s *Server) getTenant(c *gin.Context) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, err := tenantRepo.Get(c.Request.Context(), s.store, "", tid)
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, s.renderTenant(t))
}

func (s *Server) updateTenant(c *gin.Context) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	s.putTenant(c, tid, false)
}

func (s *Server) getAdminTenant(c *gin.Context) {
	t := currentTenant(c)
	respondObject(c, http.StatusOK, t.Meta.Revision, s.renderTenant(t))
}

func (s *Server) updateAdminTenant(c *gin.Context) {
	s.putTenant(c, currentTenant(c).Meta.ID, true)
}

// putTenant replaces a tenant's mutable fields. Through the tenant's own
// admin route, a DISABLED tenant may only be re-enabled.
func (s *Server) putTenant(c *gin.Context, tid string, adminRoute bool) {
	var req tenantRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID != "" && req.ID != tid {
		abort(c, fieldError("id", "does not match the tenant in the path (%q); tenant ids cannot be changed", tid))
		return
	}
	if apiErr := req.validate(); apiErr != nil {
		abort(c, apiErr)
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[model.TenantSpec]
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = tenantRepo.Get(ctx, tx, "", tid); err != nil {
			return err
		}
		if expect != 0 && t.Meta.Revision != expect {
			return store.ErrConflict
		}
		from, to := t.Spec.Status, req.Status
		if to == "" {
			to = from
		}
		if adminRoute && from == model.TenantDisabled && to != model.TenantAvailable {
			return newError(http.StatusForbidden, httpapi.CodeTenantDisabled,
				fmt.Sprintf("tenant %q is disabled; the only change allowed is setting status to AVAILABLE", tid), map[string]any{"tenant_id": tid})
		}
		if from != to && (!model.ClientSettableStatus(to) || !model.CanTransition(from, to)) {
			return newError(http.StatusConflict, httpapi.CodeInvalidTransition, (&model.TransitionError{From: from, To: to}).Error(),
				map[string]any{"field": "status", "from": string(from), "to": string(to)})
		}
		t.Meta.Description, t.Meta.Labels, t.Meta.UpdatedBy = req.Description, req.Labels, actor(c)
		t.Spec.Name, t.Spec.Status, t.Spec.AuthenticationContextSettings = req.Name, to, req.AuthenticationContextSettings
		if err := tenantRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindTenant, tid)
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, s.renderTenant(t))
}

// EnsureSystemTenant creates, when they do not exist, the reserved tenant
// system (AVAILABLE; its id is refused to tenant creation) and its
// authorization server system, whose tokens act system-wide. It is
// idempotent and safe for concurrent callers (replicas starting at once);
// gatehouse serve calls it at start.
func EnsureSystemTenant(ctx context.Context, st store.Store) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		_, err = st.Update(ctx, func(ctx context.Context, tx store.Tx) error {
			return ensureSystemTenant(ctx, tx)
		})
		if !errors.Is(err, store.ErrAlreadyExists) {
			break // a concurrent caller's create is retried: then it exists
		}
	}
	if err != nil {
		return fmt.Errorf("ensure the system tenant: %w", err)
	}
	return nil
}

func ensureSystemTenant(ctx context.Context, tx store.Tx) error {
	const tid, by = model.SystemTenantID, "system"
	event := func(kind, id string) error {
		return tx.AppendEvent(ctx, &store.Event{TenantID: tid, Actor: by, Action: "create", Kind: kind, ObjectID: id})
	}
	switch _, err := tenantRepo.Get(ctx, tx, "", tid); {
	case errors.Is(err, store.ErrNotFound):
		t := &store.Typed[model.TenantSpec]{
			Meta: store.Object{ID: tid, Description: "The system tenant: its server system issues the system-wide tokens.", CreatedBy: by},
			Spec: model.TenantSpec{Name: "System", Status: model.TenantAvailable},
		}
		if err := tenantRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := event(model.KindTenant, tid); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	switch _, err := serverRepo.Get(ctx, tx, tid, model.SystemServerID); {
	case errors.Is(err, store.ErrNotFound):
		if err := createSystemServers(ctx, tx, tid, by, model.SystemServerID); err != nil {
			return err
		}
		return event(model.KindServer, model.SystemServerID)
	case err != nil:
		return err
	}
	return nil
}

// deleteTenant marks the tenant DELETED (soft delete, freeing its id) and
// removes everything under it, in one transaction.
func (s *Server) deleteTenant(c *gin.Context) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if tid == model.SystemTenantID {
		abort(c, fieldError("tid", "tenant %q is the system tenant (its server %q issues the system-wide tokens) and cannot be deleted",
			tid, model.SystemServerID))
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		t, err := tenantRepo.Get(ctx, tx, "", tid)
		if err != nil {
			return err
		}
		if expect != 0 && t.Meta.Revision != expect {
			return store.ErrConflict
		}
		if _, err := tx.DeleteTenant(ctx, tid); err != nil {
			return fmt.Errorf("delete objects of tenant %s: %w", tid, err)
		}
		t.Spec.Status = model.TenantDeleted
		t.Meta.UpdatedBy = actor(c)
		if err := tenantRepo.Update(ctx, tx, t, 0); err != nil {
			return err
		}
		if _, err := tenantRepo.Delete(ctx, tx, "", tid, 0); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "delete", model.KindTenant, tid)
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	c.Status(http.StatusNoContent)
}
