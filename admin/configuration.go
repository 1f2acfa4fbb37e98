package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// System configuration (seed 003 exportConfiguration, and v1.6.0's
// importConfiguration): a tenant's whole configuration as one JSON document
// that round-trips. GET exports it; PUT imports it, validating everything
// before it writes anything, in one transaction.

const (
	// configVersion is the document format this server reads and writes.
	configVersion = 1
	// configBodyLimit caps an imported document.
	configBodyLimit = 10 << 20
)

// configDocument is the exported document. Objects carry the fields of
// their resource's request body, without read-only envelope fields and
// without secrets (gateway credentials and signing keys stay behind).
// Arrays are sorted by id, so one configuration always exports the same
// bytes.
type configDocument struct {
	Version  int             `json:"version"`
	Tenant   configTenant    `json:"tenant"`
	Services []configService `json:"services"`
	APIs     []configAPI     `json:"apis"`
	Policies []configPolicy  `json:"policies"`
	Scopes   []configScope   `json:"scopes"`
	Issuers  []configIssuer  `json:"issuers"`
	Gateways []configGateway `json:"gateways"`
}

// configDocumentIn is an imported document before its objects are decoded
// one by one (so errors name them, like services[2].colour).
type configDocumentIn struct {
	Version  *int              `json:"version"`
	Tenant   json.RawMessage   `json:"tenant"`
	Services []json.RawMessage `json:"services"`
	APIs     []json.RawMessage `json:"apis"`
	Policies []json.RawMessage `json:"policies"`
	Scopes   []json.RawMessage `json:"scopes"`
	Issuers  []json.RawMessage `json:"issuers"`
	Gateways []json.RawMessage `json:"gateways"`
}

// configTenant: the document's tenant. On import its id may differ from the
// target (that is how a configuration is copied) and its status is ignored.
type configTenant struct {
	ID                            string                     `json:"id"`
	Name                          string                     `json:"name"`
	Description                   string                     `json:"description"`
	Status                        model.TenantStatus         `json:"status"`
	Labels                        map[string]string          `json:"labels"`
	AuthenticationContextSettings *model.AuthContextSettings `json:"authentication_context_settings,omitempty"`
}

type configService struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Description       string            `json:"description"`
	URL               string            `json:"url"`
	Hosts             []string          `json:"hosts"`
	ServerID          string            `json:"server_id,omitempty"`
	WithSpecification bool              `json:"with_specification"`
	Labels            map[string]string `json:"labels"`
}

type configAPI struct {
	ID                  string            `json:"id"`
	ServiceID           string            `json:"service_id"`
	Method              string            `json:"method"`
	Path                string            `json:"path"`
	PolicyID            string            `json:"policy_id"`
	CanHavePolicy       *bool             `json:"can_have_policy"`
	DataClassifications []string          `json:"data_classifications"`
	Public              bool              `json:"public"`
	Position            int               `json:"position"`
	OperationID         string            `json:"operation_id,omitempty"`
	Imported            bool              `json:"imported"`
	ClaimsToHeaders     map[string]string `json:"claims_to_headers"`
	Labels              map[string]string `json:"labels"`
}

type configPolicy struct {
	ID          string                  `json:"id"`
	PolicyName  string                  `json:"policy_name"`
	Description string                  `json:"description"`
	Language    string                  `json:"language"`
	Definition  string                  `json:"definition,omitempty"`
	Validators  []model.ValidatorConfig `json:"validators,omitempty"`
	Type        string                  `json:"type"`
	DryRun      bool                    `json:"dry_run"`
	Labels      map[string]string       `json:"labels"`
}

type configScope struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	DisplayName string            `json:"display_name"`
	Description string            `json:"description"`
	ServiceID   string            `json:"service_id,omitempty"`
	ServerID    string            `json:"server_id,omitempty"`
	Labels      map[string]string `json:"labels"`
}

type configIssuer struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Issuer      string            `json:"issuer"`
	Audiences   []string          `json:"audiences"`
	JWKS        json.RawMessage   `json:"jwks,omitempty"`
	JWKSURI     string            `json:"jwks_uri,omitempty"`
	Discovery   bool              `json:"discovery"`
	Labels      map[string]string `json:"labels"`
}

type configGateway struct {
	ID                   string                     `json:"id"`
	Name                 string                     `json:"name"`
	Description          string                     `json:"description"`
	Type                 string                     `json:"type"`
	ServiceIDs           []string                   `json:"service_ids"`
	DryRun               bool                       `json:"dry_run"`
	AllowUnmatchedRoutes bool                       `json:"allow_unmatched_routes"`
	ServerID             string                     `json:"server_id,omitempty"`
	ListenerAddress      string                     `json:"listener_address"`
	ListenerPort         int                        `json:"listener_port"`
	RequestBody          *model.RequestBodySettings `json:"request_body,omitempty"`
	PolicyTimeoutMS      int                        `json:"policy_timeout_ms,omitempty"`
	Labels               map[string]string          `json:"labels"`
}

// configImportResult counts what an import did, per kind.
type configImportResult struct {
	deletedGateways []string
	Created         map[string]int `json:"created"`
	Updated         map[string]int `json:"updated"`
	Deleted         map[string]int `json:"deleted"`
	Unchanged       map[string]int `json:"unchanged"`
}

// configKind describes one kind of the document. configKinds is in write
// order (what is referenced first); deletes run in reverse, so APIs, scopes
// and gateways go before the services and policies they name.
type configKind struct {
	kind string
	// what names the kind in messages; nameField is the document field
	// that holds the unique envelope name (an API's is its route).
	what, nameField string
	// canonical re-encodes a stored spec as the current code writes it,
	// so unchanged objects are recognised whatever the backend's JSON.
	canonical func(json.RawMessage) ([]byte, error)
}

var configKinds = []configKind{
	{model.KindPolicy, "policy", "policy_name", canonicalSpec[model.PolicySpec]},
	{model.KindService, "service", "name", canonicalSpec[model.ServiceSpec]},
	{model.KindAPI, "api", "path", canonicalSpec[model.APISpec]},
	{model.KindScope, "scope", "name", canonicalSpec[model.ScopeSpec]},
	{model.KindIssuer, "issuer", "name", canonicalSpec[model.IssuerSpec]},
	{model.KindGateway, "gateway", "name", canonicalSpec[model.GatewaySpec]},
}

func canonicalSpec[S any](raw json.RawMessage) ([]byte, error) {
	var spec S
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &spec); err != nil {
			return nil, err
		}
	}
	return json.Marshal(spec)
}

// configObject is one validated object of an imported document in its
// stored form.
type configObject struct {
	// field locates it in the document, like "apis[3]".
	field string
	obj   store.Object
	refs  []configRef
}

// configRef is a reference from a document field to another object.
type configRef struct{ field, kind, id string }

// configPlan is a validated document.
type configPlan struct {
	tenant  configTenant
	objects map[string][]*configObject // by kind, in document order
}

func (s *Server) configurationRoutes(sys, _ *gin.RouterGroup) {
	sys.GET("/configuration", s.exportConfiguration)
	sys.PUT("/configuration", s.importConfiguration)
}

// configTenantQuery reads the required ?tid=.
func configTenantQuery(c *gin.Context) (string, *Error) {
	tid := c.Query("tid")
	if tid == "" {
		return "", missingField("tid")
	}
	if !model.ValidTenantID(tid) {
		return "", fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule)
	}
	return tid, nil
}

func (s *Server) exportConfiguration(c *gin.Context) {
	tid, apiErr := configTenantQuery(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var doc *configDocument
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		var err error
		doc, err = exportConfiguration(ctx, rd, tid)
		return err
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	c.JSON(http.StatusOK, doc)
}

// exportConfiguration reads a tenant's configuration document. Lists come
// from the store ordered by id.
func exportConfiguration(ctx context.Context, rd store.Reader, tid string) (*configDocument, error) {
	t, err := tenantRepo.Get(ctx, rd, "", tid)
	if err != nil {
		return nil, err
	}
	doc := &configDocument{Version: configVersion, Tenant: configTenant{
		ID: t.Meta.ID, Name: t.Spec.Name, Description: t.Meta.Description, Status: t.Spec.Status,
		Labels: labelsOrEmpty(t.Meta.Labels), AuthenticationContextSettings: t.Spec.AuthenticationContextSettings,
	}}
	if doc.Services, err = exportItems(ctx, rd, serviceRepo, tid, exportService); err != nil {
		return nil, err
	}
	if doc.APIs, err = exportItems(ctx, rd, apiRepo, tid, exportAPI); err != nil {
		return nil, err
	}
	if doc.Policies, err = exportItems(ctx, rd, policyRepo, tid, exportPolicy); err != nil {
		return nil, err
	}
	if doc.Scopes, err = exportItems(ctx, rd, scopeRepo, tid, exportScope); err != nil {
		return nil, err
	}
	if doc.Issuers, err = exportItems(ctx, rd, issuerRepo, tid, exportIssuer); err != nil {
		return nil, err
	}
	if doc.Gateways, err = exportItems(ctx, rd, gatewayRepo, tid, exportGateway); err != nil {
		return nil, err
	}
	return doc, nil
}

func exportItems[S, T any](ctx context.Context, rd store.Reader, repo store.Repo[S], tid string, render func(*store.Typed[S]) T) ([]T, error) {
	items, err := repo.ListAll(ctx, rd, store.Query{TenantID: tid})
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(items))
	for _, t := range items {
		out = append(out, render(t))
	}
	return out, nil
}

func exportService(t *store.Typed[model.ServiceSpec]) configService {
	return configService{
		ID: t.Meta.ID, Name: t.Meta.Name, Description: t.Meta.Description, URL: t.Spec.URL, Hosts: nonNilStrings(t.Spec.Hosts),
		ServerID: t.Spec.ServerID, WithSpecification: t.Spec.WithSpecification, Labels: labelsOrEmpty(t.Meta.Labels),
	}
}

func exportAPI(t *store.Typed[model.APISpec]) configAPI {
	canHave := t.Spec.CanHavePolicy
	return configAPI{
		ID: t.Meta.ID, ServiceID: t.Spec.ServiceID, Method: t.Spec.Method, Path: t.Spec.Path, PolicyID: t.Spec.PolicyID,
		CanHavePolicy: &canHave, DataClassifications: nonNilStrings(t.Spec.DataClassifications), Public: t.Spec.Public,
		Position: t.Spec.Position, OperationID: t.Spec.OperationID, Imported: t.Spec.Imported,
		ClaimsToHeaders: labelsOrEmpty(t.Spec.ClaimsToHeaders), Labels: labelsOrEmpty(t.Meta.Labels),
	}
}

func exportPolicy(t *store.Typed[model.PolicySpec]) configPolicy {
	return configPolicy{
		ID: t.Meta.ID, PolicyName: t.Meta.Name, Description: t.Meta.Description, Language: t.Spec.Language,
		Definition: t.Spec.Definition, Validators: t.Spec.Validators, Type: t.Spec.Type, DryRun: t.Spec.DryRun,
		Labels: labelsOrEmpty(t.Meta.Labels),
	}
}

func exportScope(t *store.Typed[model.ScopeSpec]) configScope {
	return configScope{
		ID: t.Meta.ID, Name: t.Meta.Name, DisplayName: t.Spec.DisplayName, Description: t.Meta.Description,
		ServiceID: t.Spec.ServiceID, ServerID: t.Spec.ServerID, Labels: labelsOrEmpty(t.Meta.Labels),
	}
}

func exportIssuer(t *store.Typed[model.IssuerSpec]) configIssuer {
	return configIssuer{
		ID: t.Meta.ID, Name: t.Meta.Name, Description: t.Meta.Description, Issuer: t.Spec.Issuer,
		Audiences: nonNilStrings(t.Spec.Audiences), JWKS: t.Spec.JWKS, JWKSURI: t.Spec.JWKSURI, Discovery: t.Spec.Discovery,
		Labels: labelsOrEmpty(t.Meta.Labels),
	}
}

func exportGateway(t *store.Typed[model.GatewaySpec]) configGateway {
	return configGateway{
		ID: t.Meta.ID, Name: t.Meta.Name, Description: t.Meta.Description, Type: t.Spec.Type,
		ServiceIDs: nonNilStrings(t.Spec.ServiceIDs), DryRun: t.Spec.DryRun, AllowUnmatchedRoutes: t.Spec.AllowUnmatchedRoutes,
		ServerID: t.Spec.ServerID, ListenerAddress: t.Spec.ListenerAddress, ListenerPort: t.Spec.ListenerPort,
		RequestBody: t.Spec.RequestBody, PolicyTimeoutMS: effectivePolicyTimeout(t.Spec.PolicyTimeoutMS), Labels: labelsOrEmpty(t.Meta.Labels),
	}
}

// importConfiguration applies a document to the tenant ?tid= in one
// transaction: mode=replace (default) makes the tenant's configuration the
// document's, deleting what it lacks; mode=merge creates and updates only.
func (s *Server) importConfiguration(c *gin.Context) {
	tid, apiErr := configTenantQuery(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	merge := false
	switch mode := c.Query("mode"); mode {
	case "", "replace":
	case "merge":
		merge = true
	default:
		abort(c, fieldError("mode", "must be replace or merge, not %q", mode))
		return
	}
	if _, err := tenantRepo.Get(c.Request.Context(), s.store, "", tid); err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	var in configDocumentIn
	if apiErr := decodeJSONLimit(c, &in, configBodyLimit); apiErr != nil {
		abort(c, apiErr)
		return
	}
	plan, apiErr := s.validateConfiguration(tid, &in)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var result *configImportResult
	if s.write(c, "tenant", tid, func(ctx context.Context, tx store.Tx) error {
		var err error
		if result, err = applyConfiguration(ctx, tx, c, tid, plan, merge); err != nil {
			return err
		}
		return checkRouteTakeover(ctx, tx, tid, takeoverScope{all: true}, nil)
	}) {
		for _, gw := range result.deletedGateways {
			s.bundles.ForgetGateway(c.Request.Context(), tid, gw)
		}
		c.JSON(http.StatusOK, result)
	}
}

// validateConfiguration decodes and validates every object of the document
// on its own, with the rules of its resource endpoint. Checks across
// objects need the stored state and run in the import's transaction.
func (s *Server) validateConfiguration(tid string, in *configDocumentIn) (*configPlan, *Error) {
	switch {
	case in.Version == nil:
		return nil, missingField("version")
	case *in.Version != configVersion:
		return nil, fieldError("version", "unsupported version %d (this server reads version %d)", *in.Version, configVersion)
	case len(in.Tenant) == 0 || string(in.Tenant) == "null":
		return nil, missingField("tenant")
	}
	plan := &configPlan{objects: map[string][]*configObject{}}
	if apiErr := decodeConfigItem(in.Tenant, &plan.tenant); apiErr != nil {
		return nil, atPath("tenant", apiErr)
	}
	if apiErr := validateConfigTenant(&plan.tenant); apiErr != nil {
		return nil, atPath("tenant", apiErr)
	}
	var apiErr *Error
	if plan.objects[model.KindService], apiErr = configItems(in.Services, model.KindService, configServiceObject); apiErr != nil {
		return nil, apiErr
	}
	if plan.objects[model.KindAPI], apiErr = configItems(in.APIs, model.KindAPI, configAPIObject); apiErr != nil {
		return nil, apiErr
	}
	if len(in.Policies) > policies.MaxPoliciesPerTenant { // before compiling any of them
		return nil, limitError("policies", policies.MaxPoliciesPerTenant, "a tenant may have at most %d policies (the document has %d)",
			policies.MaxPoliciesPerTenant, len(in.Policies))
	}
	if plan.objects[model.KindPolicy], apiErr = configItems(in.Policies, model.KindPolicy, s.configPolicyObject); apiErr != nil {
		return nil, apiErr
	}
	if plan.objects[model.KindScope], apiErr = configItems(in.Scopes, model.KindScope, configScopeObject); apiErr != nil {
		return nil, apiErr
	}
	if plan.objects[model.KindIssuer], apiErr = configItems(in.Issuers, model.KindIssuer, s.configIssuerObject); apiErr != nil {
		return nil, apiErr
	}
	if plan.objects[model.KindGateway], apiErr = configItems(in.Gateways, model.KindGateway, configGatewayObject); apiErr != nil {
		return nil, apiErr
	}
	return plan, nil
}

func validateConfigTenant(t *configTenant) *Error {
	if t.ID != "" && !model.ValidTenantID(t.ID) {
		return fieldError("id", "invalid tenant id %q (%s)", t.ID, model.TenantIDRule)
	}
	req := tenantRequest{Name: t.Name, Description: t.Description, Status: t.Status, Labels: t.Labels,
		AuthenticationContextSettings: t.AuthenticationContextSettings}
	return req.validate()
}

// configItems decodes and validates the objects of one list; build turns
// a decoded object into its stored form. Errors name the object's path.
func configItems[T any](raws []json.RawMessage, list string, build func(*T) (*configObject, *Error)) ([]*configObject, *Error) {
	out := make([]*configObject, 0, len(raws))
	for i, raw := range raws {
		path := fmt.Sprintf("%s[%d]", list, i)
		var item T
		apiErr := decodeConfigItem(raw, &item)
		var o *configObject
		if apiErr == nil {
			o, apiErr = build(&item)
		}
		if apiErr != nil {
			return nil, atPath(path, apiErr)
		}
		o.field = path
		for j := range o.refs {
			o.refs[j].field = path + "." + o.refs[j].field
		}
		out = append(out, o)
	}
	return out, nil
}

// decodeConfigItem strictly decodes one object of the document.
func decodeConfigItem(raw json.RawMessage, dst any) *Error {
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return newError(http.StatusBadRequest, CodeInvalidField, "must be a JSON object", map[string]any{"reason": "must be a JSON object"})
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, configBodyLimit)
	}
	return nil
}

// atPath re-addresses an error about a field of one object to the field's
// path in the document: "url" of services[2] becomes "services[2].url".
func atPath(path string, e *Error) *Error {
	field, _ := e.Details["field"].(string)
	full := path
	if field != "" {
		full += "." + field
	}
	e.Message = full + ": " + strings.TrimPrefix(e.Message, field+": ")
	e.Details["field"] = full
	return e
}

// configID checks an object's id: required, since ids are how an import
// recognises the objects it updates.
func configID(id string) *Error {
	if id == "" {
		return missingField("id")
	}
	_, apiErr := newObjectID("id", id)
	return apiErr
}

func newConfigObject(kind, id, name, parent, description string, labels map[string]string, spec any) (*configObject, *Error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, internalError(err)
	}
	if len(labels) == 0 {
		labels = nil
	}
	return &configObject{obj: store.Object{Kind: kind, ID: id, Name: name, ParentID: parent, Description: description,
		Labels: labels, Spec: raw}}, nil
}

func configServiceObject(in *configService) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := serviceRequest{Name: in.Name, Description: in.Description, URL: in.URL, Hosts: in.Hosts, ServerID: in.ServerID, Labels: in.Labels}
	hosts, apiErr := req.validate("")
	if apiErr != nil {
		return nil, apiErr
	}
	return newConfigObject(model.KindService, in.ID, in.Name, "", in.Description, in.Labels,
		model.ServiceSpec{URL: in.URL, Hosts: hosts, ServerID: in.ServerID, WithSpecification: in.WithSpecification})
}

func configAPIObject(in *configAPI) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := apiRequest{ServiceID: in.ServiceID, Method: in.Method, Path: in.Path, PolicyID: in.PolicyID, CanHavePolicy: in.CanHavePolicy,
		DataClassifications: in.DataClassifications, Public: in.Public, Position: &in.Position, ClaimsToHeaders: in.ClaimsToHeaders,
		Labels: in.Labels}
	if apiErr := req.validate("", true); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := validateText("operation_id", in.OperationID, false, 256); apiErr != nil {
		return nil, apiErr
	}
	route, _ := parseRoute(in.Method, in.Path)
	o, apiErr := newConfigObject(model.KindAPI, in.ID, route.Name(in.ServiceID), in.ServiceID, "", in.Labels, model.APISpec{
		ServiceID: in.ServiceID, Method: route.Method, Path: route.Template.Raw, PolicyID: in.PolicyID,
		CanHavePolicy: derefOr(in.CanHavePolicy, true), DataClassifications: in.DataClassifications, Public: in.Public,
		Imported: in.Imported, OperationID: in.OperationID, Position: in.Position, ClaimsToHeaders: in.ClaimsToHeaders,
	})
	if o != nil {
		o.refs = append(o.refs, configRef{"service_id", model.KindService, in.ServiceID})
		if in.PolicyID != "" {
			o.refs = append(o.refs, configRef{"policy_id", model.KindPolicy, in.PolicyID})
		}
	}
	return o, apiErr
}

func (s *Server) configPolicyObject(in *configPolicy) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := policyRequest{PolicyName: in.PolicyName, Description: in.Description, Language: in.Language, Definition: in.Definition,
		Validators: in.Validators, Type: in.Type, DryRun: in.DryRun, Labels: in.Labels}
	spec, apiErr := req.spec("")
	if apiErr == nil {
		apiErr = s.check(in.ID, &spec)
	}
	if apiErr != nil {
		return nil, apiErr
	}
	return newConfigObject(model.KindPolicy, in.ID, in.PolicyName, "", in.Description, in.Labels, spec)
}

func configScopeObject(in *configScope) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := scopeRequest{Name: in.Name, DisplayName: in.DisplayName, Description: in.Description, ServiceID: in.ServiceID,
		ServerID: in.ServerID, Labels: in.Labels}
	if apiErr := req.validate(""); apiErr != nil {
		return nil, apiErr
	}
	o, apiErr := newConfigObject(model.KindScope, in.ID, in.Name, "", in.Description, in.Labels,
		model.ScopeSpec{DisplayName: in.DisplayName, ServiceID: in.ServiceID, ServerID: in.ServerID})
	if o != nil && in.ServiceID != "" {
		o.refs = append(o.refs, configRef{"service_id", model.KindService, in.ServiceID})
	}
	return o, apiErr
}

func (s *Server) configIssuerObject(in *configIssuer) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := issuerRequest{Name: in.Name, Description: in.Description, Issuer: in.Issuer, Audiences: in.Audiences,
		JWKS: in.JWKS, JWKSURI: in.JWKSURI, Discovery: in.Discovery, Labels: in.Labels}
	spec, apiErr := req.spec("", s.allowPrivateJWKSURLs)
	if apiErr != nil {
		return nil, apiErr
	}
	return newConfigObject(model.KindIssuer, in.ID, in.Name, "", in.Description, in.Labels, spec)
}

func configGatewayObject(in *configGateway) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	req := gatewayRequest{Name: in.Name, Description: in.Description, Type: in.Type, ServiceIDs: in.ServiceIDs, DryRun: in.DryRun,
		AllowUnmatchedRoutes: in.AllowUnmatchedRoutes, ServerID: in.ServerID, ListenerAddress: in.ListenerAddress,
		ListenerPort: in.ListenerPort, RequestBody: in.RequestBody, PolicyTimeoutMS: in.PolicyTimeoutMS, Labels: in.Labels}
	if apiErr := req.validate(""); apiErr != nil {
		return nil, apiErr
	}
	o, apiErr := newConfigObject(model.KindGateway, in.ID, in.Name, "", in.Description, in.Labels, req.spec())
	if o != nil {
		for i, sid := range in.ServiceIDs {
			o.refs = append(o.refs, configRef{fmt.Sprintf("service_ids[%d]", i), model.KindService, sid})
		}
	}
	return o, apiErr
}

// configState is the tenant's stored objects of one kind, by id.
type configState map[string]*store.Object

// applyConfiguration checks the plan against the stored configuration and
// writes it. Any problem is returned before the first write.
func applyConfiguration(ctx context.Context, tx store.Tx, c *gin.Context, tid string, plan *configPlan, merge bool) (*configImportResult, error) {
	tenant, err := tenantRepo.Get(ctx, tx, "", tid)
	if err != nil {
		return nil, err
	}
	stored := map[string]configState{}
	for _, k := range configKinds {
		pg, err := tx.List(ctx, store.Query{Kind: k.kind, TenantID: tid})
		if err != nil {
			return nil, err
		}
		stored[k.kind] = configState{}
		for _, o := range pg.Items {
			stored[k.kind][o.ID] = o
		}
	}
	if apiErr := checkConfiguration(plan, stored, merge); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := checkFixedFields(plan, stored); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := checkConfigPolicyCount(plan, stored[model.KindPolicy], merge); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := checkIssuerURLs(plan, stored[model.KindIssuer], merge); apiErr != nil {
		return nil, apiErr
	}
	counts := func() map[string]int {
		m := map[string]int{}
		for _, k := range configKinds {
			m[k.kind] = 0
		}
		return m
	}
	res := &configImportResult{Created: counts(), Updated: counts(), Deleted: counts(), Unchanged: counts()}
	w := configWriter{ctx: ctx, tx: tx, c: c, tid: tid, deletedGateways: &res.deletedGateways}
	if !merge {
		for i := len(configKinds) - 1; i >= 0; i-- {
			k := configKinds[i]
			if res.Deleted[k.kind], err = w.deleteMissing(k.kind, plan.objects[k.kind], stored[k.kind]); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range configKinds {
		if err := w.freeNames(plan.objects[k.kind], stored[k.kind]); err != nil {
			return nil, err
		}
	}
	for _, k := range configKinds {
		for _, o := range plan.objects[k.kind] {
			cur := stored[k.kind][o.obj.ID]
			var action string
			switch same, err := sameConfigObject(k, cur, &o.obj); {
			case err != nil:
				return nil, err
			case same:
				res.Unchanged[k.kind]++
				continue
			case cur == nil:
				action = "create"
				res.Created[k.kind]++
			default:
				action = "update"
				res.Updated[k.kind]++
			}
			if err := w.put(action, o.obj); err != nil {
				return nil, err
			}
		}
	}
	return res, w.applyTenant(tenant, &plan.tenant)
}

// checkConfiguration checks what concerns several objects: unique ids and
// names (an API's name is its service, method and path shape), and
// references. In merge mode the stored objects the document does not name
// stay, so they count too.
func checkConfiguration(plan *configPlan, stored map[string]configState, merge bool) *Error {
	ids := map[string]map[string]string{} // kind -> id -> field
	for _, k := range configKinds {
		ids[k.kind] = map[string]string{}
		names := map[string]string{}
		for _, o := range plan.objects[k.kind] {
			if prev, dup := ids[k.kind][o.obj.ID]; dup {
				return fieldError(o.field+".id", "duplicate %s id %q (also %s)", k.what, o.obj.ID, prev)
			}
			ids[k.kind][o.obj.ID] = o.field
			if prev, dup := names[o.obj.Name]; dup {
				return duplicateConfigName(k, o, prev)
			}
			names[o.obj.Name] = o.field
		}
		if !merge {
			continue
		}
		kept := map[string]string{} // name -> id of stored objects the document does not name
		for id, cur := range stored[k.kind] {
			if _, named := ids[k.kind][id]; !named {
				kept[cur.Name] = id
			}
		}
		for _, o := range plan.objects[k.kind] {
			if id, clash := kept[o.obj.Name]; clash {
				return duplicateConfigName(k, o, fmt.Sprintf("%s %q, which a merge keeps", k.what, id))
			}
		}
	}
	what := map[string]string{}
	for _, k := range configKinds {
		what[k.kind] = k.what
	}
	for _, k := range configKinds {
		for _, o := range plan.objects[k.kind] {
			for _, r := range o.refs {
				if _, ok := ids[r.kind][r.id]; !ok && (!merge || stored[r.kind][r.id] == nil) {
					return unknownReference(r.field, what[r.kind], r.id)
				}
			}
		}
	}
	return nil
}

// checkFixedFields applies the resource endpoints' rules for what an
// update cannot change: an API's service and a gateway's type.
func checkFixedFields(plan *configPlan, stored map[string]configState) *Error {
	for _, o := range plan.objects[model.KindAPI] {
		if cur := stored[model.KindAPI][o.obj.ID]; cur != nil && cur.ParentID != o.obj.ParentID {
			return fieldError(o.field+".service_id", "cannot be changed (API %q belongs to service %q); give the API in the other service another id",
				o.obj.ID, cur.ParentID)
		}
	}
	for _, o := range plan.objects[model.KindGateway] {
		cur := stored[model.KindGateway][o.obj.ID]
		if cur == nil {
			continue
		}
		var was, want model.GatewaySpec
		if err := json.Unmarshal(cur.Spec, &was); err != nil {
			return internalError(fmt.Errorf("decode gateway %q: %w", cur.ID, err))
		}
		_ = json.Unmarshal(o.obj.Spec, &want)
		if was.Type != want.Type {
			return fieldError(o.field+".type", "cannot change from %q; create another gateway", was.Type)
		}
	}
	return nil
}

// checkIssuerURLs applies the issuer endpoint's rule that one tenant's
// issuers have distinct issuer URLs: within the document and, in merge
// mode, against the stored issuers the merge keeps.
func checkIssuerURLs(plan *configPlan, stored configState, merge bool) *Error {
	seen := map[string]string{} // issuer URL -> where it is
	if merge {
		named := map[string]bool{}
		for _, o := range plan.objects[model.KindIssuer] {
			named[o.obj.ID] = true
		}
		for _, id := range slices.Sorted(maps.Keys(stored)) {
			if named[id] {
				continue
			}
			var spec model.IssuerSpec
			if err := json.Unmarshal(stored[id].Spec, &spec); err != nil {
				return internalError(fmt.Errorf("decode issuer %q: %w", id, err))
			}
			seen[spec.Issuer] = fmt.Sprintf("issuer %q, which a merge keeps", id)
		}
	}
	for _, o := range plan.objects[model.KindIssuer] {
		var spec model.IssuerSpec
		if err := json.Unmarshal(o.obj.Spec, &spec); err != nil {
			return internalError(fmt.Errorf("decode issuer %q: %w", o.obj.ID, err))
		}
		if prev, dup := seen[spec.Issuer]; dup {
			return fieldError(o.field+".issuer", "%q is also the issuer URL of %s", spec.Issuer, prev)
		}
		seen[spec.Issuer] = o.field
	}
	return nil
}

func duplicateConfigName(k configKind, o *configObject, other string) *Error {
	field := o.field + "." + k.nameField
	if k.kind == model.KindAPI {
		var spec model.APISpec
		_ = json.Unmarshal(o.obj.Spec, &spec)
		return fieldError(field, "service %q has another API with method %s and an equivalent path: %s", spec.ServiceID, spec.Method, other)
	}
	return fieldError(field, "%q is also the name of %s", o.obj.Name, other)
}

// sameConfigObject reports whether the stored object already is what the
// document asks for.
func sameConfigObject(k configKind, cur, want *store.Object) (bool, error) {
	if cur == nil || cur.Name != want.Name || cur.ParentID != want.ParentID || cur.Description != want.Description ||
		!maps.Equal(cur.Labels, want.Labels) {
		return false, nil
	}
	spec, err := k.canonical(cur.Spec)
	if err != nil {
		return false, fmt.Errorf("decode %s %q: %w", k.kind, cur.ID, err)
	}
	return bytes.Equal(spec, want.Spec), nil
}

// configWriter writes an import, recording an audit event per object.
type configWriter struct {
	ctx context.Context
	tx  store.Tx
	c   *gin.Context
	tid string
	// deletedGateways are forgotten from runtime data after the commit.
	deletedGateways *[]string
}

// deleteMissing deletes the stored objects the document lacks (and, for a
// gateway, its credentials).
func (w configWriter) deleteMissing(kind string, want []*configObject, stored configState) (int, error) {
	keep := map[string]bool{}
	for _, o := range want {
		keep[o.obj.ID] = true
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(stored)) {
		if keep[id] {
			continue
		}
		if _, err := w.tx.Delete(w.ctx, kind, w.tid, id, 0, false); err != nil {
			return 0, err
		}
		if kind == model.KindGateway {
			if err := deleteGatewayCredentials(w.ctx, w.tx, w.c, w.tid, id); err != nil {
				return 0, err
			}
			*w.deletedGateways = append(*w.deletedGateways, id)
		}
		if err := record(w.ctx, w.tx, w.c, w.tid, "delete", kind, id); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// freeNames lets renames within one import succeed in any order (a swap of
// two names, say): a stored object that gives up a name another object of
// the document takes first moves to a temporary name, which its real
// update replaces in the same transaction.
func (w configWriter) freeNames(want []*configObject, stored configState) error {
	taken := map[string]bool{}
	for _, o := range want {
		if cur := stored[o.obj.ID]; cur == nil || cur.Name != o.obj.Name {
			taken[o.obj.Name] = true
		}
	}
	for _, o := range want {
		cur := stored[o.obj.ID]
		if cur == nil || cur.Name == o.obj.Name || !taken[cur.Name] {
			continue
		}
		tmp := cur.Clone()
		tmp.Name = "~import " + cur.UID
		tmp.UpdatedBy = actor(w.c)
		if err := w.tx.Update(w.ctx, tmp, 0); err != nil {
			return err
		}
	}
	return nil
}

// put creates or updates one object.
func (w configWriter) put(action string, o store.Object) error {
	o.TenantID = w.tid
	var err error
	if action == "create" {
		o.CreatedBy = actor(w.c)
		err = w.tx.Create(w.ctx, &o)
	} else {
		o.UpdatedBy = actor(w.c)
		err = w.tx.Update(w.ctx, &o, 0)
	}
	if err != nil {
		return err
	}
	return record(w.ctx, w.tx, w.c, w.tid, action, o.Kind, o.ID)
}

// applyTenant updates the tenant's name, description, labels and
// authentication context settings; its id and status stay.
func (w configWriter) applyTenant(t *store.Typed[model.TenantSpec], want *configTenant) error {
	before, _ := json.Marshal(t.Spec.AuthenticationContextSettings)
	after, _ := json.Marshal(want.AuthenticationContextSettings)
	if t.Spec.Name == want.Name && t.Meta.Description == want.Description && maps.Equal(t.Meta.Labels, want.Labels) &&
		bytes.Equal(before, after) {
		return nil
	}
	labels := want.Labels
	if len(labels) == 0 {
		labels = nil
	}
	t.Spec.Name, t.Spec.AuthenticationContextSettings = want.Name, want.AuthenticationContextSettings
	t.Meta.Description, t.Meta.Labels, t.Meta.UpdatedBy = want.Description, labels, actor(w.c)
	if err := tenantRepo.Update(w.ctx, w.tx, t, 0); err != nil {
		return err
	}
	return record(w.ctx, w.tx, w.c, w.tid, "update", model.KindTenant, w.tid)
}
