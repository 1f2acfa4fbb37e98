package admin

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/store"
)

func (s *Server) eventRoutes(_, adm *gin.RouterGroup) {
	adm.GET("/events", s.listEvents)
}

// listEvents lists the tenant's audit events, newest first, with filters
// kind, action, actor, from and to (RFC 3339 or Unix seconds, inclusive).
func (s *Server) listEvents(c *gin.Context) {
	t := currentTenant(c)
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	q := store.EventQuery{
		TenantID: t.Meta.ID, Kind: c.Query("kind"), Action: c.Query("action"), Actor: c.Query("actor"),
		// Events of an earlier tenant that had the same id stay hidden.
		MinRevision: t.Meta.CreateRevision,
		Limit:       limit, After: after,
	}
	if v := c.Query("from"); v != "" {
		if q.From, apiErr = parseTime("from", v); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	if v := c.Query("to"); v != "" {
		if q.To, apiErr = parseTime("to", v); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		abort(c, fieldError("to", "must not be before from"))
		return
	}
	pg, err := s.store.ListEvents(c.Request.Context(), q)
	if err != nil {
		abort(c, cursorError(err, "event"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"events": pg.Items, "next": pg.Next})
}
