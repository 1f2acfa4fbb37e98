package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Decision search: GET …/gateways/{gw}/decisions lists a gateway's
// decision log events newest first, filtered; …/decisions/stats counts
// them per policy. The filters are the store's (store.LogFilter), read in
// the store's indexes, never by loading events here.

// decisionFilters are the query parameters both routes take.
var decisionFilters = []string{"allowed", "api_id", "policy_id", "subject", "http_status", "decision_id", "token_reason", "from", "to"}

// decisionListQuery are the listing's: the filters, since, and paging.
var decisionListQuery = append(append([]string{}, decisionFilters...), "since", "limit", "after", "total")

// Bounds of the free-text filters.
const (
	maxSubjectFilter    = 1024
	maxDecisionIDFilter = 256
	maxReasonFilter     = 128
)

// decisionFilter reads the filters of the request, after checking that
// its query has only the known parameters, each once: every problem is a
// 400 naming the parameter.
func decisionFilter(c *gin.Context, known []string) (store.LogFilter, *Error) {
	var f store.LogFilter
	if apiErr := httpapi.KnownQuery(c, known...); apiErr != nil {
		return f, apiErr
	}
	if _, ok := c.GetQuery("allowed"); ok {
		b, apiErr := boolQuery(c, "allowed")
		if apiErr != nil {
			return f, apiErr
		}
		f.Allowed = &b
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"api_id", &f.APIID}, {"policy_id", &f.PolicyID}} {
		if v, ok := c.GetQuery(p.name); ok {
			if !model.ValidObjectID(v) {
				return f, fieldError(p.name, "invalid id %q (%s)", v, model.ObjectIDRule)
			}
			*p.dst = v
		}
	}
	for _, p := range []struct {
		name string
		max  int
		dst  *string
	}{{"subject", maxSubjectFilter, &f.Subject}, {"decision_id", maxDecisionIDFilter, &f.DecisionID}, {"token_reason", maxReasonFilter, &f.TokenReason}} {
		if v, ok := c.GetQuery(p.name); ok {
			if v == "" || len(v) > p.max {
				return f, fieldError(p.name, "must be 1 to %d bytes", p.max)
			}
			*p.dst = v
		}
	}
	if v, ok := c.GetQuery("http_status"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 599 {
			return f, fieldError("http_status", "must be an HTTP status code (an integer from 100 to 599), got %q", v)
		}
		f.HTTPStatus = n
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v, ok := c.GetQuery(p.name); ok {
			t, apiErr := parseTime(p.name, v)
			if apiErr != nil {
				return f, apiErr
			}
			*p.dst = t
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return f, fieldError("to", "must not be before from")
	}
	if v, ok := c.GetQuery("since"); ok {
		if _, err := store.DecodeEventCursor(v); err != nil || v == "" {
			return f, fieldError("since", "must be the id of a decision of this listing")
		}
		f.Since = v
	}
	return f, nil
}

// decisionBody is one logged decision.
type decisionBody struct {
	ID         string          `json:"id"`
	ReceivedAt time.Time       `json:"received_at"`
	Event      json.RawMessage `json:"event"`
}

// listDecisions lists the decision log events the gateway's authorizers
// uploaded that match the filters, newest first (in the order the
// control plane received them), with the number of them all (total).
func (s *Server) listDecisions(c *gin.Context) {
	t, ok := s.loadGateway(c)
	if !ok {
		return
	}
	f, apiErr := decisionFilter(c, decisionListQuery)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	limit, after, apiErr := page(c)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	// total=false: the count walks the whole window, which a reader of
	// every page (an export, a benchmark) need not pay at each page.
	withTotal := true
	if _, ok := c.GetQuery("total"); ok {
		if withTotal, apiErr = boolQuery(c, "total"); apiErr != nil {
			abort(c, apiErr)
			return
		}
	}
	pg, err := s.store.ListLog(c.Request.Context(), store.LogQuery{
		Stream: store.LogStream{Name: decisionStream, TenantID: t.Meta.TenantID, Key: t.Meta.ID},
		Limit:  limit, After: after, Filter: f, WithTotal: withTotal})
	if err != nil {
		abort(c, cursorError(err, "decision"))
		return
	}
	out := make([]decisionBody, 0, len(pg.Items))
	for _, e := range pg.Items {
		out = append(out, decisionBody{ID: e.ID, ReceivedAt: e.Time, Event: e.Data})
	}
	body := gin.H{"decisions": out, "next": pg.Next}
	if withTotal {
		body["total"] = pg.Total
	}
	c.JSON(http.StatusOK, body)
}

// decisionStatsBody is the answer of …/decisions/stats.
type decisionStatsBody struct {
	Total    int                    `json:"total"`
	Allowed  int                    `json:"allowed"`
	Denied   int                    `json:"denied"`
	Policies []store.LogPolicyCount `json:"policies"`
}

// decisionStats counts the gateway's decisions matching the filters
// (typically a window, from and to) per policy: how many each allowed
// and denied.
func (s *Server) decisionStats(c *gin.Context) {
	t, ok := s.loadGateway(c)
	if !ok {
		return
	}
	f, apiErr := decisionFilter(c, decisionFilters)
	if apiErr != nil {
		abort(c, apiErr)
		return
	}
	counts, err := s.store.CountLog(c.Request.Context(), store.LogStream{Name: decisionStream, TenantID: t.Meta.TenantID, Key: t.Meta.ID}, f)
	if err != nil {
		fail(c, err, "decision", "")
		return
	}
	out := decisionStatsBody{Policies: counts}
	for _, p := range counts {
		out.Total += p.Total
		out.Allowed += p.Allowed
		out.Denied += p.Denied
	}
	c.JSON(http.StatusOK, out)
}
