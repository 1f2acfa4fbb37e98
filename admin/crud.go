package admin

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/store"
)

// listKind answers GET …/{plural}: one page of the tenant's objects of a
// kind, rendered, with total and next.
func listKind[S, R any](s *Server, c *gin.Context, repo store.Repo[S], what, plural string, render func(*store.Typed[S]) R) {
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	items, pg, err := repo.List(c.Request.Context(), s.store, store.Query{TenantID: tenantID(c), Limit: limit, After: after})
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

// deleteKind answers DELETE …/{plural}/{id} (If-Match honoured): guard, when
// set, may refuse inside the transaction (an object still in use).
func deleteKind[S any](s *Server, c *gin.Context, repo store.Repo[S], param, what string,
	guard func(ctx context.Context, tx store.Tx, tid, id string) error) {
	tid := tenantID(c)
	id, expect, ok := pathIDAndIfMatch(c, param)
	if !ok {
		return
	}
	if s.write(c, what, id, func(ctx context.Context, tx store.Tx) error {
		if guard != nil {
			if err := guard(ctx, tx, tid, id); err != nil {
				return err
			}
		}
		if _, err := repo.Delete(ctx, tx, tid, id, expect); err != nil {
			return err
		}
		return record(ctx, tx, c, tid, "delete", repo.Kind, id)
	}) {
		c.Status(http.StatusNoContent)
	}
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
