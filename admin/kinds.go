package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/field"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// kindAPI is the admin API's half of a registered kind (resource.Kind.API):
// its routes, wire form and rules. The generic parts — the routes of
// /{kind} and /{kind}/{id}, PUT's read-only fields, PATCH, DELETE with the
// scheme's guards and cascades, the configuration document — are built
// from it here; a kind's file declares it with its registration.
type kindAPI struct {
	// param is the id path parameter of /{kind}/:param.
	param string
	// readOnly are the GET fields (besides id, tenant_id and metadata,
	// read-only for every kind) that a PUT may send back unchanged and
	// that change only through the server.
	readOnly []string
	// current is the object as GET renders it, with its revision: the
	// reference of PUT's read-only fields and the base of PATCH.
	current func(s *Server, c *gin.Context, tid, id string) (body any, rev int64, err error)
	// The kind's own handlers; nil ones get no route.
	list, create, get, put func(*Server, *gin.Context)
	// deletable, when set, may refuse deleting the object itself (not
	// when it goes with a cascade) inside the transaction.
	deletable func(ctx context.Context, tx store.Tx, o *store.Object) error
	// onRemove, when set, runs inside a delete's transaction for each
	// object of the kind the delete removes (the one named, or one going
	// with a cascade), once it is removed: writes that must commit with the
	// delete (a client's token revocations). Its error aborts the delete.
	onRemove func(s *Server, ctx context.Context, tx store.Tx, o *store.Object) error
	// afterDelete runs once a delete that removed an object of the kind
	// committed (runtime data that lives outside the store).
	afterDelete func(s *Server, ctx context.Context, tid, id string)
	// routes registers the kind's other routes (sub-resources, actions).
	routes func(s *Server, sys, adm *gin.RouterGroup)
	// export renders a stored object as an item of the configuration
	// document; importItem decodes and validates one (exported kinds).
	export     func(o *store.Object) (any, error)
	importItem func(s *Server, raw json.RawMessage) (*configObject, *Error)
	// importLimit, when set, refuses a document list of n objects before
	// any is decoded.
	importLimit func(n int) *Error
	// importCheck, when set, applies the kind's rules across objects to an
	// import's objects of the kind (want) and the stored ones, before
	// anything is written (merge: the stored ones the document does not
	// name stay).
	importCheck func(want []*configObject, stored configState, merge bool) *Error
	// importPrecheck, when set, is importCheck's costly part (compiling
	// the document's policies): it runs before the import's transaction,
	// against a snapshot of the stored objects, so that no write of any
	// tenant waits for it; importCheck then repeats what concurrent writes
	// can change, cheaply.
	importPrecheck func(want []*configObject, stored configState, merge bool) *Error
	// nameField is the document field holding the unique envelope name.
	nameField string
	// patchNullKeeps: a PATCH member that is null leaves the field as it
	// is (seed 002's open-id-providers), instead of RFC 7396's removal.
	patchNullKeeps bool
	// importWrite, when set, runs in an import's transaction just before
	// it creates (cur nil) or updates (cur the stored object) an object of
	// the kind: it may carry over into want what documents do not hold (a
	// user's credentials) and write what goes with the object (a user's
	// subject marker).
	importWrite func(s *Server, ctx context.Context, tx store.Tx, tid string, cur, want *store.Object) error
	// documentState, when set, completes stored objects of the kind (of
	// tenant tid; copies, changed in place) with what their document
	// items hold that other objects keep — a project's direct members,
	// a service account's client — before an export renders them or an
	// import compares them with a document (so the completed spec is what
	// export, Canonical and importWrite's cur see).
	documentState func(ctx context.Context, rd store.Reader, tid string, objs []*store.Object) error
	// importResolve, when set, runs in an import's transaction after
	// every kind's importCheck and before anything is written, with the
	// server, the tenant and the whole plan (stored: the tenant's objects
	// as importCheck left them): rules across kinds that need more than
	// the document and the tenant's stored objects of its kinds (a
	// reference that may name a system-wide object, another tenant's
	// use of this tenant's objects), and completions of the kind's
	// objects that need the server (a clear secret compared with the
	// sealed one).
	importResolve func(s *Server, ctx context.Context, tx store.Tx, tid string, plan *configPlan, stored map[string]configState, merge bool) error
}

// NewScheme is the registry of the admin API's kinds: every kind the
// server stores, with its admin routes and rules. Give the same scheme to
// the bundle manager (its Bundled kinds are the manager's inputs).
func NewScheme() (*resource.Scheme, error) {
	sch := resource.NewScheme()
	AddToScheme(sch)
	if err := sch.Complete(); err != nil {
		return nil, err
	}
	return sch, nil
}

// AddToScheme registers the admin API's kinds in sch (which the caller
// may extend before it is completed).
func AddToScheme(sch *resource.Scheme) {
	for _, add := range []func(*resource.Scheme){
		addTenantKinds, addPolicyKind, addServiceKind, addAPIKind, addScopeKind, addIssuerKind, addServerKinds, addClientKinds, addGatewayKinds,
		addIdentityProviderKinds, addUserKinds, addServiceAccountKinds, addGroupKinds, addInvitationKinds,
	} {
		add(sch)
	}
}

// apiOf is the admin half of k (nil when the kind has no admin API).
func apiOf(k *resource.Kind) *kindAPI {
	api, _ := k.API.(*kindAPI)
	return api
}

// kindRoutes registers the routes of every kind of the scheme.
func (s *Server) kindRoutes(sys, adm *gin.RouterGroup) {
	for _, k := range s.scheme.Kinds() {
		api := apiOf(k)
		if api == nil {
			continue
		}
		if !k.System {
			coll, one := "/"+k.Name, "/"+k.Name+"/:"+api.param
			bind := func(method, path string, h func(*Server, *gin.Context)) {
				if h != nil {
					adm.Handle(method, path, func(c *gin.Context) { h(s, c) })
				}
			}
			bind(http.MethodGet, coll, api.list)
			bind(http.MethodPost, coll, api.create)
			bind(http.MethodGet, one, api.get)
			if api.put != nil {
				adm.PUT(one, s.replaceObject(api, tenantObject(api.param), api.put))
				adm.PATCH(one, s.patchObject(k, api, tenantObject(api.param), api.put))
			}
			adm.DELETE(one, s.deleteObject(k, api))
		}
		if api.routes != nil {
			api.routes(s, sys, adm)
		}
	}
}

// readBody reads a JSON (or +json) request body, size-capped.
func readBody(c *gin.Context, accept ...string) ([]byte, *Error) {
	if ct := c.GetHeader("Content-Type"); ct != "" || len(accept) > 0 {
		mt, _, err := mime.ParseMediaType(ct)
		ok := err == nil && (len(accept) == 0 && (mt == "application/json" || strings.HasSuffix(mt, "+json")))
		for _, a := range accept {
			ok = ok || (err == nil && mt == a)
		}
		if !ok {
			want := "application/json"
			if len(accept) > 0 {
				want = strings.Join(accept, " or ")
			}
			return nil, newError(http.StatusUnsupportedMediaType, httpapi.CodeUnsupportedMedia,
				fmt.Sprintf("Content-Type %q is not supported; send %s", ct, want), map[string]any{"header": "Content-Type"})
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, DefaultBodyLimit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, jsonError(err, DefaultBodyLimit)
		}
		return nil, newError(http.StatusBadRequest, httpapi.CodeInvalidRequest, "cannot read the request body: "+err.Error(), nil)
	}
	return raw, notNull(raw)
}

// setBody replaces the request body the kind's handler will decode.
func setBody(c *gin.Context, body []byte) {
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	c.Request.ContentLength = int64(len(body))
	c.Request.Header.Set("Content-Type", "application/json")
}

// readOnlyFields checks the read-only fields of a PUT body against the
// stored object's rendering and removes them: sent unchanged they are
// accepted (so a GET body is a valid PUT body), changed they are a 400
// naming each. metadata is ignored whatever it holds (concurrency is
// If-Match's job). A body that is not a JSON object is left to the
// kind's decoder to refuse.
func readOnlyFields(api *kindAPI, body []byte, current any) ([]byte, *Error) {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return body, nil
	}
	delete(m, "metadata")
	var cur map[string]any
	if current != nil {
		raw, err := json.Marshal(current)
		if err != nil {
			return nil, internalError(err)
		}
		if err := json.Unmarshal(raw, &cur); err != nil {
			return nil, internalError(err)
		}
	}
	var errs field.ErrorList
	for _, f := range api.readOnly {
		v, ok := m[f]
		if !ok {
			continue
		}
		var sent any
		if err := json.Unmarshal(v, &sent); err != nil {
			return nil, internalError(err)
		}
		stored, has := cur[f]
		if !has && sent == nil {
			delete(m, f)
			continue
		}
		if !reflect.DeepEqual(sent, stored) {
			errs.Add(field.ReadOnly(field.NewPath(f), "is read-only; send it unchanged (as GET returns it) or leave it out"))
			continue
		}
		delete(m, f)
	}
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return nil, internalError(err)
	}
	return out, nil
}

// writeTarget names the object a PUT or PATCH writes: its tenant ("" for
// system-level kinds) and id.
type writeTarget func(c *gin.Context) (tid, id string, apiErr *Error)

// tenantObject is the writeTarget of /api/admin/{tid}/{kind}/:param.
func tenantObject(param string) writeTarget {
	return func(c *gin.Context) (string, string, *Error) {
		id, apiErr := objectIDParam(c, param)
		if apiErr != nil {
			return "", "", apiErr
		}
		return tenantID(c), id, nil
	}
}

// currentFor renders the object a write names; a missing object is left
// to the handler (it answers 404 the kind's way).
func (s *Server) currentFor(c *gin.Context, api *kindAPI, tid, id string) (any, int64, *Error) {
	body, rev, err := api.current(s, c, tid, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, storeError(err, "object", id)
	}
	return body, rev, nil
}

// writeInput reads the object a write names and its body (of the
// accepted media types; JSON by default). The answer is written when it
// fails.
func writeInput(c *gin.Context, target writeTarget, accept ...string) (tid, id string, body []byte, ok bool) {
	tid, id, apiErr := target(c)
	if apiErr == nil {
		body, apiErr = readBody(c, accept...)
	}
	if apiErr != nil {
		abort(c, apiErr)
		return "", "", nil, false
	}
	return tid, id, body, true
}

// replaceObject is PUT …/{kind}/{id}: the body replaces the object's
// spec; read-only fields are accepted unchanged (readOnlyFields), then
// put (the kind's handler) applies it.
func (s *Server) replaceObject(api *kindAPI, target writeTarget, put func(*Server, *gin.Context)) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid, id, raw, ok := writeInput(c, target)
		if !ok {
			return
		}
		cur, _, apiErr := s.currentFor(c, api, tid, id)
		if apiErr == nil {
			raw, apiErr = readOnlyFields(api, raw, cur)
		}
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		setBody(c, raw)
		put(s, c)
	}
}

// MergePatchType is the media type of PATCH bodies (RFC 7396).
const MergePatchType = "application/merge-patch+json"

// patchObject is PATCH …/{kind}/{id} with a JSON merge patch (RFC 7396):
// the patch is applied to the object as GET renders it and the result
// written by put (the kind's PUT handler), so every PUT rule holds. The
// write is conditional on the revision the patch was applied to
// (If-Match when given, else the one read): a concurrent change gives
// 412, never a lost update.
func (s *Server) patchObject(k *resource.Kind, api *kindAPI, target writeTarget, put func(*Server, *gin.Context)) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid, id, patch, ok := writeInput(c, target, MergePatchType)
		if !ok {
			return
		}
		if !bytes.HasPrefix(bytes.TrimSpace(patch), []byte("{")) {
			abort(c, newError(http.StatusBadRequest, httpapi.CodeInvalidJSON, "a merge patch must be a JSON object", nil))
			return
		}
		if !json.Valid(patch) {
			abort(c, jsonError(json.Unmarshal(patch, new(any)), DefaultBodyLimit))
			return
		}
		if api.patchNullKeeps {
			patch = dropNullMembers(patch)
		}
		expect, apiErr := ifMatch(c)
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		cur, rev, err := api.current(s, c, tid, id)
		if err != nil {
			fail(c, err, k.Singular, id)
			return
		}
		if expect != 0 && expect != rev {
			fail(c, store.ErrConflict, k.Singular, id)
			return
		}
		base, err := json.Marshal(cur)
		if err != nil {
			abort(c, internalError(err))
			return
		}
		merged, err := jsonpatch.MergePatch(base, patch)
		if err != nil {
			abort(c, newError(http.StatusBadRequest, httpapi.CodeInvalidJSON, "cannot apply the merge patch: "+err.Error(), nil))
			return
		}
		body, apiErr := readOnlyFields(api, merged, cur)
		if apiErr != nil {
			abort(c, apiErr)
			return
		}
		setBody(c, body)
		c.Request.Header.Set("If-Match", etag(rev))
		put(s, c)
	}
}

// dropNullMembers removes the top-level members of a JSON object (a
// valid merge patch) whose value is null.
func dropNullMembers(patch []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(patch, &m) != nil {
		return patch
	}
	for k, v := range m {
		if string(bytes.TrimSpace(v)) == "null" {
			delete(m, k)
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		return patch
	}
	return out
}

// deleteObject is DELETE …/{kind}/{id} (If-Match honoured): the scheme
// refuses it while other objects reference this one (409 in_use) and
// deletes the objects that go with it (cascades), each with its audit
// event, in one transaction.
func (s *Server) deleteObject(k *resource.Kind, api *kindAPI) gin.HandlerFunc {
	return func(c *gin.Context) {
		tid := tenantID(c)
		id, expect, ok := pathIDAndIfMatch(c, api.param)
		if !ok {
			return
		}
		var removed []*store.Object
		if s.write(c, k.Singular, id, func(ctx context.Context, tx store.Tx) error {
			removed = removed[:0]
			if api.deletable != nil {
				o, err := tx.Get(ctx, k.Name, tid, id)
				if err != nil {
					return err
				}
				if err := api.deletable(ctx, tx, o); err != nil {
					return err
				}
			}
			_, err := s.scheme.Delete(ctx, tx, k.Name, tid, id, expect, func(ctx context.Context, dk *resource.Kind, o *store.Object) error {
				removed = append(removed, o)
				if a := apiOf(dk); a != nil && a.onRemove != nil {
					if err := a.onRemove(s, ctx, tx, o); err != nil {
						return err
					}
				}
				return record(ctx, tx, c, tid, "delete", dk.Name, o.ID)
			})
			if inUse := (*resource.InUseError)(nil); errors.As(err, &inUse) {
				return inUseError(inUse)
			}
			return err
		}) {
			s.afterDelete(c.Request.Context(), tid, removed)
			c.Status(http.StatusNoContent)
		}
	}
}

// afterDelete runs the afterDelete hooks of committed deletes.
func (s *Server) afterDelete(ctx context.Context, tid string, removed []*store.Object) {
	for _, o := range removed {
		if k, ok := s.scheme.Kind(o.Kind); ok {
			if api := apiOf(k); api != nil && api.afterDelete != nil {
				api.afterDelete(s, ctx, tid, o.ID)
			}
		}
	}
}

// inUseError maps the scheme's refusal to the 409 of the API.
func inUseError(e *resource.InUseError) *Error {
	return inUse(e.Kind.Singular, e.ID, e.UsedBy)
}

// checkReferences fails with a 400 naming every reference of o to an
// object that does not exist.
func (s *Server) checkReferences(ctx context.Context, rd store.Reader, o *store.Object) error {
	errs, err := s.scheme.CheckReferences(ctx, rd, o)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return fieldErrors(errs)
	}
	return nil
}

// typedCurrent is kindAPI.current for kinds whose GET renders one stored
// object.
func typedCurrent[S, R any](repo store.Repo[S], render func(*store.Typed[S]) R) func(*Server, *gin.Context, string, string) (any, int64, error) {
	return func(s *Server, c *gin.Context, tid, id string) (any, int64, error) {
		t, err := repo.Get(c.Request.Context(), s.store, tid, id)
		if err != nil {
			return nil, 0, err
		}
		return render(t), t.Meta.Revision, nil
	}
}

// specIDs is a resource.Ref's IDs for a field of a spec S.
func specIDs[S any](get func(*S) []string) func(*store.Object) ([]string, error) {
	return func(o *store.Object) ([]string, error) {
		var spec S
		if len(o.Spec) > 0 {
			if err := json.Unmarshal(o.Spec, &spec); err != nil {
				return nil, err
			}
		}
		return get(&spec), nil
	}
}
