package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
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

// The exported document is {"version":1,"tenant":{…}, then one list per
// exported kind of the scheme, in its dependency order}. Objects carry the
// fields of their resource's request body, without read-only envelope
// fields and without secrets (gateway credentials and signing keys stay
// behind). Lists are sorted by id, so one configuration always exports
// the same bytes.

// configTenant: the document's tenant. On import its id may differ from the
// target (that is how a configuration is copied) and its status is ignored.
// Its directory settings (tenants.go) are the tenant's: provider_id names
// an identity provider of the document (provider_scope organization) or a
// system-wide one (global); the identity providers' importResolve checks
// that it resolves.
type configTenant struct {
	ID                            string                     `json:"id"`
	Name                          string                     `json:"name"`
	Description                   string                     `json:"description"`
	Status                        model.TenantStatus         `json:"status"`
	Labels                        map[string]string          `json:"labels"`
	AuthenticationContextSettings *model.AuthContextSettings `json:"authentication_context_settings,omitempty"`
	tenantDirectoryFields
}

// configImportResult counts what an import did (or, dry_run, would do),
// per kind, and lists each change.
type configImportResult struct {
	deletedGateways []string
	Created         map[string]int `json:"created"`
	Updated         map[string]int `json:"updated"`
	Deleted         map[string]int `json:"deleted"`
	Unchanged       map[string]int `json:"unchanged"`
	// Changes are the objects created, updated or deleted, in the order
	// written (deletes first), the tenant included.
	Changes []configChange `json:"changes"`
	// DryRun: nothing was written (?dry_run=true).
	DryRun bool `json:"dry_run"`
	// BaseETag is the ETag of the configuration the import was computed
	// against (what If-Match must carry to apply exactly this plan); ETag
	// is the configuration's after it (a dry run: would be).
	BaseETag string `json:"base_etag"`
	ETag     string `json:"etag"`
}

// configChange is one object an import creates, updates or deletes.
// Fields, for an update, are the document fields whose value changes.
type configChange struct {
	Kind   string   `json:"kind"`
	ID     string   `json:"id"`
	Action string   `json:"action"`
	Fields []string `json:"fields,omitempty"`
}

// configETag is the entity tag of an exported document: a hash of its
// bytes, which are a function of the configuration (lists sorted by id,
// no envelope fields), so it changes exactly when an export would.
func configETag(doc []byte) string {
	sum := sha256.Sum256(doc)
	return `"cfg-` + hex.EncodeToString(sum[:16]) + `"`
}

// configIfMatch reads If-Match of an import: "" when absent or "*", else
// the ETag of an export.
func configIfMatch(c *gin.Context) (string, *Error) {
	v := strings.TrimSpace(c.GetHeader("If-Match"))
	if v == "" || v == "*" {
		return "", nil
	}
	if !strings.HasPrefix(v, `"cfg-`) || !strings.HasSuffix(v, `"`) || strings.Contains(v, ",") {
		return "", newError(http.StatusBadRequest, httpapi.CodeInvalidHeader,
			`If-Match must be the ETag of an export of the configuration (such as "cfg-…")`, map[string]any{"header": "If-Match"})
	}
	return v, nil
}

// errDryRun rolls back the transaction of a dry-run import.
var errDryRun = errors.New("dry run")

// configKind describes one kind of the document. configKindsOf is in write
// order (what is referenced first); deletes run in reverse, so APIs, scopes
// and gateways go before the services and policies they name.
type configKind struct {
	kind string
	// key is the kind's list in the document (and its name in an
	// import's counts and changes): the kind's name with "_" for "-"
	// ("service_accounts"), as JSON members are named.
	key string
	// what names the kind in messages; nameField is the document field
	// that holds the unique envelope name (an API's is its route).
	what, nameField string
	// canonical re-encodes a stored spec as the current code writes it,
	// so unchanged objects are recognised whatever the backend's JSON.
	canonical func(json.RawMessage) ([]byte, error)
	api       *kindAPI
}

// configKindsOf is the document's kinds: the scheme's exported kinds in
// dependency order.
func configKindsOf(sch *resource.Scheme) []configKind {
	var out []configKind
	for _, k := range sch.Exported() {
		api := apiOf(k)
		out = append(out, configKind{kind: k.Name, key: strings.ReplaceAll(k.Name, "-", "_"), what: k.Singular, nameField: api.nameField,
			canonical: k.Canonical, api: api})
	}
	return out
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
	kinds   []configKind
	tenant  configTenant
	objects map[string][]*configObject // by kind, in document order
}

func (s *Server) configurationRoutes(sys, adm *gin.RouterGroup) {
	sys.GET("/configuration", withConfigTenant(configTenantQuery, s.exportConfiguration))
	sys.PUT("/configuration", withConfigTenant(configTenantQuery, s.importConfiguration))
	// The same for a tenant's own admins (a tenant-bound credential
	// manages its tenant's objects anyway): GitOps without a system token.
	adm.GET("/configuration", withConfigTenant(configTenantPath, s.exportConfiguration))
	adm.PUT("/configuration", withConfigTenant(configTenantPath, s.importConfiguration))
}

// withConfigTenant is a configuration handler for the tenant tenantOf
// names.
func withConfigTenant(tenantOf func(*gin.Context) (string, *Error), h func(*gin.Context, string)) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid, apiErr := tenantOf(c)
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		h(c, tid)
	}
}

// configTenantPath is the tenant of /api/admin/{tid}/configuration; a tid
// query parameter there is refused (the path names the tenant).
func configTenantPath(c *gin.Context) (string, *Error) {
	if _, ok := c.GetQuery("tid"); ok {
		return "", fieldError("tid", "is the path's tenant on /api/admin/{tid}/configuration; leave the query parameter out")
	}
	return tenantID(c), nil
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

func (s *Server) exportConfiguration(c *gin.Context, tid string) {
	var doc json.RawMessage
	err := s.store.View(c.Request.Context(), func(ctx context.Context, rd store.Reader) error {
		var err error
		doc, err = s.readConfiguration(ctx, rd, tid)
		return err
	})
	if err != nil {
		fail(c, err, "tenant", tid)
		return
	}
	tag := configETag(doc)
	c.Header("ETag", tag)
	for _, v := range strings.Split(c.GetHeader("If-None-Match"), ",") {
		if v = strings.TrimSpace(v); v == tag || v == "*" {
			c.Status(http.StatusNotModified)
			return
		}
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", doc)
}

// readConfiguration reads a tenant's configuration document. Lists come
// from the store ordered by id.
func (s *Server) readConfiguration(ctx context.Context, rd store.Reader, tid string) (json.RawMessage, error) {
	t, err := tenantRepo.Get(ctx, rd, "", tid)
	if err != nil {
		return nil, err
	}
	doc := orderedObject{}
	doc.add("version", configVersion)
	doc.add("tenant", configTenant{
		ID: t.Meta.ID, Name: t.Spec.Name, Description: t.Meta.Description, Status: t.Spec.Status,
		Labels: labelsOrEmpty(t.Meta.Labels), AuthenticationContextSettings: t.Spec.AuthenticationContextSettings,
		tenantDirectoryFields: directoryFieldsOf(&t.Spec),
	})
	for _, k := range s.configKinds {
		objs, err := documentObjects(ctx, rd, tid, k)
		if err != nil {
			return nil, err
		}
		items := make([]any, 0, len(objs))
		for _, o := range objs {
			item, err := k.api.export(o)
			if err != nil {
				return nil, fmt.Errorf("export %s %q: %w", k.kind, o.ID, err)
			}
			if item == nil {
				continue // not the document's (a service account's client)
			}
			items = append(items, item)
		}
		doc.add(k.key, items)
	}
	return doc.marshal()
}

// documentObjects lists the tenant's stored objects of kind k, ordered by
// id, completed by the kind's documentState.
func documentObjects(ctx context.Context, rd store.Reader, tid string, k configKind) ([]*store.Object, error) {
	pg, err := rd.List(ctx, store.Query{Kind: k.kind, TenantID: tid})
	if err != nil {
		return nil, err
	}
	if k.api.documentState == nil {
		return pg.Items, nil
	}
	objs := make([]*store.Object, len(pg.Items))
	for i, o := range pg.Items {
		objs[i] = o.Clone()
	}
	if err := k.api.documentState(ctx, rd, tid, objs); err != nil {
		return nil, fmt.Errorf("read the %s of the document: %w", k.kind, err)
	}
	return objs, nil
}

// orderedObject is a JSON object whose members keep the order added.
type orderedObject struct {
	keys   []string
	values []any
}

func (o *orderedObject) add(k string, v any) {
	o.keys, o.values = append(o.keys, k), append(o.values, v)
}

func (o *orderedObject) marshal() (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(o.values[i])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// exportOf is kindAPI.export for a document item rendered from the typed
// object.
func exportOf[S, T any](render func(*store.Typed[S]) T) func(*store.Object) (any, error) {
	return func(o *store.Object) (any, error) {
		var spec S
		if len(o.Spec) > 0 {
			if err := json.Unmarshal(o.Spec, &spec); err != nil {
				return nil, err
			}
		}
		meta := *o
		meta.Spec = nil
		return render(&store.Typed[S]{Meta: meta, Spec: spec}), nil
	}
}

// importOf is kindAPI.importItem for a document item decoded into T and
// turned into its stored form by build.
func importOf[T any](build func(*T) (*configObject, *Error)) func(*Server, json.RawMessage) (*configObject, *Error) {
	return importOfServer(func(_ *Server, item *T) (*configObject, *Error) { return build(item) })
}

// importOfServer is importOf for a build that needs the server.
func importOfServer[T any](build func(*Server, *T) (*configObject, *Error)) func(*Server, json.RawMessage) (*configObject, *Error) {
	return func(s *Server, raw json.RawMessage) (*configObject, *Error) {
		var item T
		if apiErr := decodeConfigItem(raw, &item); apiErr != nil {
			return nil, apiErr
		}
		return build(s, &item)
	}
}

// importConfiguration applies a document to the tenant ?tid= in one
// transaction: mode=replace (default) makes the tenant's configuration the
// document's, deleting what it lacks; mode=merge creates and updates only.
// With If-Match (an export's ETag) nothing is written unless the
// configuration is still that one; dry_run=true computes everything and
// writes nothing.
func (s *Server) importConfiguration(c *gin.Context, tid string) {
	dryRun, apiErr := boolQuery(c, "dry_run")
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	expect, apiErr := configIfMatch(c)
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
	var in map[string]json.RawMessage
	if apiErr := decodeJSONLimit(c, &in, configBodyLimit); apiErr != nil {
		abort(c, apiErr)
		return
	}
	plan, apiErr := s.validateConfiguration(in)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	if apiErr := s.precheckConfiguration(c.Request.Context(), tid, plan, merge); apiErr != nil {
		abort(c, apiErr)
		return
	}
	var result *configImportResult
	_, err := s.update(c.Request.Context(), func(ctx context.Context, tx store.Tx) error {
		before, err := s.readConfiguration(ctx, tx, tid)
		if err != nil {
			return err
		}
		base := configETag(before)
		if expect != "" && expect != base {
			return newError(http.StatusPreconditionFailed, httpapi.CodePreconditionFailed,
				fmt.Sprintf("the configuration of tenant %s changed since If-Match %s (it is now %s); plan again", tid, expect, base),
				map[string]any{"header": "If-Match", "etag": base})
		}
		if result, err = s.applyConfiguration(ctx, tx, c, tid, plan, merge); err != nil {
			return err
		}
		if err := checkRouteTakeover(ctx, tx, tid, takeoverScope{all: true}, nil); err != nil {
			return err
		}
		after, err := s.readConfiguration(ctx, tx, tid)
		if err != nil {
			return err
		}
		result.BaseETag, result.ETag, result.DryRun = base, configETag(after), dryRun
		if dryRun {
			return errDryRun // nothing of it is kept
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDryRun) {
		fail(c, err, "tenant", tid)
		return
	}
	if !dryRun {
		for _, gw := range result.deletedGateways {
			s.bundles.ForgetGateway(c.Request.Context(), tid, gw)
		}
		c.Header("ETag", result.ETag)
	}
	c.JSON(http.StatusOK, result)
}

// validateConfiguration decodes and validates every object of the document
// on its own, with the rules of its resource endpoint. Checks across
// objects need the stored state and run in the import's transaction.
func (s *Server) validateConfiguration(in map[string]json.RawMessage) (*configPlan, *Error) {
	plan := &configPlan{kinds: s.configKinds, objects: map[string][]*configObject{}}
	lists := map[string]bool{}
	for _, k := range plan.kinds {
		lists[k.key] = true
	}
	for _, name := range slices.Sorted(maps.Keys(in)) {
		if name != "version" && name != "tenant" && !lists[name] {
			return nil, newError(http.StatusBadRequest, httpapi.CodeUnknownField, name+": unknown field", map[string]any{"field": name, "reason": "unknown field"})
		}
	}
	var version *int
	if raw, ok := in["version"]; ok {
		if err := json.Unmarshal(raw, &version); err != nil {
			return nil, jsonError(&json.UnmarshalTypeError{Value: "non-number", Type: reflect.TypeFor[int](), Field: "version"}, configBodyLimit)
		}
	}
	switch {
	case version == nil:
		return nil, missingField("version")
	case *version != configVersion:
		return nil, fieldError("version", "unsupported version %d (this server reads version %d)", *version, configVersion)
	case len(in["tenant"]) == 0 || string(in["tenant"]) == "null":
		return nil, missingField("tenant")
	}
	if apiErr := decodeConfigItem(in["tenant"], &plan.tenant); apiErr != nil {
		return nil, atPath("tenant", apiErr)
	}
	if apiErr := validateConfigTenant(&plan.tenant); apiErr != nil {
		return nil, atPath("tenant", apiErr)
	}
	for _, k := range plan.kinds {
		var raws []json.RawMessage
		if raw, ok := in[k.key]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &raws); err != nil {
				return nil, fieldError(k.key, "must be an array of %s objects", k.what)
			}
		}
		if k.api.importLimit != nil { // before decoding (and compiling) any of them
			if apiErr := k.api.importLimit(len(raws)); apiErr != nil {
				return nil, apiErr
			}
		}
		objs, apiErr := s.configItems(raws, k)
		if apiErr != nil {
			return nil, apiErr
		}
		plan.objects[k.kind] = objs
	}
	return plan, nil
}

func validateConfigTenant(t *configTenant) *Error {
	if t.ID != "" && !model.ValidTenantID(t.ID) {
		return fieldError("id", "invalid tenant id %q (%s)", t.ID, model.TenantIDRule)
	}
	req := tenantRequest{Name: t.Name, Description: t.Description, Status: t.Status, Labels: t.Labels,
		AuthenticationContextSettings: t.AuthenticationContextSettings}
	var errs field.ErrorList
	if apiErr := req.validate(); apiErr != nil {
		if errs = apiErr.Fields(); len(errs) == 0 {
			return apiErr
		}
	}
	errs.Extend(t.directoryErrors())
	if len(errs) > 0 {
		return fieldErrors(errs)
	}
	return nil
}

// configItems decodes and validates the objects of one list into their
// stored form; their references come from the kind's declaration. Errors
// name the object's path.
func (s *Server) configItems(raws []json.RawMessage, k configKind) ([]*configObject, *Error) {
	kind := s.scheme.MustKind(k.kind)
	out := make([]*configObject, 0, len(raws))
	for i, raw := range raws {
		path := fmt.Sprintf("%s[%d]", k.key, i)
		o, apiErr := k.api.importItem(s, raw)
		if apiErr != nil {
			return nil, atPath(path, apiErr)
		}
		o.field = path
		// importItem's own references (fields the kind does not declare
		// as Refs, such as a project's members[j].id) name fields of the
		// item: they move under its path.
		for j := range o.refs {
			o.refs[j].field = path + "." + o.refs[j].field
		}
		o.refs = append(o.refs, wireRefs(kind, raw, path)...)
		out = append(out, o)
	}
	return out, nil
}

// wireRefs reads the references of a document item from its wire fields
// (a reference's Field is the wire name of the id, or list of ids), so
// errors name the element as the document has it.
func wireRefs(k *resource.Kind, raw json.RawMessage, path string) []configRef {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m) // decoded strictly already
	var refs []configRef
	for _, r := range k.Refs {
		v, ok := m[r.Field]
		if !ok {
			continue
		}
		if r.Many {
			var ids []string
			_ = json.Unmarshal(v, &ids)
			for i, id := range ids {
				if id != "" {
					refs = append(refs, configRef{field: fmt.Sprintf("%s.%s[%d]", path, r.Field, i), kind: r.Kind, id: id})
				}
			}
			continue
		}
		var id string
		if json.Unmarshal(v, &id) == nil && id != "" {
			refs = append(refs, configRef{field: path + "." + r.Field, kind: r.Kind, id: id})
		}
	}
	return refs
}

// decodeConfigItem strictly decodes one object of the document.
func decodeConfigItem(raw json.RawMessage, dst any) *Error {
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		return newError(http.StatusBadRequest, httpapi.CodeInvalidField, "must be a JSON object", map[string]any{"reason": "must be a JSON object"})
	}
	// The envelope's read-only fields are no part of a document (exports
	// leave them out), even where the resource's body accepts them back.
	var keys map[string]json.RawMessage
	if json.Unmarshal(raw, &keys) == nil {
		for _, f := range []string{"metadata", "tenant_id"} {
			if _, ok := keys[f]; ok {
				return fieldErrors(field.ErrorList{field.Unknown(field.NewPath(f))})
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, configBodyLimit)
	}
	return nil
}

// atPath re-addresses an error about fields of one object to their paths
// in the document: "url" of services[2] becomes "services[2].url".
func atPath(path string, e *Error) *Error {
	if l := e.Fields(); len(l) > 0 {
		return fieldErrors(l.Under(field.NewPath(path)))
	}
	f, _ := e.Details["field"].(string)
	full := path
	if f != "" {
		full += "." + f
	}
	e.Message = full + ": " + strings.TrimPrefix(e.Message, f+": ")
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

// configServiceObject is a service of a configuration document: a
// service body, with_specification included.
func configServiceObject(in *serviceBody) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	hosts, apiErr := in.validate("")
	if apiErr != nil {
		return nil, apiErr
	}
	return newConfigObject(model.KindService, in.ID, in.Name, "", in.Description, in.Labels,
		model.ServiceSpec{URL: in.URL, Hosts: hosts, ServerID: in.ServerID, WithSpecification: derefOr(in.WithSpecification, false), CORS: in.CORS})
}

// configAPIObject is an API of a configuration document: an API body,
// operation_id and imported included.
func configAPIObject(in *apiBody) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := in.validate("", true); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := validateText("operation_id", in.OperationID, false, 256); apiErr != nil {
		return nil, apiErr
	}
	route, _ := parseRoute(in.Method, in.Path)
	o, apiErr := newConfigObject(model.KindAPI, in.ID, route.Name(in.ServiceID), in.ServiceID, "", in.Labels, model.APISpec{
		ServiceID: in.ServiceID, Method: route.Method, Path: route.Template.Raw, PolicyID: in.PolicyID,
		CanHavePolicy: derefOr(in.CanHavePolicy, true), DataClassifications: in.DataClassifications, Public: in.Public,
		Imported: in.Imported, OperationID: in.OperationID, Position: derefOr(in.Position, 0), ClaimsToHeaders: in.ClaimsToHeaders,
	})
	return o, apiErr
}

// configGatewayObject is a gateway of a configuration document: a
// gateway body (without status or credential).
func configGatewayObject(in *gatewayBody) (*configObject, *Error) {
	if apiErr := configID(in.ID); apiErr != nil {
		return nil, apiErr
	}
	if apiErr := in.validate(""); apiErr != nil {
		return nil, apiErr
	}
	return newConfigObject(model.KindGateway, in.ID, in.Name, "", in.Description, in.Labels, in.spec())
}

// configState is the tenant's stored objects of one kind, by id.
type configState map[string]*store.Object

// storedConfiguration is the tenant's stored objects of the kinds, by
// kind.
func storedConfiguration(ctx context.Context, rd store.Reader, tid string, kinds []configKind) (map[string]configState, error) {
	stored := map[string]configState{}
	for _, k := range kinds {
		objs, err := documentObjects(ctx, rd, tid, k)
		if err != nil {
			return nil, err
		}
		stored[k.kind] = configState{}
		for _, o := range objs {
			stored[k.kind][o.ID] = o
		}
	}
	return stored, nil
}

// precheckConfiguration runs the kinds' importPrecheck against a snapshot
// of the tenant, outside any write transaction.
func (s *Server) precheckConfiguration(ctx context.Context, tid string, plan *configPlan, merge bool) *Error {
	var kinds []configKind
	for _, k := range plan.kinds {
		if k.api.importPrecheck != nil {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	// One of the tenant's policy jobs (tenantGate): compiling a document's
	// policies is the heaviest of them.
	release, err := s.policyJobs.acquire(ctx, tid, s.tester.Timeout())
	if err != nil {
		return newError(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the document's policies could not be checked: "+err.Error(), nil).WithRetryAfter(1)
	}
	defer release()
	var stored map[string]configState
	err = s.store.View(ctx, func(ctx context.Context, rd store.Reader) error {
		var err error
		stored, err = storedConfiguration(ctx, rd, tid, kinds)
		return err
	})
	if err != nil {
		return storeError(err, "tenant", tid)
	}
	for _, k := range kinds {
		if apiErr := k.api.importPrecheck(plan.objects[k.kind], stored[k.kind], merge); apiErr != nil {
			return apiErr
		}
	}
	return nil
}

// applyConfiguration checks the plan against the stored configuration and
// writes it. Any problem is returned before the first write.
func (s *Server) applyConfiguration(ctx context.Context, tx store.Tx, c *gin.Context, tid string, plan *configPlan, merge bool) (*configImportResult, error) {
	tenant, err := tenantRepo.Get(ctx, tx, "", tid)
	if err != nil {
		return nil, err
	}
	stored, err := storedConfiguration(ctx, tx, tid, plan.kinds)
	if err != nil {
		return nil, err
	}
	if apiErr := checkConfiguration(plan, stored, merge); apiErr != nil {
		return nil, apiErr
	}
	for _, k := range plan.kinds { // each kind's own rules against what is stored
		if k.api.importCheck != nil {
			if apiErr := k.api.importCheck(plan.objects[k.kind], stored[k.kind], merge); apiErr != nil {
				return nil, apiErr
			}
		}
	}
	for _, k := range plan.kinds { // rules across kinds that need the server and the store
		if k.api.importResolve != nil {
			if err := k.api.importResolve(s, ctx, tx, tid, plan, stored, merge); err != nil {
				return nil, err
			}
		}
	}
	counts := func() map[string]int {
		m := map[string]int{}
		for _, k := range plan.kinds {
			m[k.key] = 0
		}
		return m
	}
	res := &configImportResult{Created: counts(), Updated: counts(), Deleted: counts(), Unchanged: counts(), Changes: []configChange{}}
	w := configWriter{s: s, ctx: ctx, tx: tx, c: c, tid: tid, deletedGateways: &res.deletedGateways, keptGateways: map[string]bool{},
		changes: &res.Changes}
	for _, o := range plan.objects[model.KindGateway] {
		w.keptGateways[o.obj.ID] = true
	}
	if !merge {
		for i := len(plan.kinds) - 1; i >= 0; i-- {
			k := plan.kinds[i]
			if res.Deleted[k.key], err = w.deleteMissing(k, plan.objects[k.kind], stored[k.kind]); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range plan.kinds {
		if err := w.freeNames(plan.objects[k.kind], stored[k.kind]); err != nil {
			return nil, err
		}
	}
	for _, k := range plan.kinds {
		for _, o := range plan.objects[k.kind] {
			cur := stored[k.kind][o.obj.ID]
			var action string
			switch same, err := sameConfigObject(k, cur, &o.obj); {
			case err != nil:
				return nil, err
			case same:
				res.Unchanged[k.key]++
				continue
			case cur == nil:
				action = "create"
				res.Created[k.key]++
			default:
				action = "update"
				res.Updated[k.key]++
			}
			change := configChange{Kind: k.key, ID: o.obj.ID, Action: action}
			if cur != nil {
				if change.Fields, err = changedConfigFields(k, cur, &o.obj); err != nil {
					return nil, err
				}
			}
			res.Changes = append(res.Changes, change)
			if action == "create" { // as put writes it, for what importWrite writes with it
				o.obj.CreatedBy = actor(c)
			} else {
				o.obj.UpdatedBy = actor(c)
			}
			if k.api.importWrite != nil {
				if err := k.api.importWrite(s, ctx, tx, tid, cur, &o.obj); err != nil {
					// A refusal naming a field of the object names it
					// in the document.
					if apiErr := (*Error)(nil); errors.As(err, &apiErr) && (len(apiErr.Fields()) > 0 || apiErr.Details["field"] != nil) {
						return nil, atPath(o.field, apiErr)
					}
					return nil, err
				}
			}
			if err := w.put(action, o.obj); err != nil {
				return nil, err
			}
		}
	}
	return res, w.applyTenant(tenant, &plan.tenant)
}

// changedConfigFields lists the document fields of an object whose value
// an update changes: the stored and the imported object exported alike,
// compared field by field.
func changedConfigFields(k configKind, cur, want *store.Object) ([]string, error) {
	render := func(o *store.Object) (map[string]json.RawMessage, error) {
		item, err := k.api.export(o)
		if err != nil {
			return nil, fmt.Errorf("export %s %q: %w", k.kind, o.ID, err)
		}
		raw, err := json.Marshal(item)
		if err != nil {
			return nil, err
		}
		var m map[string]json.RawMessage
		return m, json.Unmarshal(raw, &m)
	}
	was, err := render(cur)
	if err != nil {
		return nil, err
	}
	next := *want
	next.TenantID = cur.TenantID
	will, err := render(&next)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range slices.Sorted(maps.Keys(will)) {
		if v, ok := was[f]; !ok || !jsonEqual(v, will[f]) {
			out = append(out, f)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(was)) {
		if _, ok := will[f]; !ok {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out, nil
}

// checkConfiguration checks what concerns several objects: unique ids and
// names (an API's name is its service, method and path shape), and
// references. In merge mode the stored objects the document does not name
// stay, so they count too.
func checkConfiguration(plan *configPlan, stored map[string]configState, merge bool) *Error {
	ids := map[string]map[string]string{} // kind -> id -> field
	for _, k := range plan.kinds {
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
	for _, k := range plan.kinds {
		what[k.kind] = k.what
	}
	for _, k := range plan.kinds {
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
	// Raw JSON inside a spec (a key set) keeps the backend's formatting
	// (PostgreSQL's jsonb reorders keys and drops spaces): equal values
	// are the same object.
	return bytes.Equal(spec, want.Spec) || jsonEqual(spec, want.Spec), nil
}

// configWriter writes an import, recording an audit event per object.
type configWriter struct {
	s   *Server
	ctx context.Context
	tx  store.Tx
	c   *gin.Context
	tid string
	// deletedGateways are forgotten from runtime data after the commit.
	deletedGateways *[]string
	// keptGateways are the gateways of the document: their clients (made
	// by Gatehouse, not the document's to delete) stay.
	keptGateways map[string]bool
	// changes receives each delete (and the tenant's update).
	changes *[]configChange
}

// deleteMissing deletes the stored objects the document lacks (and, for a
// gateway, its credentials).
func (w configWriter) deleteMissing(k configKind, want []*configObject, stored configState) (int, error) {
	kind := k.kind
	keep := map[string]bool{}
	for _, o := range want {
		keep[o.obj.ID] = true
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(stored)) {
		if keep[id] || kind == model.KindClient && w.keptGateways[stored[id].ParentID] && stored[id].ParentID != "" ||
			kind == model.KindClient && isAccountClient(stored[id]) {
			continue
		}
		o, err := w.tx.Delete(w.ctx, kind, w.tid, id, 0, false)
		if err != nil {
			return 0, err
		}
		// What a delete through the kind's route does in its transaction
		// (a client's token revocations, a server's keys).
		if k.api.onRemove != nil {
			if err := k.api.onRemove(w.s, w.ctx, w.tx, o); err != nil {
				return 0, err
			}
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
		*w.changes = append(*w.changes, configChange{Kind: k.key, ID: id, Action: "delete"})
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
		// As stored (cur may be completed by documentState).
		tmp, err := w.tx.Get(w.ctx, o.obj.Kind, w.tid, o.obj.ID)
		if err != nil {
			return err
		}
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

// applyTenant updates the tenant's name, description, labels,
// authentication context settings and directory settings; its id and
// status stay.
func (w configWriter) applyTenant(t *store.Typed[model.TenantSpec], want *configTenant) error {
	before, _ := json.Marshal(t.Spec.AuthenticationContextSettings)
	after, _ := json.Marshal(want.AuthenticationContextSettings)
	dir := t.Spec
	want.tenantDirectoryFields.apply(&dir)
	var fields []string
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"authentication_context_settings", !bytes.Equal(before, after)},
		{"description", t.Meta.Description != want.Description},
		{"domains", !slices.Equal(t.Spec.Domains, dir.Domains)},
		{"labels", !maps.Equal(t.Meta.Labels, want.Labels)},
		{"mfa_provider", t.Spec.MFAProvider != dir.MFAProvider},
		{"name", t.Spec.Name != want.Name},
		{"organization_type", t.Spec.OrganizationType != dir.OrganizationType},
		{"provider_id", t.Spec.ProviderID != dir.ProviderID},
		{"provider_scope", t.Spec.ProviderScope != dir.ProviderScope},
		{"realm_name", t.Spec.RealmName != dir.RealmName},
	} {
		if f.changed {
			fields = append(fields, f.name)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	labels := want.Labels
	if len(labels) == 0 {
		labels = nil
	}
	t.Spec.Name, t.Spec.AuthenticationContextSettings = want.Name, want.AuthenticationContextSettings
	want.tenantDirectoryFields.apply(&t.Spec)
	t.Meta.Description, t.Meta.Labels, t.Meta.UpdatedBy = want.Description, labels, actor(w.c)
	if err := tenantRepo.Update(w.ctx, w.tx, t, 0); err != nil {
		return err
	}
	*w.changes = append(*w.changes, configChange{Kind: model.KindTenant, ID: w.tid, Action: "update", Fields: fields})
	return record(w.ctx, w.tx, w.c, w.tid, "update", model.KindTenant, w.tid)
}
