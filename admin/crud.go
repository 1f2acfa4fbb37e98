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
