package admin

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/routing"
	"github.com/gatehouse-dev/gatehouse/store"
)

var apiRepo = store.Repo[model.APISpec]{Kind: model.KindAPI}

// Limits on API fields.
const (
	maxDataClassifications     = 64
	maxDataClassificationChars = 128
)

// apiBody is an API on the wire (seed 003 API): the body of create and
// PUT and what GET returns.
// operation_id, imported, tenant_id and metadata are read-only. PUT
// replaces the API: method and path are required, omitted fields take
// their defaults (no policy, position 0, can_have_policy true), and
// service_id, when given, must be the API's. The seed's UpdateAPIRequest
// ({policy_id, data_classifications}) is a PATCH.
type apiBody struct {
	ID                  string            `json:"id"`
	ServiceID           string            `json:"service_id"`
	Method              string            `json:"method"`
	Path                string            `json:"path"`
	PolicyID            string            `json:"policy_id"`
	CanHavePolicy       *bool             `json:"can_have_policy"`
	DataClassifications []string          `json:"data_classifications"`
	Public              bool              `json:"public"`
	Position            *int              `json:"position"`
	OperationID         string            `json:"operation_id,omitempty"`
	Imported            bool              `json:"imported"`
	ClaimsToHeaders     map[string]string `json:"claims_to_headers"`
	Labels              map[string]string `json:"labels"`
	TenantID            string            `json:"tenant_id"`
	Metadata            *Metadata         `json:"metadata,omitempty"`
}

func renderAPI(t *store.Typed[model.APISpec]) apiBody {
	dc := t.Spec.DataClassifications
	if dc == nil {
		dc = []string{}
	}
	return apiBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, ServiceID: t.Spec.ServiceID, Method: t.Spec.Method, Path: t.Spec.Path,
		PolicyID: t.Spec.PolicyID, CanHavePolicy: &t.Spec.CanHavePolicy, DataClassifications: dc, Public: t.Spec.Public,
		Position: &t.Spec.Position, OperationID: t.Spec.OperationID, Imported: t.Spec.Imported,
		ClaimsToHeaders: labelsOrEmpty(t.Spec.ClaimsToHeaders), Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

func renderAPIs(items []*store.Typed[model.APISpec]) []apiBody {
	out := make([]apiBody, 0, len(items))
	for _, t := range items {
		out = append(out, renderAPI(t))
	}
	return out
}

// addAPIKind registers APIs: routes of a service (deleted with it), each
// optionally bound to a policy (which cannot be deleted while it is).
// operation_id and imported are read-only; an imported API is deleted
// only by removing or re-importing its service's specification.
func addAPIKind(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindAPI, Singular: "api", Bundled: true, Exported: true,
		Canonical: resource.SpecCodec[model.APISpec],
		Refs: []resource.Ref{
			{Field: "service_id", Kind: model.KindService, OnDelete: resource.Cascade,
				IDs: specIDs(func(s *model.APISpec) []string { return []string{s.ServiceID} })},
			{Field: "policy_id", Kind: model.KindPolicy, OnDelete: resource.Restrict,
				IDs: specIDs(func(s *model.APISpec) []string { return []string{s.PolicyID} })},
		},
		API: &kindAPI{
			param: "api", readOnly: []string{"operation_id", "imported"}, current: typedCurrent(apiRepo, renderAPI),
			list: (*Server).listAPIs, create: (*Server).createAPI, get: (*Server).getAPI, put: (*Server).updateAPI,
			deletable: func(_ context.Context, _ store.Tx, o *store.Object) error {
				var spec model.APISpec
				if err := json.Unmarshal(o.Spec, &spec); err != nil {
					return fmt.Errorf("decode API %q: %w", o.ID, err)
				}
				if spec.Imported {
					return errSpecificationOwnsAPIs(spec.ServiceID, fmt.Sprintf("API %q cannot be deleted on its own", o.ID))
				}
				return nil
			},
			importItem: importOf(configAPIObject), nameField: "path",
		},
	})
	api := apiOf(sch.MustKind(model.KindAPI))
	api.export = func(o *store.Object) (any, error) { return exportItem(api, o, renderAPI, "operation_id", "imported") }
	api.importCheck = func(want []*configObject, stored configState, _ bool) *Error {
		for _, o := range want {
			if cur := stored[o.obj.ID]; cur != nil && cur.ParentID != o.obj.ParentID {
				return fieldError(o.field+".service_id", "cannot be changed (API %q belongs to service %q); give the API in the other service another id",
					o.obj.ID, cur.ParentID)
			}
		}
		return nil
	}
}

// validate checks the fields that do not depend on stored state. On create
// service_id, method and path are required.
func (r *apiBody) validate(tid string, create bool) *Error {
	var errs []*Error
	if create {
		for _, f := range []struct{ name, v string }{{"service_id", r.ServiceID}, {"method", r.Method}, {"path", r.Path}} {
			if f.v == "" {
				errs = append(errs, missingField(f.name))
			}
		}
	}
	if r.ServiceID != "" && !model.ValidObjectID(r.ServiceID) {
		errs = append(errs, fieldError("service_id", "invalid id (%s)", model.ObjectIDRule))
	}
	if r.Method != "" || r.Path != "" {
		if _, err := parseRoute(cmp.Or(r.Method, "*"), cmp.Or(r.Path, "/")); err != nil {
			errs = append(errs, err)
		}
	}
	if r.PolicyID != "" && !model.ValidObjectID(r.PolicyID) {
		errs = append(errs, fieldError("policy_id", "invalid id (%s)", model.ObjectIDRule))
	}
	if r.Public && r.PolicyID != "" {
		// Every enforcement point must agree on what is public: Envoy skips
		// the authorizer on public routes, so a policy there would never run.
		e := fieldError("public", "cannot be true together with policy_id (%q): a public API is served without any policy; "+
			"remove policy_id, or set public to false to enforce the policy", r.PolicyID)
		e.Details["fields"] = []string{"public", "policy_id"}
		return e
	}
	if r.CanHavePolicy != nil && !*r.CanHavePolicy && r.PolicyID != "" {
		errs = append(errs, fieldError("policy_id", "cannot be set when can_have_policy is false"))
	}
	if r.Position != nil && *r.Position < 0 {
		errs = append(errs, fieldError("position", "must be 0 or greater"))
	}
	return collect(append(errs,
		validateDataClassifications(r.DataClassifications),
		tenantMatch(r.TenantID, tid),
		validateClaimsToHeaders(r.ClaimsToHeaders),
		validateLabels(r.Labels),
	)...)
}

var (
	claimPathPattern  = regexp.MustCompile(`^[A-Za-z0-9_:/$@-]+(\.[A-Za-z0-9_:/$@-]+)*$`)
	headerNamePattern = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
	reservedHeaders   = map[string]bool{"host": true, "authorization": true, "connection": true, "content-length": true,
		"transfer-encoding": true, "te": true, "upgrade": true, "keep-alive": true, "proxy-authorization": true}
)

// validateClaimsToHeaders: claim paths (dotted) to valid, non-reserved
// header names, at most 32.
func validateClaimsToHeaders(m map[string]string) *Error {
	if len(m) > 32 {
		return fieldError("claims_to_headers", "at most 32 entries are allowed")
	}
	seen := map[string]bool{}
	for claim, header := range m {
		field := "claims_to_headers." + claim
		if len(claim) > 256 || !claimPathPattern.MatchString(claim) {
			return fieldError(field, "the claim must be a dotted path of claim names")
		}
		h := strings.ToLower(header)
		if !headerNamePattern.MatchString(header) || reservedHeaders[h] {
			return fieldError(field, "%q is not a header name that can be set on the upstream request", header)
		}
		if seen[h] {
			return fieldError(field, "header %q is set twice", header)
		}
		seen[h] = true
	}
	return nil
}

func validateDataClassifications(dcs []string) *Error {
	if len(dcs) > maxDataClassifications {
		return fieldError("data_classifications", "at most %d data classifications are allowed", maxDataClassifications)
	}
	for i, dc := range dcs {
		field := fmt.Sprintf("data_classifications[%d]", i)
		if n := utf8.RuneCountInString(dc); n < 1 || n > maxDataClassificationChars || !utf8.ValidString(dc) {
			return fieldError(field, "must be 1-%d characters of valid UTF-8", maxDataClassificationChars)
		}
		if slices.Contains(dcs[:i], dc) {
			return fieldError(field, "duplicate data classification %q", dc)
		}
	}
	return nil
}

// checkRouteFree fails with 409 already_exists when another API of the
// service has the same method and an equivalent path.
func checkRouteFree(ctx context.Context, rd store.Reader, tid, selfID string, route routing.Endpoint, serviceID string) error {
	o, err := rd.GetByName(ctx, model.KindAPI, tid, route.Name(serviceID))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.ID == selfID {
		return nil
	}
	other, err := apiRepo.Get(ctx, rd, tid, o.ID)
	if err != nil {
		return err
	}
	return newError(http.StatusConflict, httpapi.CodeAlreadyExists,
		fmt.Sprintf("API %q of service %q already has method %s and path %s (equivalent to %s)",
			other.Meta.ID, serviceID, other.Spec.Method, other.Spec.Path, route.Template.Raw),
		map[string]any{"kind": "api", "id": other.Meta.ID, "method": other.Spec.Method, "path": other.Spec.Path})
}

// takeoverScope says which route takeovers a write caused: those involving
// these APIs, APIs of these services, or these gateways; all counts every
// one (a configuration import replaces everything).
type takeoverScope struct {
	apis, services, gateways map[string]bool
	all                      bool
}

func (sc takeoverScope) covers(rc policies.RouteConflict) bool {
	return sc.all || rc.Involves(sc.apis, sc.services) || sc.gateways[rc.GatewayID]
}

// checkRouteTakeover fails with 409 conflict when a write made an API of one
// service take over (or be taken over by) an equivalent route of another
// service served by the same gateway on a shared host
// (policies.RouteConflicts). It reads the configuration in rd (the write's
// transaction); pending, when not nil, applies a change not yet written.
// Only conflicts the write caused count (scope); the message names the API
// that was there (the one not being written, when one is).
func checkRouteTakeover(ctx context.Context, rd store.Reader, tid string, scope takeoverScope, pending func(*policies.Config)) error {
	cfg, err := bundles.LoadConfig(ctx, rd, tid)
	if err != nil {
		return err
	}
	if pending != nil {
		pending(cfg)
	}
	for _, rc := range cfg.RouteConflicts() {
		if !scope.covers(rc) {
			continue
		}
		existing, other := rc.A, rc.B
		if scope.apis[existing.ID] || (scope.services[existing.Spec.ServiceID] && !scope.services[other.Spec.ServiceID]) {
			existing, other = other, existing
		}
		return newError(http.StatusConflict, httpapi.CodeConflict,
			fmt.Sprintf("API %q of service %q (%s %s) already serves these requests on host %s of gateway %q; "+
				"API %q of service %q (%s %s) would take them over (or lose them): change the path, the method or the hosts, "+
				"or serve the services through different gateways",
				existing.ID, existing.Spec.ServiceID, existing.Spec.Method, existing.Spec.Path, rc.Domain, rc.GatewayID,
				other.ID, other.Spec.ServiceID, other.Spec.Method, other.Spec.Path),
			map[string]any{"kind": "api", "id": existing.ID, "service_id": existing.Spec.ServiceID, "method": existing.Spec.Method,
				"path": existing.Spec.Path, "gateway_id": rc.GatewayID, "host": rc.Domain, "conflicting_api_id": other.ID})
	}
	return nil
}

// errSpecificationOwnsAPIs is the 409 for hand-editing the API list of a
// service whose APIs come from an OpenAPI import.
func errSpecificationOwnsAPIs(serviceID, what string) *Error {
	return newError(http.StatusConflict, httpapi.CodeConflict,
		fmt.Sprintf("%s: the APIs of service %q are imported from an OpenAPI specification; "+
			"re-import the specification, or remove it (DELETE /services/%s/apis) to manage APIs by hand", what, serviceID, serviceID),
		map[string]any{"service_id": serviceID})
}

func (s *Server) createAPI(c *gin.Context) {
	tid := tenantID(c)
	var req apiBody
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	id, apiErr := newObjectID("id", req.ID)
	if apiErr == nil {
		apiErr = req.validate(tid, true)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	route, _ := parseRoute(req.Method, req.Path)
	t := &store.Typed[model.APISpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: route.Name(req.ServiceID), ParentID: req.ServiceID, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: model.APISpec{
			ServiceID: req.ServiceID, Method: route.Method, Path: route.Template.Raw, PolicyID: req.PolicyID,
			CanHavePolicy: req.CanHavePolicy == nil || *req.CanHavePolicy, DataClassifications: req.DataClassifications,
			Public: req.Public, Position: derefOr(req.Position, 0), ClaimsToHeaders: req.ClaimsToHeaders,
		},
	}
	ok := s.write(c, "api", id, func(ctx context.Context, tx store.Tx) error {
		svc, err := serviceRef(ctx, tx, tid, "service_id", req.ServiceID)
		if err != nil {
			return err
		}
		if svc.Spec.WithSpecification {
			return errSpecificationOwnsAPIs(svc.Meta.ID, "cannot create an API")
		}
		if err := checkReferencesOf(ctx, s, tx, model.KindAPI, t); err != nil {
			return err
		}
		if err := checkRouteFree(ctx, tx, tid, id, route, req.ServiceID); err != nil {
			return err
		}
		if err := apiRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		if err := checkRouteTakeover(ctx, tx, tid, takeoverScope{apis: map[string]bool{id: true}}, nil); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "create", model.KindAPI, id)
	})
	if ok {
		respondObject(c, http.StatusCreated, t.Meta.Revision, renderAPI(t))
	}
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func (s *Server) getAPI(c *gin.Context) {
	id, apiErr := objectIDParam(c, "api")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, err := apiRepo.Get(c.Request.Context(), s.store, tenantID(c), id)
	if err != nil {
		fail(c, err, "api", id)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, renderAPI(t))
}

func (s *Server) updateAPI(c *gin.Context) {
	tid := tenantID(c)
	id, expect, ok := pathIDAndIfMatch(c, "api")
	if !ok {
		return
	}
	var req apiBody
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID != "" && req.ID != id {
		abort(c, fieldError("id", "does not match the id in the path; ids cannot be changed"))
		return
	}
	if apiErr := req.validate(tid, false); apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[model.APISpec]
	ok = s.write(c, "api", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = apiRepo.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		spec, apiErr := req.merge(t.Spec)
		if apiErr != nil {
			return apiErr
		}
		if err := checkReferencesOf(ctx, s, tx, model.KindAPI, &store.Typed[model.APISpec]{Meta: t.Meta, Spec: spec}); err != nil {
			return err
		}
		route, _ := parseRoute(spec.Method, spec.Path)
		if err := checkRouteFree(ctx, tx, tid, id, route, spec.ServiceID); err != nil {
			return err
		}
		t.Meta.Name, t.Meta.Labels, t.Meta.UpdatedBy = route.Name(spec.ServiceID), req.Labels, actor(c)
		t.Spec = spec
		if err := apiRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		if err := checkRouteTakeover(ctx, tx, tid, takeoverScope{apis: map[string]bool{id: true}}, nil); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindAPI, id)
	})
	if ok {
		respondObject(c, http.StatusOK, t.Meta.Revision, renderAPI(t))
	}
}

// merge turns a PUT request into the API's new spec. The service cannot
// change; neither can the route or position of an imported API.
func (r *apiBody) merge(cur model.APISpec) (model.APISpec, *Error) {
	next := cur
	if r.ServiceID != "" && r.ServiceID != cur.ServiceID {
		return cur, fieldError("service_id", "cannot be changed (the API belongs to service %q); create the API in the other service instead", cur.ServiceID)
	}
	// PUT replaces the spec: the route is required, omitted fields take
	// their defaults (PATCH changes some fields only).
	if r.Method == "" {
		return cur, missingField("method")
	}
	if r.Path == "" {
		return cur, missingField("path")
	}
	route, apiErr := parseRoute(r.Method, r.Path)
	if apiErr != nil {
		return cur, apiErr
	}
	next.Method, next.Path = route.Method, route.Template.Raw
	next.Position = derefOr(r.Position, 0)
	if cur.Imported {
		for _, f := range []struct {
			name    string
			changed bool
		}{{"method", next.Method != cur.Method}, {"path", next.Path != cur.Path}, {"position", next.Position != cur.Position}} {
			if f.changed {
				return cur, fieldError(f.name, "is set by the OpenAPI import and cannot be changed; re-import the specification instead")
			}
		}
	}
	next.CanHavePolicy = derefOr(r.CanHavePolicy, true)
	next.PolicyID, next.DataClassifications, next.Public = r.PolicyID, r.DataClassifications, r.Public
	next.ClaimsToHeaders = r.ClaimsToHeaders
	if !next.CanHavePolicy && next.PolicyID != "" {
		return cur, fieldError("policy_id", "cannot be set: the API has can_have_policy false")
	}
	return next, nil
}

// deleteAPI deletes one API and records the audit event.
func deleteAPI(ctx context.Context, tx store.Tx, c *gin.Context, tid, id string, expect int64) error {
	if _, err := apiRepo.Delete(ctx, tx, tid, id, expect); err != nil {
		return err
	}
	return record(ctx, tx, c, tid, "delete", model.KindAPI, id)
}

// serviceAPIs returns every API of a service.
func serviceAPIs(ctx context.Context, rd store.Reader, tid, sid string) ([]*store.Typed[model.APISpec], error) {
	return apiRepo.ListAll(ctx, rd, store.Query{TenantID: tid, ParentID: sid})
}

// apiFilter selects APIs in the list endpoints.
type apiFilter struct {
	serviceID, policyID string
	// classifications: APIs having all of them.
	classifications []string
	// unclassified: APIs having none.
	unclassified bool
}

// parseAPIFilter reads data_classification (repeatable, comma-separated),
// without_data_classifications and, on the tenant-wide list, service_id and
// policy_id.
func parseAPIFilter(c *gin.Context, tenantWide bool) (apiFilter, *Error) {
	var f apiFilter
	for _, v := range c.QueryArray("data_classification") {
		for _, dc := range strings.Split(v, ",") {
			if dc = strings.TrimSpace(dc); dc != "" && !slices.Contains(f.classifications, dc) {
				f.classifications = append(f.classifications, dc)
			}
		}
	}
	var apiErr *Error
	if f.unclassified, apiErr = boolQuery(c, "without_data_classifications"); apiErr != nil {
		return f, apiErr
	}
	if f.unclassified && len(f.classifications) > 0 {
		return f, fieldError("without_data_classifications", "cannot be combined with data_classification")
	}
	if !tenantWide {
		return f, nil
	}
	for _, q := range []struct {
		name string
		dst  *string
	}{{"service_id", &f.serviceID}, {"policy_id", &f.policyID}} {
		if v, ok := c.GetQuery(q.name); ok {
			if !model.ValidObjectID(v) {
				return f, fieldError(q.name, "invalid id (%s)", model.ObjectIDRule)
			}
			*q.dst = v
		}
	}
	return f, nil
}

func (f apiFilter) match(t *store.Typed[model.APISpec]) bool {
	switch {
	case f.serviceID != "" && t.Spec.ServiceID != f.serviceID,
		f.policyID != "" && t.Spec.PolicyID != f.policyID,
		f.unclassified && len(t.Spec.DataClassifications) > 0:
		return false
	}
	for _, dc := range f.classifications {
		if !slices.Contains(t.Spec.DataClassifications, dc) {
			return false
		}
	}
	return true
}

// apiListKey orders API lists: by service, then position, then routing
// priority (most specific path first, an exact method before "*"), then id.
// It doubles as the paging cursor, so pages stay stable under concurrent
// writes.
type apiListKey struct {
	Service  string `json:"s"`
	Position int    `json:"p"`
	Priority string `json:"k"`
	AnyVerb  bool   `json:"a"`
	Method   string `json:"m"`
	ID       string `json:"i"`
}

func listKeyOf(t *store.Typed[model.APISpec]) apiListKey {
	k := apiListKey{Service: t.Spec.ServiceID, Position: t.Spec.Position, AnyVerb: t.Spec.Method == "*", Method: t.Spec.Method, ID: t.Meta.ID}
	if tpl, err := routing.ParseTemplate(t.Spec.Path); err == nil {
		k.Priority = tpl.SpecificityKey()
	}
	return k
}

func (a apiListKey) compare(b apiListKey) int {
	if c := cmp.Compare(a.Service, b.Service); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Position, b.Position); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 { // greater key first
		return c
	}
	if a.AnyVerb != b.AnyVerb {
		if a.AnyVerb {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.Method, b.Method); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

func (a apiListKey) cursor() string {
	b, _ := json.Marshal(a)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseAPICursor(s string) (apiListKey, *Error) {
	var k apiListKey
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &k)
	}
	if err != nil || k.ID == "" {
		return k, fieldError("after", "not a cursor returned by this listing")
	}
	return k, nil
}

// respondAPIList filters, orders and pages APIs, and writes
// {"apis","total","next"}.
func respondAPIList(c *gin.Context, all []*store.Typed[model.APISpec], f apiFilter) {
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	type keyed struct {
		key apiListKey
		api *store.Typed[model.APISpec]
	}
	items := make([]keyed, 0, len(all))
	for _, t := range all {
		if f.match(t) {
			items = append(items, keyed{listKeyOf(t), t})
		}
	}
	slices.SortFunc(items, func(a, b keyed) int { return a.key.compare(b.key) })
	total := len(items)
	if after != "" {
		from, apiErr := parseAPICursor(after)
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		i, _ := slices.BinarySearchFunc(items, from, func(it keyed, k apiListKey) int { return it.key.compare(k) })
		for i < len(items) && items[i].key.compare(from) <= 0 {
			i++
		}
		items = items[i:]
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].key.cursor()
	}
	out := make([]apiBody, 0, len(items))
	for _, it := range items {
		out = append(out, renderAPI(it.api))
	}
	c.JSON(http.StatusOK, gin.H{"apis": out, "total": total, "next": next})
}

// listAPIs lists the tenant's APIs, optionally of one service or bound to
// one policy, in the order of apiListKey.
func (s *Server) listAPIs(c *gin.Context) {
	f, apiErr := parseAPIFilter(c, true)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	apis, err := apiRepo.ListAll(c.Request.Context(), s.store, store.Query{TenantID: tenantID(c), ParentID: f.serviceID})
	if err != nil {
		fail(c, err, "api", "")
		return
	}
	respondAPIList(c, apis, f)
}
