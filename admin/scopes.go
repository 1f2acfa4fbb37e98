package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

var scopeRepo = store.Repo[model.ScopeSpec]{Kind: model.KindScope}

// scopeNamePattern: OAuth scope tokens (RFC 6749 §3.3: printable ASCII
// without space, '"' and '\').
var scopeNamePattern = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,256}$`)

// scopeRequest is the body of scope create and update (seed 003
// ScopeWithServiceID). metadata and tenant_id are read-only.
type scopeRequest struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	DisplayName string            `json:"display_name"`
	Description string            `json:"description"`
	ServiceID   string            `json:"service_id"`
	ServerID    string            `json:"server_id"`
	Labels      map[string]string `json:"labels"`
	TenantID    string            `json:"tenant_id"`
	Metadata    json.RawMessage   `json:"metadata"`
}

type scopeResponse struct {
	ID          string            `json:"id"`
	TenantID    string            `json:"tenant_id"`
	Name        string            `json:"name"`
	DisplayName string            `json:"display_name"`
	Description string            `json:"description"`
	ServiceID   string            `json:"service_id,omitempty"`
	ServerID    string            `json:"server_id,omitempty"`
	WithService bool              `json:"with_service"`
	Labels      map[string]string `json:"labels"`
	Metadata    *Metadata         `json:"metadata"`
}

func renderScope(t *store.Typed[model.ScopeSpec]) scopeResponse {
	return scopeResponse{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, DisplayName: t.Spec.DisplayName,
		Description: t.Meta.Description, ServiceID: t.Spec.ServiceID, ServerID: t.Spec.ServerID,
		WithService: t.Spec.ServiceID != "", Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

func (s *Server) scopeRoutes(_, adm *gin.RouterGroup) {
	adm.GET("/scopes", s.listScopes)
	adm.POST("/scopes", s.createScope)
	adm.GET("/scopes/:scp", s.getScope)
	adm.PUT("/scopes/:scp", s.updateScope)
	adm.DELETE("/scopes/:scp", s.deleteScope)
}

func (r *scopeRequest) validate(tid string) *Error {
	if r.Name == "" {
		return missingField("name")
	}
	if !scopeNamePattern.MatchString(r.Name) {
		return fieldError("name", "must be 1-256 printable ASCII characters without spaces, '\"' or '\\'")
	}
	if err := validateText("display_name", r.DisplayName, false, 256); err != nil {
		return err
	}
	if err := validateText("description", r.Description, false, 4096); err != nil {
		return err
	}
	if r.TenantID != "" && r.TenantID != tid {
		return fieldError("tenant_id", "does not match the tenant in the path")
	}
	if r.ServiceID != "" && !model.ValidObjectID(r.ServiceID) {
		return fieldError("service_id", "invalid id (%s)", model.ObjectIDRule)
	}
	return validateLabels(r.Labels)
}

// checkService fails with a 400 naming field when the service does not exist.
func checkService(ctx context.Context, rd store.Reader, tid, field, id string) error {
	if id == "" {
		return nil
	}
	_, err := rd.Get(ctx, model.KindService, tid, id)
	if errors.Is(err, store.ErrNotFound) {
		return unknownReference(field, "service", id)
	}
	return err
}

func (s *Server) listScopes(c *gin.Context) {
	listKind(s, c, scopeRepo, "scope", "scopes", renderScope)
}

func (s *Server) createScope(c *gin.Context) {
	tid := tenantID(c)
	var req scopeRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	id, apiErr := newObjectID("id", req.ID)
	if apiErr == nil {
		apiErr = req.validate(tid)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t := &store.Typed[model.ScopeSpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: req.Name, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: model.ScopeSpec{DisplayName: req.DisplayName, ServiceID: req.ServiceID, ServerID: req.ServerID},
	}
	ok := s.write(c, "scope", id, func(ctx context.Context, tx store.Tx) error {
		if err := checkService(ctx, tx, tid, "service_id", req.ServiceID); err != nil {
			return err
		}
		if err := scopeRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "create", model.KindScope, id)
	})
	if ok {
		respondObject(c, http.StatusCreated, t.Meta.Revision, renderScope(t))
	}
}

func (s *Server) getScope(c *gin.Context) {
	getKind(s, c, scopeRepo, "scp", "scope", renderScope)
}

func (s *Server) updateScope(c *gin.Context) {
	tid := tenantID(c)
	updateKind(s, c, scopeRepo, "scp", "scope", renderScope, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.ScopeSpec]) error, *Error) {
		var req scopeRequest
		if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
			return nil, apiErr
		}
		if apiErr := req.validate(tid); apiErr != nil {
			return nil, apiErr
		}
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.ScopeSpec]) error {
			if err := checkService(ctx, tx, tid, "service_id", req.ServiceID); err != nil {
				return err
			}
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = req.Name, req.Description, req.Labels
			t.Spec = model.ScopeSpec{DisplayName: req.DisplayName, ServiceID: req.ServiceID, ServerID: req.ServerID}
			return nil
		}, nil
	})
}

func (s *Server) deleteScope(c *gin.Context) {
	deleteKind(s, c, scopeRepo, "scp", "scope", nil)
}
