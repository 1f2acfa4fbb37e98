package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/routing"
	"github.com/gatehouse-dev/gatehouse/store"
)

var serviceRepo = store.Repo[model.ServiceSpec]{Kind: model.KindService}

// Limits on service fields.
const (
	maxServiceURLLength = 2048
	maxServiceHosts     = 100
)

// serviceBody is a service on the wire (seed 003 Service): the body of
// create and PUT and what GET returns (GET adds the scopes bound to it).
// tenant_id, with_specification and metadata are read-only.
type serviceBody struct {
	ID          string   `json:"id"`
	TenantID    string   `json:"tenant_id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	URL         string   `json:"url"`
	Hosts       []string `json:"hosts"`
	ServerID    string   `json:"server_id,omitempty"`
	// AuthorizationServerID is the seed's name of server_id, accepted in
	// request bodies (never rendered).
	AuthorizationServerID string              `json:"authorization_server_id,omitempty"`
	WithSpecification     *bool               `json:"with_specification"`
	CORS                  *model.CORSSettings `json:"cors,omitempty"`
	Labels                map[string]string   `json:"labels"`
	Metadata              *Metadata           `json:"metadata,omitempty"`
}

// serviceWithScopes is GET /services/{sid} (seed ServiceWithScopesResponse).
type serviceWithScopes struct {
	serviceBody
	Scopes []scopeBody `json:"scopes"`
}

// removeSpecificationResult is the answer of DELETE /services/{sid}/apis
// (seed RemoveServiceConfigurationResult). Imports create no policies, so
// the policy lists are always empty.
type removeSpecificationResult struct {
	RemovedAPIs        []apiBody `json:"removed_apis"`
	RemovedPolicies    []any     `json:"removed_policies"`
	NotRemovedPolicies []any     `json:"not_removed_policies"`
}

func renderService(t *store.Typed[model.ServiceSpec]) serviceBody {
	hosts := t.Spec.Hosts
	if hosts == nil {
		hosts = []string{}
	}
	return serviceBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description,
		URL: t.Spec.URL, Hosts: hosts, ServerID: t.Spec.ServerID, WithSpecification: &t.Spec.WithSpecification, CORS: t.Spec.CORS,
		Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// addServiceKind registers services: the upstreams gateways protect.
// Deleting one deletes its APIs, and is refused while gateways list it or
// scopes are bound to it. with_specification and scopes (GET's list of
// the scopes bound to it) are read-only.
func addServiceKind(sch *resource.Scheme) {
	sch.MustRegister(&resource.Kind{
		Name: model.KindService, Singular: "service", Bundled: true, Exported: true,
		Canonical: resource.SpecCodec[model.ServiceSpec],
		Refs: []resource.Ref{{Field: "server_id", Kind: model.KindServer, OnDelete: resource.Restrict,
			IDs: specIDs(func(s *model.ServiceSpec) []string { return []string{s.ServerID} })}},
		API: &kindAPI{
			param: "sid", readOnly: []string{"with_specification", "scopes"}, current: serviceCurrent,
			list: (*Server).listServices, create: (*Server).createService, get: (*Server).getService, put: (*Server).updateService,
			routes:     (*Server).serviceRoutes,
			importItem: importOf(configServiceObject), nameField: "name",
		},
	})
	api := apiOf(sch.MustKind(model.KindService))
	api.export = func(o *store.Object) (any, error) { return exportItem(api, o, renderService, "with_specification") }
}

func (s *Server) serviceRoutes(_, adm *gin.RouterGroup) {
	adm.GET("/services/:sid/apis", s.listServiceAPIs)
	adm.DELETE("/services/:sid/apis", s.removeSpecification)
	adm.POST("/services/:sid/apis/import/file", s.importFromFile)
	adm.POST("/services/:sid/apis/import/text", s.importFromText)
	adm.POST("/services/:sid/apis/import/url", s.importFromURL)
}

// validate checks the request and returns the normalised hosts; the
// server binding is resolved into server_id (serverIDErrors).
func (r *serviceBody) validate(tid string) ([]string, *Error) {
	hosts, hostErr := normalizeHosts(r.Hosts)
	return hosts, collect(
		validateText("name", r.Name, true, 256),
		validateText("description", r.Description, false, 4096),
		validateServiceURL(r.URL),
		hostErr,
		fieldErrors(serverIDErrors(&r.ServerID, &r.AuthorizationServerID, tid)),
		fieldErrors(r.CORS.Validate(field.NewPath("cors"))),
		tenantMatch(r.TenantID, tid),
		validateLabels(r.Labels),
	)
}

// validateServiceURL: an absolute http(s) URL with a host, without
// credentials, query or fragment (the gateway appends request paths to it).
func validateServiceURL(raw string) *Error {
	if strings.TrimSpace(raw) == "" {
		return missingField("url")
	}
	if len(raw) > maxServiceURLLength {
		return fieldError("url", "must be at most %d characters", maxServiceURLLength)
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return fieldError("url", "must not contain whitespace")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fieldError("url", "not a valid URL: %s", errors.Unwrap(err))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fieldError("url", "must be an absolute http or https URL, got %q", raw)
	case u.Opaque != "" || u.Hostname() == "":
		return fieldError("url", "must have a host, like https://pets.internal:8443")
	case u.User != nil:
		return fieldError("url", "must not contain user information")
	case u.RawQuery != "" || u.ForceQuery:
		return fieldError("url", "must not have a query")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fieldError("url", "must not have a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fieldError("url", "port must be between 1 and 65535")
		}
	}
	return nil
}

// normalizeHosts validates service hosts and returns their normalised form.
func normalizeHosts(hosts []string) ([]string, *Error) {
	if len(hosts) > maxServiceHosts {
		return nil, fieldError("hosts", "at most %d hosts are allowed", maxServiceHosts)
	}
	if len(hosts) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(hosts))
	for i, h := range hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		d, err := routing.ValidateDomain(h)
		if err != nil {
			return nil, fieldError(field, "%s", err.Error())
		}
		if slices.Contains(out, d) {
			return nil, fieldError(field, "duplicate host %q", d)
		}
		out = append(out, d)
	}
	return out, nil
}

// pathIDAndIfMatch reads the object id path parameter and the If-Match
// revision of a write; on a bad value it answers 400 and reports false.
func pathIDAndIfMatch(c *gin.Context, param string) (string, int64, bool) {
	id, apiErr := objectIDParam(c, param)
	var expect int64
	if apiErr == nil {
		expect, apiErr = ifMatch(c)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return "", 0, false
	}
	return id, expect, true
}

// serviceRef loads the service a request field names; a missing service is
// a 400 naming the field.
func serviceRef(ctx context.Context, rd store.Reader, tid, field, id string) (*store.Typed[model.ServiceSpec], error) {
	t, err := serviceRepo.Get(ctx, rd, tid, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unknownReference(field, "service", id)
	}
	return t, err
}

func (s *Server) listServices(c *gin.Context) {
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	items, pg, err := serviceRepo.List(c.Request.Context(), s.store, store.Query{TenantID: tenantID(c), Limit: limit, After: after})
	if err != nil {
		abort(c, cursorError(err, "service"))
		return
	}
	out := make([]serviceBody, 0, len(items))
	for _, t := range items {
		out = append(out, renderService(t))
	}
	c.JSON(http.StatusOK, gin.H{"services": out, "total": pg.Total, "next": pg.Next})
}

func (s *Server) createService(c *gin.Context) {
	tid := tenantID(c)
	var req serviceBody
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	id, apiErr := newObjectID("id", req.ID)
	var hosts []string
	if apiErr == nil {
		hosts, apiErr = req.validate(tid)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t := &store.Typed[model.ServiceSpec]{
		Meta: store.Object{TenantID: tid, ID: id, Name: req.Name, Description: req.Description, Labels: req.Labels, CreatedBy: actor(c)},
		Spec: model.ServiceSpec{URL: req.URL, Hosts: hosts, ServerID: req.ServerID, CORS: req.CORS},
	}
	ok := s.write(c, "service", id, func(ctx context.Context, tx store.Tx) error {
		if err := checkReferencesOf(ctx, s, tx, model.KindService, t); err != nil {
			return err
		}
		if err := serviceRepo.Create(ctx, tx, t); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "create", model.KindService, id)
	})
	if ok {
		respondObject(c, http.StatusCreated, t.Meta.Revision, renderService(t))
	}
}

// getService answers the service with the scopes bound to it.
func (s *Server) getService(c *gin.Context) {
	id, apiErr := objectIDParam(c, "sid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	out, rev, err := serviceCurrent(s, c, tenantID(c), id)
	if err != nil {
		fail(c, err, "service", id)
		return
	}
	respondObject(c, http.StatusOK, rev, out)
}

// serviceCurrent renders a service as GET does, with its scopes.
func serviceCurrent(s *Server, c *gin.Context, tid, id string) (any, int64, error) {
	var (
		t      *store.Typed[model.ServiceSpec]
		scopes []*store.Typed[model.ScopeSpec]
	)
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		var err error
		if t, err = serviceRepo.Get(ctx, rd, tid, id); err != nil {
			return err
		}
		scopes, err = serviceScopes(ctx, rd, tid, id)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	out := serviceWithScopes{serviceBody: renderService(t), Scopes: make([]scopeBody, 0, len(scopes))}
	for _, sc := range scopes {
		out.Scopes = append(out.Scopes, renderScope(sc))
	}
	return out, t.Meta.Revision, nil
}

// serviceScopes lists the scopes bound to a service.
func serviceScopes(ctx context.Context, rd store.Reader, tid, sid string) ([]*store.Typed[model.ScopeSpec], error) {
	all, err := scopeRepo.ListAll(ctx, rd, store.Query{TenantID: tid})
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(t *store.Typed[model.ScopeSpec]) bool { return t.Spec.ServiceID != sid }), nil
}

func (s *Server) updateService(c *gin.Context) {
	tid := tenantID(c)
	id, expect, ok := pathIDAndIfMatch(c, "sid")
	if !ok {
		return
	}
	var req serviceBody
	if apiErr := decodeJSON(c, &req); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if req.ID != "" && req.ID != id {
		abort(c, fieldError("id", "does not match the id in the path; ids cannot be changed"))
		return
	}
	hosts, apiErr := req.validate(tid)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[model.ServiceSpec]
	ok = s.write(c, "service", id, func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = serviceRepo.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		t.Meta.Name, t.Meta.Description, t.Meta.Labels, t.Meta.UpdatedBy = req.Name, req.Description, req.Labels, actor(c)
		t.Spec = model.ServiceSpec{URL: req.URL, Hosts: hosts, ServerID: req.ServerID, WithSpecification: t.Spec.WithSpecification, CORS: req.CORS}
		if err := checkReferencesOf(ctx, s, tx, model.KindService, t); err != nil {
			return err
		}
		if err := serviceRepo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		if err := checkRouteTakeover(ctx, tx, tid, takeoverScope{services: map[string]bool{id: true}}, nil); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindService, id)
	})
	if ok {
		// The answer is what GET now returns (with the service's scopes).
		out, rev, err := serviceCurrent(s, c, tid, id)
		if err != nil {
			fail(c, err, "service", id)
			return
		}
		respondObject(c, http.StatusOK, rev, out)
	}
}

// deleteServiceAPIs deletes every API of a service, recording an audit
// event for each, and returns them as they were.
func deleteServiceAPIs(ctx context.Context, tx store.Tx, c *gin.Context, tid, sid string) ([]*store.Typed[model.APISpec], error) {
	apis, err := serviceAPIs(ctx, tx, tid, sid)
	if err != nil {
		return nil, err
	}
	for _, a := range apis {
		if err := deleteAPI(ctx, tx, c, tid, a.Meta.ID, 0); err != nil {
			return nil, err
		}
	}
	return apis, nil
}

// listServiceAPIs lists a service's APIs in position order (see sortAPIs).
func (s *Server) listServiceAPIs(c *gin.Context) {
	tid := tenantID(c)
	sid, apiErr := objectIDParam(c, "sid")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	f, apiErr := parseAPIFilter(c, false)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	f.serviceID = sid
	var apis []*store.Typed[model.APISpec]
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		if _, err := serviceRepo.Get(ctx, rd, tid, sid); err != nil {
			return err
		}
		var err error
		apis, err = serviceAPIs(ctx, rd, tid, sid)
		return err
	})
	if err != nil {
		fail(c, err, "service", sid)
		return
	}
	respondAPIList(c, apis, f)
}

// removeSpecification (seed removeSpecification) deletes all the service's
// APIs in one transaction and clears with_specification.
func (s *Server) removeSpecification(c *gin.Context) {
	tid := tenantID(c)
	sid, expect, ok := pathIDAndIfMatch(c, "sid")
	if !ok {
		return
	}
	var removed []*store.Typed[model.APISpec]
	ok = s.write(c, "service", sid, func(ctx context.Context, tx store.Tx) error {
		svc, err := serviceRepo.Get(ctx, tx, tid, sid)
		if err != nil {
			return err
		}
		if err := checkRevision(&svc.Meta, expect); err != nil {
			return err
		}
		if removed, err = deleteServiceAPIs(ctx, tx, c, tid, sid); err != nil {
			return err
		}
		if !svc.Spec.WithSpecification {
			return nil
		}
		svc.Spec.WithSpecification = false
		svc.Meta.UpdatedBy = actor(c)
		if err := serviceRepo.Update(ctx, tx, svc, 0); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", model.KindService, sid)
	})
	if ok {
		c.JSON(http.StatusOK, removeSpecificationResult{RemovedAPIs: renderAPIs(removed), RemovedPolicies: []any{}, NotRemovedPolicies: []any{}})
	}
}
