package admin

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// credentialRequest creates a tenant-bound admin token.
type credentialRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
}

// credentialResponse never carries the secret, except once in Token when the
// credential is created.
type credentialResponse struct {
	ID          string            `json:"id"`
	TenantID    string            `json:"tenant_id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	Token       string            `json:"token,omitempty"`
	Metadata    *Metadata         `json:"metadata"`
}

func renderCredential(t *store.Typed[model.AdminCredentialSpec]) credentialResponse {
	labels := t.Meta.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return credentialResponse{ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description,
		Labels: labels, Metadata: metadataOf(&t.Meta)}
}

// liveTenant loads the tenant of a /api/system/tenants/{tid}/… route.
func (s *Server) liveTenant(c *gin.Context) (string, bool) {
	tid, apiErr := tenantIDParam(c)
	if apiErr != nil {
		abort(c, apiErr)
		return "", false
	}
	if _, err := tenantRepo.Get(c.Request.Context(), s.store, "", tid); err != nil {
		fail(c, err, "tenant", tid)
		return "", false
	}
	return tid, true
}

func (s *Server) listCredentials(c *gin.Context) {
	tid, ok := s.liveTenant(c)
	if !ok {
		return
	}
	listObjects(s, c, credentialRepo, "credential", "credentials", store.Query{TenantID: tid}, renderCredential)
}

// createCredential mints a token bound to one tenant: it can use
// /api/admin/{tid}/… of that tenant only. The token is returned once; only
// its hash is stored.
func (s *Server) createCredential(c *gin.Context) {
	tid, ok := s.liveTenant(c)
	if !ok {
		return
	}
	if tid == model.SystemTenantID {
		// A credential bound to it would manage the system server, whose
		// tokens act system-wide: that is no tenant-bound credential.
		abort(c, fieldError("tid", "tenant %q takes no tenant-bound credentials (they would be system-wide); use a system-wide token", tid))
		return
	}
	var req credentialRequest
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := validateText("name", req.Name, false, 256); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := validateText("description", req.Description, false, 4096); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := validateLabels(req.Labels); apiErr != nil {
		abort(c, apiErr)
		return
	}
	secret, err := newSecret()
	if err != nil {
		abort(c, internalError(err))
		return
	}
	id := strings.ReplaceAll(uuid.NewString(), "-", "")
	cred := &store.Typed[model.AdminCredentialSpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: req.Name, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: model.AdminCredentialSpec{SecretHash: hashSecret(secret)},
	}
	_, err = s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		if _, err := tenantRepo.Get(ctx, tx, "", tid); err != nil {
			return err
		}
		if err := credentialRepo.Create(ctx, tx, cred); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "create", model.KindAdminCredential, id)
	})
	if err != nil {
		fail(c, err, "credential", req.Name)
		return
	}
	out := renderCredential(cred)
	out.Token = credentialPrefix + tid + "." + id + "." + secret
	c.Header("Cache-Control", "no-store")
	respondObject(c, http.StatusCreated, cred.Meta.Revision, out)
}

func (s *Server) deleteCredential(c *gin.Context) {
	tid, ok := s.liveTenant(c)
	if !ok {
		return
	}
	id := c.Param("cid")
	if !model.ValidObjectID(id) {
		abort(c, fieldError("cid", "invalid credential id (%s)", model.ObjectIDRule))
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		if _, err := credentialRepo.Delete(ctx, tx, tid, id, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "delete", model.KindAdminCredential, id)
	})
	if err != nil {
		fail(c, err, "credential", id)
		return
	}
	c.Status(http.StatusNoContent)
}
