package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

// listKind answers GET …/{plural}: one page of the tenant's objects of a
// kind, rendered, with total and next.
func listKind[S, R any](s *Server, c *gin.Context, repo store.Repo[S], what, plural string, render func(*store.Typed[S]) R) {
	listObjects(s, c, repo, what, plural, store.Query{TenantID: tenantID(c)}, render)
}

// listObjects answers one page (?limit=&after=) of the objects q selects.
func listObjects[S, R any](s *Server, c *gin.Context, repo store.Repo[S], what, plural string, q store.Query, render func(*store.Typed[S]) R) {
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	q.Limit, q.After = limit, after
	items, pg, err := repo.List(c.Request.Context(), s.store, q)
	if err != nil {
		abort(c, cursorError(err, what))
		return
	}
	out := make([]R, 0, len(items))
	for _, t := range items {
		out = append(out, render(t))
	}
	c.JSON(http.StatusOK, gin.H{plural: out, "total": pg.Total, "next": pg.Next})
}

// getKind answers GET …/{plural}/{id} with the object and its ETag.
func getKind[S, R any](s *Server, c *gin.Context, repo store.Repo[S], param, what string, render func(*store.Typed[S]) R) {
	id, apiErr := objectIDParam(c, param)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t, err := repo.Get(c.Request.Context(), s.store, tenantID(c), id)
	if err != nil {
		fail(c, err, what, id)
		return
	}
	respondObject(c, http.StatusOK, t.Meta.Revision, render(t))
}

// updater turns a PUT body into the change it makes: it decodes and
// validates the request (errors before anything is read) and returns the
// function that applies it to the stored object inside the transaction
// (where checks against other objects run). The envelope's UpdatedBy,
// the revision check, the write and the audit event are updateKind's.
type updater[S any] func(c *gin.Context, id string) (apply func(ctx context.Context, tx store.Tx, t *store.Typed[S]) error, apiErr *Error)

// updateKind answers PUT …/{plural}/{id}.
func updateKind[S, R any](s *Server, c *gin.Context, repo store.Repo[S], param, what string, render func(*store.Typed[S]) R, prepare updater[S]) {
	tid := tenantID(c)
	id, apiErr := objectIDParam(c, param)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	apply, apiErr := prepare(c, id)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	expect, apiErr := ifMatch(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	var t *store.Typed[S]
	if s.write(c, what, id, func(ctx context.Context, tx store.Tx) error {
		var err error
		if t, err = repo.Get(ctx, tx, tid, id); err != nil {
			return err
		}
		if err := checkRevision(&t.Meta, expect); err != nil {
			return err
		}
		if err := apply(ctx, tx, t); err != nil {
			return err
		}
		t.Meta.UpdatedBy = actor(c)
		if err := repo.Update(ctx, tx, t, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "update", repo.Kind, id)
	}) {
		respondObject(c, http.StatusOK, t.Meta.Revision, render(t))
	}
}

// decodeUpdate decodes a PUT body whose id, when given, must be the path's.
func decodeUpdate(c *gin.Context, dst any, bodyID func() string, id string) *Error {
	if apiErr := decodeJSON(c, dst); apiErr != nil {
		return apiErr
	}
	if b := bodyID(); b != "" && b != id {
		return fieldError("id", "does not match the id in the path; ids cannot be changed")
	}
	return nil
}

// objectOf is t, an object of kind, as the store keeps it (its spec
// encoded).
func objectOf[S any](kind string, t *store.Typed[S]) (*store.Object, error) {
	raw, err := json.Marshal(t.Spec)
	if err != nil {
		return nil, err
	}
	o := t.Meta
	o.Kind, o.Spec = kind, raw
	return &o, nil
}

// checkReferencesOf fails with a 400 naming every reference of t (an
// object of kind) to an object that does not exist.
func checkReferencesOf[S any](ctx context.Context, s *Server, rd store.Reader, kind string, t *store.Typed[S]) error {
	o, err := objectOf(kind, t)
	if err != nil {
		return err
	}
	return s.checkReferences(ctx, rd, o)
}

// simpleKind declares a kind whose request body maps onto one stored
// object: from its wire types and rules it makes the kind's create, list,
// get, replace, patch and delete handlers, its configuration document
// item and its registration. Adding such a kind is one simpleKind.
type simpleKind[S, Req, Resp any] struct {
	Kind *resource.Kind
	// Param is the id path parameter.
	Param string
	// ReadOnly: see kindAPI.readOnly.
	ReadOnly []string
	// NameField is the wire field of the envelope name.
	NameField string
	// Render is the GET body.
	Render func(*store.Typed[S]) Resp
	// ID is the id a request names ("" for none).
	ID func(*Req) string
	// Build validates a request into the object's envelope (Name,
	// Description, Labels, ParentID) and spec: its error is a
	// field.ErrorList of every problem, or an *Error of the kind's own.
	// tid is "" when the request comes from a configuration document; id
	// is the object's.
	Build func(s *Server, tid, id string, req *Req) (store.Object, S, error)
	// Precheck, when set, runs after Build for a create or PUT (not for
	// an import), before the write's transaction: checks that read the
	// store and may take a while (a policy's tests), so that no write
	// waits for them.
	Precheck func(ctx context.Context, s *Server, tid, id string, spec *S) error
	// Check, when set, runs in the write's transaction after the
	// references are checked (rules across objects).
	Check func(ctx context.Context, tx store.Tx, t *store.Typed[S]) error
	// AfterCreate, when set, runs in a create's transaction after the
	// write (limits that count the kind's objects).
	AfterCreate func(ctx context.Context, tx store.Tx, t *store.Typed[S]) error
}

// buildError is a Build error as the API's answer.
func buildError(err error) *Error { return storeError(err, "", "") }

// register adds the kind to the scheme with its admin API.
func (d simpleKind[S, Req, Resp]) register(sch *resource.Scheme) {
	k := d.Kind
	if k.Canonical == nil {
		k.Canonical = resource.SpecCodec[S]
	}
	repo := resource.Repo[S](k)
	k.API = &kindAPI{
		param: d.Param, readOnly: d.ReadOnly, nameField: d.NameField, current: typedCurrent(repo, d.Render),
		list: func(s *Server, c *gin.Context) { listKind(s, c, repo, k.Singular, k.Name, d.Render) },
		get:  func(s *Server, c *gin.Context) { getKind(s, c, repo, d.Param, k.Singular, d.Render) },
		create: func(s *Server, c *gin.Context) {
			createKind(s, c, k, d.Render, d.AfterCreate, func(c *gin.Context, tid string) (*store.Typed[S], func(context.Context, store.Tx, *store.Typed[S]) error, *Error) {
				var req Req
				if apiErr := decodeJSON(c, &req); apiErr != nil {
					return nil, nil, apiErr
				}
				id, apiErr := newObjectID("id", d.ID(&req))
				if apiErr != nil {
					return nil, nil, apiErr
				}
				meta, spec, err := d.Build(s, tid, id, &req)
				if err == nil && d.Precheck != nil {
					err = d.Precheck(c.Request.Context(), s, tid, id, &spec)
				}
				if err != nil {
					return nil, nil, buildError(err)
				}
				meta.ID = id
				return &store.Typed[S]{Meta: meta, Spec: spec}, d.Check, nil
			})
		},
		put: func(s *Server, c *gin.Context) {
			tid := tenantID(c)
			updateKind(s, c, repo, d.Param, k.Singular, d.Render, func(c *gin.Context, id string) (func(context.Context, store.Tx, *store.Typed[S]) error, *Error) {
				var req Req
				if apiErr := decodeUpdate(c, &req, func() string { return d.ID(&req) }, id); apiErr != nil {
					return nil, apiErr
				}
				meta, spec, err := d.Build(s, tid, id, &req)
				if err == nil && d.Precheck != nil {
					err = d.Precheck(c.Request.Context(), s, tid, id, &spec)
				}
				if err != nil {
					return nil, buildError(err)
				}
				return func(ctx context.Context, tx store.Tx, t *store.Typed[S]) error {
					t.Meta.Name, t.Meta.Description, t.Meta.Labels, t.Meta.ParentID = meta.Name, meta.Description, meta.Labels, meta.ParentID
					t.Spec = spec
					if err := checkReferencesOf(ctx, s, tx, k.Name, t); err != nil {
						return err
					}
					if d.Check != nil {
						return d.Check(ctx, tx, t)
					}
					return nil
				}, nil
			})
		},
	}
	if k.Exported {
		api := k.API.(*kindAPI)
		api.export = func(o *store.Object) (any, error) { return exportItem(api, o, d.Render) }
		api.importItem = func(s *Server, raw json.RawMessage) (*configObject, *Error) {
			var req Req
			if apiErr := decodeConfigItem(raw, &req); apiErr != nil {
				return nil, apiErr
			}
			if apiErr := configID(d.ID(&req)); apiErr != nil {
				return nil, apiErr
			}
			meta, spec, err := d.Build(s, "", d.ID(&req), &req)
			if err != nil {
				return nil, buildError(err)
			}
			return newConfigObject(k.Name, d.ID(&req), meta.Name, meta.ParentID, meta.Description, meta.Labels, spec)
		}
	}
	sch.MustRegister(k)
}

// exportItem is a document item: the GET body without metadata,
// tenant_id and the read-only fields (but those in keep, which an import
// restores as they were).
func exportItem[S, R any](api *kindAPI, o *store.Object, render func(*store.Typed[S]) R, keep ...string) (any, error) {
	body, err := exportOf(render)(o)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "metadata")
	delete(m, "tenant_id")
	for _, f := range api.readOnly {
		if !slices.Contains(keep, f) {
			delete(m, f)
		}
	}
	return m, nil
}

// createKind answers POST …/{plural}: prepare decodes and validates the
// body into the new object (and may return a check to run in the
// transaction); createKind checks its references, creates it, runs after
// (when set) and records the audit event.
func createKind[S, R any](s *Server, c *gin.Context, k *resource.Kind, render func(*store.Typed[S]) R,
	after func(ctx context.Context, tx store.Tx, t *store.Typed[S]) error,
	prepare func(c *gin.Context, tid string) (*store.Typed[S], func(ctx context.Context, tx store.Tx, t *store.Typed[S]) error, *Error)) {
	tid := tenantID(c)
	t, check, apiErr := prepare(c, tid)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	t.Meta.TenantID, t.Meta.CreatedBy = tid, actor(c)
	repo := resource.Repo[S](k)
	if s.write(c, k.Singular, t.Meta.ID, func(ctx context.Context, tx store.Tx) error {
		if err := checkReferencesOf(ctx, s, tx, k.Name, t); err != nil {
			return err
		}
		if check != nil {
			if err := check(ctx, tx, t); err != nil {
				return err
			}
		}
		if err := repo.Create(ctx, tx, t); err != nil {
			return err
		}
		if after != nil {
			if err := after(ctx, tx, t); err != nil {
				return err
			}
		}
		return record(ctx, tx, c, tid, "create", k.Name, t.Meta.ID)
	}) {
		respondObject(c, http.StatusCreated, t.Meta.Revision, render(t))
	}
}
