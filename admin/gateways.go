package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

var (
	gatewayRepo     = store.Repo[model.GatewaySpec]{Kind: model.KindGateway}
	gatewayCredRepo = store.Repo[model.GatewayCredentialSpec]{Kind: model.KindGatewayCredential}
)

// gatewayBody is a gateway on the wire: the body of create and PUT and
// what GET returns. tenant_id, metadata, status and credential are
// read-only.
type gatewayBody struct {
	ID                   string   `json:"id"`
	Name                 string   `json:"name"`
	Description          string   `json:"description"`
	Type                 string   `json:"type"`
	ServiceIDs           []string `json:"service_ids"`
	DryRun               bool     `json:"dry_run"`
	AllowUnmatchedRoutes bool     `json:"allow_unmatched_routes"`
	ExposeTokenErrors    bool     `json:"expose_token_errors"`
	ServerID             string   `json:"server_id,omitempty"`
	// AuthorizationServerID is accepted on write as another name of
	// server_id (the seed's Gateway calls it so); never rendered.
	AuthorizationServerID string                     `json:"authorization_server_id,omitempty"`
	ListenerAddress       string                     `json:"listener_address"`
	ListenerPort          int                        `json:"listener_port"`
	RequestBody           *model.RequestBodySettings `json:"request_body,omitempty"`
	PolicyTimeoutMS       int                        `json:"policy_timeout_ms"`
	// DecisionLogs is which decisions the gateway's authorizers log:
	// on (the default), off, denied or sample:N.
	DecisionLogs string            `json:"decision_logs"`
	Labels       map[string]string `json:"labels"`
	TenantID     string            `json:"tenant_id"`
	Metadata     *Metadata         `json:"metadata,omitempty"`
	// Status (GET's runtime status) and Credential (shown once, by
	// create) are read-only: accepted and ignored on write.
	Status     any `json:"status,omitempty"`
	Credential any `json:"credential,omitempty"`
	// For a gateway with a server (seed 003 GatewayWithClient): ClientID
	// names the client Gatehouse made for it, IssuerURL is its server's
	// issuer and ServerURL the base URL of this control plane; Client,
	// with its secret, is shown once, by create. All read-only: accepted
	// and ignored on write.
	ClientID  string `json:"client_id,omitempty"`
	IssuerURL string `json:"issuer_url,omitempty"`
	ServerURL string `json:"server_url,omitempty"`
	Client    any    `json:"client,omitempty"`
}

// gatewayStatus is what the control plane knows of a gateway at runtime.
type gatewayStatus struct {
	Bundle bundleStatus `json:"bundle"`
	// BuildError is there while the gateway's bundle fails to build (the
	// bundle above, if any, is then the last good one).
	BuildError *buildErrorStatus `json:"build_error,omitempty"`
	OPA        opaStatusView     `json:"opa"`
	// XDS is the xDS control plane's view (connected nodes, ACKs, NACKs),
	// absent when no control plane runs in this process.
	XDS any `json:"xds,omitempty"`
	// InProcess is this process's in-process authorizer's view of the
	// gateway (gatehouse serve), absent when none runs here.
	InProcess any `json:"in_process_authorizer,omitempty"`
}

type bundleStatus struct {
	Revision int64      `json:"revision,omitempty"`
	ETag     string     `json:"etag,omitempty"`
	BuiltAt  *time.Time `json:"built_at,omitempty"`
	Bytes    int        `json:"bytes,omitempty"`
	KeyID    string     `json:"key_id,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// buildErrorStatus is a failing bundle build (bundles.BuildFailure).
type buildErrorStatus struct {
	Error    string    `json:"error"`
	Since    time.Time `json:"since"`
	Failures int       `json:"failures"`
	Retrying bool      `json:"retrying"`
}

// addGatewayKinds registers gateways (listing the services they
// protect, which cannot be deleted while they do, and optionally naming
// the authorization server whose client they authenticate with, which
// cannot be deleted while they do either) and their credentials (revoked
// with the gateway: soft-deleted, so an authorizer presenting one learns
// its gateway is gone). PUT replaces the gateway; status, credential and
// the client fields are read-only and ignored; server_id cannot change.
func addGatewayKinds(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindGateway, Singular: "gateway", Bundled: true, Exported: true,
		Canonical: resource.SpecCodec[model.GatewaySpec],
		Refs: []resource.Ref{
			{Field: "service_ids", Kind: model.KindService, Many: true, OnDelete: resource.Restrict,
				IDs: specIDs(func(s *model.GatewaySpec) []string { return s.ServiceIDs })},
			{Field: "server_id", Kind: model.KindServer, OnDelete: resource.Restrict,
				IDs: specIDs(func(s *model.GatewaySpec) []string { return []string{s.ServerID} })},
		},
		API: &kindAPI{
			param: "gw",
			current: func(s *Server, c *gin.Context, tid, id string) (any, int64, error) {
				t, err := gatewayRepo.Get(c.Request.Context(), s.store, tid, id)
				if err != nil {
					return nil, 0, err
				}
				return s.renderGateway(c, t, false), t.Meta.Revision, nil
			},
			list: (*Server).listGateways, create: (*Server).createGateway, get: (*Server).getGateway, put: (*Server).updateGateway,
			afterDelete: func(s *Server, ctx context.Context, tid, id string) { s.bundles.ForgetGateway(ctx, tid, id) },
			routes:      (*Server).gatewayRoutes,
			importItem:  importOf(configGatewayObject), nameField: "name",
		},
	})
	api := apiOf(sch.MustKind(model.KindGateway))
	api.export = func(o *store.Object) (any, error) {
		return exportItem(api, o, renderGatewayObject)
	}
	api.importCheck = func(want []*configObject, stored configState, _ bool) *Error {
		for _, o := range want {
			cur := stored[o.obj.ID]
			if cur == nil {
				continue
			}
			var was, next model.GatewaySpec
			if err := json.Unmarshal(cur.Spec, &was); err != nil {
				return internalError(fmt.Errorf("decode gateway %q: %w", cur.ID, err))
			}
			_ = json.Unmarshal(o.obj.Spec, &next)
			if was.Type != next.Type {
				return fieldError(o.field+".type", "cannot change from %q; create another gateway", was.Type)
			}
		}
		return nil
	}
	sch.MustRegister(&resource.Kind{
		Name: model.KindGatewayCredential, Singular: "gateway credential", Internal: true, SoftDelete: true,
		Refs: []resource.Ref{{Field: "gateway_id", Kind: model.KindGateway, OnDelete: resource.Cascade,
			IDs: func(o *store.Object) ([]string, error) { return []string{o.ParentID}, nil }}},
	})
}

func (s *Server) gatewayRoutes(_, adm *gin.RouterGroup) {
	adm.GET("/gateways/:gw/keys", s.gatewayKeys)
	adm.GET("/gateways/:gw/package", s.gatewayPackage)
	adm.GET("/gateways/:gw/envoy-config", s.gatewayEnvoyConfig)
	adm.GET("/gateways/:gw/bundle-content", s.gatewayBundleContent)
	adm.GET("/gateways/:gw/decisions", s.listDecisions)
	adm.GET("/gateways/:gw/decisions/stats", s.decisionStats)
	adm.GET("/gateways/:gw/credentials", s.listGatewayCredentials)
	adm.POST("/gateways/:gw/credentials", s.createGatewayCredential)
	adm.DELETE("/gateways/:gw/credentials/:cid", s.deleteGatewayCredential)
}

// renderGatewayObject renders the stored gateway (no runtime status).
func renderGatewayObject(t *store.Typed[model.GatewaySpec]) gatewayBody {
	return gatewayBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description, Type: t.Spec.Type,
		ServiceIDs: nonNilStrings(t.Spec.ServiceIDs), DryRun: t.Spec.DryRun, AllowUnmatchedRoutes: t.Spec.AllowUnmatchedRoutes, ExposeTokenErrors: t.Spec.ExposeTokenErrors,
		ServerID: t.Spec.ServerID, ListenerAddress: t.Spec.ListenerAddress, ListenerPort: t.Spec.ListenerPort,
		RequestBody: t.Spec.RequestBody, PolicyTimeoutMS: effectivePolicyTimeout(t.Spec.PolicyTimeoutMS),
		DecisionLogs: cmp.Or(t.Spec.DecisionLogs, model.DefaultDecisionLogs),
		Labels:       labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// renderGateway is the GET body: the gateway, its client's id, issuer and
// server URLs (with a server) and, withStatus, its bundle, authorizer and
// xDS status.
func (s *Server) renderGateway(c *gin.Context, t *store.Typed[model.GatewaySpec], withStatus bool) gatewayBody {
	out := renderGatewayObject(t)
	if t.Spec.ServerID != "" {
		out.IssuerURL = model.IssuerURL(s.public, t.Meta.TenantID, t.Spec.ServerID)
		out.ServerURL = strings.TrimRight(s.public, "/")
		// A gateway's client is found by its parent; a failed read leaves
		// client_id out of this rendering (the client is still there).
		if cl, err := oauthClientRepo.ListAll(c.Request.Context(), s.store, store.Query{TenantID: t.Meta.TenantID, ParentID: t.Meta.ID}); err == nil {
			for _, x := range cl {
				if x.Spec.GatewayID == t.Meta.ID {
					out.ClientID = x.Meta.ID
				}
			}
		}
	}
	if withStatus {
		st := &gatewayStatus{}
		if b := s.bundles.Get(t.Meta.TenantID, t.Meta.ID); b != nil {
			built := b.BuiltAt
			st.Bundle = bundleStatus{Revision: b.Revision, ETag: b.ETag(), BuiltAt: &built, Bytes: len(b.Raw), KeyID: b.KeyID}
		}
		if f := s.bundles.BuildFailure(t.Meta.TenantID, t.Meta.ID); f != nil {
			st.Bundle.Error = f.Error
			st.BuildError = &buildErrorStatus{Error: f.Error, Since: f.Since, Failures: f.Failures, Retrying: f.Retrying}
		}
		st.OPA = s.opaStatus(c.Request.Context(), t.Meta.TenantID, t.Meta.ID)
		if s.xds != nil {
			st.XDS = s.xds.GatewayStatus(t.Meta.TenantID, t.Meta.ID)
		}
		if s.inProcess != nil {
			st.InProcess = s.inProcess.GatewayStatus(t.Meta.TenantID, t.Meta.ID)
		}
		out.Status = st
	}
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (r *gatewayBody) validate(tid string) *Error {
	var errs []*Error
	if l := serverIDErrors(&r.ServerID, &r.AuthorizationServerID, tid); len(l) > 0 {
		errs = append(errs, fieldErrors(l))
	}
	if r.Type == "" {
		r.Type = model.GatewayEnvoy
	}
	if r.ListenerAddress == "" {
		r.ListenerAddress = model.DefaultListenerAddress
	}
	if r.ListenerPort == 0 {
		r.ListenerPort = model.DefaultListenerPort
	}
	if r.PolicyTimeoutMS == 0 {
		r.PolicyTimeoutMS = model.DefaultPolicyTimeoutMS
	}
	if r.DecisionLogs == "" {
		r.DecisionLogs = model.DefaultDecisionLogs
	}
	if r.Type != model.GatewayEnvoy && r.Type != model.GatewayGRPC {
		errs = append(errs, fieldError("type", "unsupported gateway type %q (supported: %s, %s)", r.Type, model.GatewayEnvoy, model.GatewayGRPC))
	}
	if net.ParseIP(r.ListenerAddress) == nil {
		errs = append(errs, fieldError("listener_address", "must be an IP address (e.g. 0.0.0.0 or ::)"))
	}
	if r.ListenerPort < 1 || r.ListenerPort > 65535 {
		errs = append(errs, fieldError("listener_port", "must be between 1 and 65535"))
	}
	if b := r.RequestBody; b != nil && (b.MaxRequestBytes == 0 || b.MaxRequestBytes > 8<<20) {
		errs = append(errs, fieldError("request_body.max_request_bytes", "must be between 1 and %d", 8<<20))
	}
	if r.PolicyTimeoutMS < 1 || r.PolicyTimeoutMS > model.MaxPolicyTimeoutMS {
		errs = append(errs, fieldError("policy_timeout_ms", "must be between 1 and %d (milliseconds; default %d)", model.MaxPolicyTimeoutMS, model.DefaultPolicyTimeoutMS))
	}
	if _, err := model.ParseDecisionLogMode(r.DecisionLogs); err != nil {
		errs = append(errs, fieldError("decision_logs", "must be %s, not %q", model.DecisionLogModeRule, r.DecisionLogs))
	}
	seen := map[string]bool{}
	for i, id := range r.ServiceIDs {
		switch {
		case !model.ValidObjectID(id):
			errs = append(errs, fieldError("service_ids", "entry %d: invalid id %q", i, id))
		case seen[id]:
			errs = append(errs, fieldError("service_ids", "service %q is listed twice", id))
		}
		seen[id] = true
	}
	return collect(append([]*Error{
		validateText("name", r.Name, true, 256),
		validateText("description", r.Description, false, 4096),
		tenantMatch(r.TenantID, tid),
	}, append(errs, validateLabels(r.Labels))...)...)
}

func (r *gatewayBody) spec() model.GatewaySpec {
	ids := append([]string(nil), r.ServiceIDs...)
	sort.Strings(ids)
	spec := model.GatewaySpec{Type: r.Type, ServiceIDs: ids, DryRun: r.DryRun, AllowUnmatchedRoutes: r.AllowUnmatchedRoutes, ExposeTokenErrors: r.ExposeTokenErrors, ServerID: r.ServerID,
		ListenerAddress: r.ListenerAddress, ListenerPort: r.ListenerPort, RequestBody: r.RequestBody, PolicyTimeoutMS: r.PolicyTimeoutMS}
	// The default is stored as empty, as gateways written before the
	// field existed have it.
	if r.DecisionLogs != model.DefaultDecisionLogs {
		spec.DecisionLogs = r.DecisionLogs
	}
	return spec
}

// effectivePolicyTimeout is a stored gateway's policy deadline in
// milliseconds (gateways stored before the field existed have none).
func effectivePolicyTimeout(ms int) int {
	if ms <= 0 {
		return model.DefaultPolicyTimeoutMS
	}
	return ms
}

func (s *Server) listGateways(c *gin.Context) {
	listKind(s, c, gatewayRepo, "gateway", "gateways", func(t *store.Typed[model.GatewaySpec]) gatewayBody {
		return s.renderGateway(c, t, false)
	})
}

// createGateway creates the gateway and its first credential, whose token
// is in the response once; with a server, also the gateway's OAuth client
// (seed 003 GatewayWithClient), whose secret is in the response once.
func (s *Server) createGateway(c *gin.Context) {
	tid := tenantID(c)
	var req gatewayBody
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
	t := &store.Typed[model.GatewaySpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: req.Name, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: req.spec(),
	}
	var (
		cred   *credentialSecret
		client *clientBody
	)
	ok := s.write(c, "gateway", id, func(ctx context.Context, tx store.Tx) error {
		if err := checkReferencesOf(ctx, s, tx, model.KindGateway, t); err != nil {
			return err
		}
		if err := gatewayRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := checkRouteTakeover(ctx, tx, tid, takeoverScope{gateways: map[string]bool{id: true}}, nil); err != nil {
			return err
		}
		if err := record(ctx, tx, c, tid, "create", model.KindGateway, id); err != nil {
			return err
		}
		var err error
		if cred, err = mintGatewayCredential(ctx, tx, c, tid, id, defaultCredentialName(c, "created with the gateway"), true); err != nil {
			return err
		}
		if t.Spec.ServerID != "" {
			client, err = createGatewayClient(ctx, tx, c, tid, id, t.Spec.ServerID)
		}
		return err
	})
	if ok {
		out := s.renderGateway(c, t, false)
		out.Credential = cred
		if client != nil {
			out.Client, out.ClientID = client, client.ClientID
		}
		c.Header("Cache-Control", "no-store")
		respondObject(c, http.StatusCreated, t.Meta.Revision, out)
	}
}

func (s *Server) loadGateway(c *gin.Context) (*store.Typed[model.GatewaySpec], bool) {
	id, apiErr := objectIDParam(c, "gw")
	if apiErr != nil {
		abort(c, apiErr)
		return nil, false
	}
	t, err := gatewayRepo.Get(c.Request.Context(), s.store, tenantID(c), id)
	if err != nil {
		fail(c, err, "gateway", id)
		return nil, false
	}
	return t, true
}

func (s *Server) getGateway(c *gin.Context) {
	t, ok := s.loadGateway(c)
	if ok {
		respondObject(c, http.StatusOK, t.Meta.Revision, s.renderGateway(c, t, true))
	}
}

func (s *Server) updateGateway(c *gin.Context) {
	tid := tenantID(c)
	render := func(t *store.Typed[model.GatewaySpec]) gatewayBody { return s.renderGateway(c, t, false) }
	updateKind(s, c, gatewayRepo, "gw", "gateway", render, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[model.GatewaySpec]) error, *Error) {
		var req gatewayBody
		if apiErr := decodeUpdate(c, &req, func() string { return req.ID }, id); apiErr != nil {
			return nil, apiErr
		}
		if apiErr := req.validate(tid); apiErr != nil {
			return nil, apiErr
		}
		return func(ctx context.Context, tx store.Tx, t *store.Typed[model.GatewaySpec]) error {
			if req.Type != t.Spec.Type {
				return fieldError("type", "cannot change from %q; create another gateway", t.Spec.Type)
			}
			if req.ServerID != t.Spec.ServerID {
				return fieldError("server_id", "cannot change from %q once the gateway exists (its client belongs to that server); create another gateway", t.Spec.ServerID)
			}
			t.Meta.Name, t.Meta.Description, t.Meta.Labels = req.Name, req.Description, req.Labels
			t.Spec = req.spec()
			if err := checkReferencesOf(ctx, s, tx, model.KindGateway, t); err != nil {
				return err
			}
			return checkRouteTakeover(ctx, tx, tid, takeoverScope{gateways: map[string]bool{t.Meta.ID: true}}, func(cfg *policies.Config) {
				if gw := cfg.Gateway(t.Meta.ID); gw != nil {
					gw.Spec = t.Spec
				}
			})
		}, nil
	})
}

// deleteGatewayCredentials deletes every credential of a gateway, recording
// an audit event for each. They are soft-deleted (revoked, their ids freed,
// their hashes kept) so that the bundle service can tell an authorizer
// presenting one that its gateway was deleted (gatewayAuth).
func deleteGatewayCredentials(ctx context.Context, tx store.Tx, c *gin.Context, tid, gw string) error {
	creds, err := gatewayCredRepo.ListAll(ctx, tx, store.Query{TenantID: tid, ParentID: gw})
	if err != nil {
		return err
	}
	for _, cr := range creds {
		if _, err := tx.Delete(ctx, model.KindGatewayCredential, tid, cr.Meta.ID, 0, true); err != nil {
			return err
		}
		if err := record(ctx, tx, c, tid, "delete", model.KindGatewayCredential, cr.Meta.ID); err != nil {
			return err
		}
	}
	return nil
}

// gatewayKeys returns the public key the gateway's bundles are signed with.
func (s *Server) gatewayKeys(c *gin.Context) {
	t, ok := s.loadGateway(c)
	if !ok {
		return
	}
	k, err := s.keys.Key(c.Request.Context(), t.Meta.TenantID)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	c.JSON(http.StatusOK, gin.H{"keys": []gin.H{{
		"kid": k.KeyID, "alg": k.Algorithm, "use": "bundle-signing", "public_key_pem": k.PublicKeyPEM,
	}}})
}

// createGatewayClient creates, in the gateway's create transaction, the
// OAuth client the gateway authenticates to the bundle service with: a
// confidential system client of the server with the client_credentials
// grant, whose tokens have the gateway's audience
// (model.GatewayAudience). Its id is gateway-<gid> (or generated when
// that is not a free client id); it goes with the gateway. It returns the
// client with its secret, shown only in the create response.
func createGatewayClient(ctx context.Context, tx store.Tx, c *gin.Context, tid, gid, serverID string) (*clientBody, error) {
	server, err := store.Repo[model.ServerSpec]{Kind: model.KindServer}.Get(ctx, tx, tid, serverID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unknownReference("server_id", "server", serverID)
	}
	if err != nil {
		return nil, err
	}
	if g := server.Spec.GrantTypes; len(g) > 0 && !slices.Contains(g, model.GrantClientCredentials) {
		return nil, fieldError("server_id", "server %q does not allow the client_credentials grant, which the gateway's client needs", serverID)
	}
	secret, err := clientauth.NewSecret()
	if err != nil {
		return nil, err
	}
	id := "gateway-" + gid
	if !model.ValidObjectID(id) {
		id = uuid.NewString()
	} else if _, err := tx.Get(ctx, model.KindClient, tid, id); err == nil {
		id = uuid.NewString()
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	t := &store.Typed[model.ClientSpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: id, ParentID: gid, CreatedBy: actor(c),
			Description: fmt.Sprintf("The OAuth client of gateway %q, made by Gatehouse; it goes with the gateway.", gid)},
		Spec: model.ClientSpec{
			Name: "gateway " + gid, ServerID: serverID, SecretHash: clientauth.HashSecret(secret), System: true,
			GrantTypes: []string{model.GrantClientCredentials}, ResponseTypes: []string{}, // audience: computed (model.GatewayAudience)
			TokenEndpointAuthMethod: model.AuthMethodBasic, ClientIDIssuedAt: time.Now().Unix(), GatewayID: gid,
		},
	}
	if err := oauthClientRepo.Create(ctx, tx, t); err != nil {
		return nil, err
	}
	if err := record(ctx, tx, c, tid, "create", model.KindClient, id); err != nil {
		return nil, err
	}
	out := renderClient(t)
	out.ClientSecret = secret
	return &out, nil
}
