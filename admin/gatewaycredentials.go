package admin

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Gateway credentials: the bearer secrets of a gateway's authorizers and
// Envoys (ghg_<tenant>.<id>.<secret>), stored as SHA-256 hashes. Each
// has a name (unique in the tenant; by default what minted it, who and
// when), created_by and last_used_at (when the bundle service or the xDS
// server last verified it, written at most once a minute:
// gatewaycred.LastUsed). The secret is shown once, when minted or
// rotated, and can never be read back.

// credentialSecret is a gateway credential; Token is only shown when the
// credential is minted or its secret rotated.
type credentialSecret struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	GatewayID string    `json:"gateway_id"`
	Token     string    `json:"token,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	// LastUsedAt is null for a credential never verified (since the
	// control plane started recording it).
	LastUsedAt *time.Time `json:"last_used_at"`
}

// gatewayCredentialRequest is the optional body of POST
// …/gateways/{gw}/credentials.
type gatewayCredentialRequest struct {
	Name string `json:"name"`
}

// gatewayCredentialPrefix starts every gateway token:
// ghg_<tenant>.<credential id>.<secret>.
const gatewayCredentialPrefix = "ghg_"

// defaultCredentialName names a credential after what minted it, who and
// when: "package download by alice at 2025-01-02T03:04:05Z".
func defaultCredentialName(c *gin.Context, what string) string {
	return what + " by " + cmp.Or(actor(c), "unknown") + " at " + time.Now().UTC().Format(time.RFC3339)
}

// mintGatewayCredential creates a credential named name for a gateway in
// tx and returns it with its token (the only time the token exists
// outside the caller). A default name (isDefault) that is taken gets the
// credential id's first characters appended.
func mintGatewayCredential(ctx context.Context, tx store.Tx, c *gin.Context, tid, gw, name string, isDefault bool) (*credentialSecret, error) {
	secret, err := newSecret()
	if err != nil {
		return nil, err
	}
	id := strings.ReplaceAll(uuid.NewString(), "-", "")
	t := &store.Typed[model.GatewayCredentialSpec]{
		Meta: store.Object{TenantID: tid, ID: id, ParentID: gw, Name: name, CreatedBy: actor(c)},
		Spec: model.GatewayCredentialSpec{GatewayID: gw, SecretHash: hashSecret(secret)},
	}
	err = gatewayCredRepo.Create(ctx, tx, t)
	var ae *store.AlreadyExistsError
	if isDefault && errors.As(err, &ae) && ae.Field == "name" {
		t.Meta.Name = name + " (" + id[:8] + ")"
		err = gatewayCredRepo.Create(ctx, tx, t)
	}
	if err != nil {
		return nil, err
	}
	if err := record(ctx, tx, c, tid, "create", model.KindGatewayCredential, id); err != nil {
		return nil, err
	}
	out := renderGatewayCredential(t, nil)
	out.Token = gatewayCredentialPrefix + tid + "." + id + "." + secret
	return &out, nil
}

// rotateGatewayCredential gives credential id of gateway gw a new secret
// in tx (the old one stops working: the xDS streams opened with it end)
// and returns it with its token. Its id, name, creator and history stay.
func rotateGatewayCredential(ctx context.Context, tx store.Tx, c *gin.Context, tid, gw, id string) (*credentialSecret, error) {
	t, err := gatewayCredRepo.Get(ctx, tx, tid, id)
	if errors.Is(err, store.ErrNotFound) || err == nil && t.Spec.GatewayID != gw {
		return nil, fieldError("credential", "gateway %q has no credential %q", gw, id)
	}
	if err != nil {
		return nil, err
	}
	secret, err := newSecret()
	if err != nil {
		return nil, err
	}
	t.Spec.SecretHash = hashSecret(secret)
	t.Meta.UpdatedBy = actor(c)
	if err := gatewayCredRepo.Update(ctx, tx, t, 0); err != nil {
		return nil, err
	}
	if err := record(ctx, tx, c, tid, "rotate", model.KindGatewayCredential, id); err != nil {
		return nil, err
	}
	out := renderGatewayCredential(t, nil)
	out.Token = gatewayCredentialPrefix + tid + "." + id + "." + secret
	return &out, nil
}

func renderGatewayCredential(t *store.Typed[model.GatewayCredentialSpec], lastUsed map[string]time.Time) credentialSecret {
	out := credentialSecret{ID: t.Meta.ID, Name: t.Meta.Name, GatewayID: t.Spec.GatewayID, CreatedAt: t.Meta.CreatedAt, CreatedBy: t.Meta.CreatedBy}
	if at, ok := lastUsed[t.Meta.ID]; ok {
		out.LastUsedAt = &at
	}
	return out
}

func (s *Server) listGatewayCredentials(c *gin.Context) {
	t, ok := s.loadGateway(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	items, err := gatewayCredRepo.ListAll(ctx, s.store, store.Query{TenantID: t.Meta.TenantID, ParentID: t.Meta.ID})
	if err != nil {
		abort(c, internalError(err))
		return
	}
	used, err := gatewaycred.LastUsed(ctx, s.store, t.Meta.TenantID)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	out := make([]credentialSecret, 0, len(items))
	for _, cr := range items {
		out = append(out, renderGatewayCredential(cr, used))
	}
	c.JSON(http.StatusOK, gin.H{"credentials": out, "total": len(out), "next": ""})
}

// createGatewayCredential mints a credential; the body ({"name": …}) is
// optional.
func (s *Server) createGatewayCredential(c *gin.Context) {
	tid := tenantID(c)
	t, ok := s.loadGateway(c)
	if !ok {
		return
	}
	var req gatewayCredentialRequest
	if c.Request.ContentLength != 0 {
		if apiErr := decodeJSON(c, &req); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	if apiErr := validateText("name", req.Name, false, 256); apiErr != nil {
		abort(c, apiErr)
		return
	}
	name, isDefault := req.Name, req.Name == ""
	if isDefault {
		name = defaultCredentialName(c, "created")
	}
	var cred *credentialSecret
	if s.write(c, "gateway credential", "", func(ctx context.Context, tx store.Tx) error {
		if _, err := gatewayRepo.Get(ctx, tx, tid, t.Meta.ID); err != nil {
			return err
		}
		var err error
		cred, err = mintGatewayCredential(ctx, tx, c, tid, t.Meta.ID, name, isDefault)
		return err
	}) {
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusCreated, cred)
	}
}

func (s *Server) deleteGatewayCredential(c *gin.Context) {
	tid := tenantID(c)
	t, ok := s.loadGateway(c)
	if !ok {
		return
	}
	id, apiErr := objectIDParam(c, "cid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if s.write(c, "credential", id, func(ctx context.Context, tx store.Tx) error {
		cr, err := gatewayCredRepo.Get(ctx, tx, tid, id)
		if err != nil {
			return err
		}
		if cr.Spec.GatewayID != t.Meta.ID {
			return store.ErrNotFound
		}
		if _, err := gatewayCredRepo.Delete(ctx, tx, tid, id, 0); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "delete", model.KindGatewayCredential, id)
	}) {
		c.Status(http.StatusNoContent)
	}
}
