package bundleservice

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/store"
)

// DefaultDecisionLogsKept is how many decision log events are kept per
// gateway unless Options.DecisionLogsKept says otherwise.
const DefaultDecisionLogsKept = 100000

// Decision log upload limits: compressed and decompressed bytes.
const (
	maxLogUpload       = 8 << 20
	maxLogDecompressed = 64 << 20
)

// receiveLogs appends OPA decision log events (a JSON array, usually
// gzip-compressed) to the gateway's decision log (bundles.DecisionLog),
// which the admin API lists.
func (s *Service) receiveLogs(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	var r io.Reader = http.MaxBytesReader(c.Writer, c.Request.Body, maxLogUpload)
	if strings.EqualFold(c.GetHeader("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			httpapi.Abort(c, httpapi.New(http.StatusBadRequest, httpapi.CodeInvalidRequest, "the body is not gzip: "+err.Error(), nil))
			return
		}
		defer zr.Close()
		r = io.LimitReader(zr, maxLogDecompressed+1)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpapi.Abort(c, httpapi.JSONError(err, maxLogUpload))
			return
		}
		httpapi.Abort(c, httpapi.New(http.StatusBadRequest, httpapi.CodeInvalidRequest, "cannot read the body: "+err.Error(), nil))
		return
	}
	if len(body) > maxLogDecompressed {
		httpapi.Abort(c, httpapi.New(http.StatusRequestEntityTooLarge, httpapi.CodeBodyTooLarge, fmt.Sprintf("decision logs exceed %d bytes decompressed", maxLogDecompressed), nil))
		return
	}
	var events []json.RawMessage
	err = json.Unmarshal(body, &events)
	if err == nil && events == nil {
		err = errors.New("null is not an array")
	}
	if err != nil {
		httpapi.Abort(c, httpapi.New(http.StatusBadRequest, httpapi.CodeInvalidJSON, "decision logs must be a JSON array of events: "+err.Error(), nil))
		return
	}
	for i, e := range events {
		if len(e) == 0 || e[0] != '{' {
			httpapi.Abort(c, httpapi.New(http.StatusBadRequest, httpapi.CodeInvalidJSON, fmt.Sprintf("decision log event %d is not an object", i), nil))
			return
		}
	}
	stream := bundles.DecisionLog(tid, gw)
	if err := s.store.AppendLog(c.Request.Context(), stream, events); err != nil {
		httpapi.Fail(c, err, "decision log", gw)
		return
	}
	s.trimDecisions(c.Request.Context(), stream, len(events))
	c.Status(http.StatusNoContent)
}

// trimDecisions trims the stream when it is due.
func (s *Service) trimDecisions(ctx context.Context, st store.LogStream, appended int) {
	if !s.retention.appended(st, appended) {
		return
	}
	if _, err := s.store.TrimLog(ctx, st, s.retention.keep); err != nil {
		s.log.WarnContext(ctx, "trim decision log", "error", err.Error())
	}
}

// decisionLogRetention trims each gateway's decision log to its newest
// keep events. Trimming costs a scan of the kept events, so it is not done
// on every upload: a gateway's log is trimmed at its first upload to this
// replica and then whenever a tenth of keep (at least 1,000 events) has
// been appended since, so a log holds at most keep plus that much.
type decisionLogRetention struct {
	keep int
	mu   sync.Mutex
	// since counts the events appended per gateway since its last trim.
	since map[string]int
}

func newDecisionLogRetention(keep int) *decisionLogRetention {
	if keep <= 0 {
		keep = DefaultDecisionLogsKept
	}
	return &decisionLogRetention{keep: keep, since: map[string]int{}}
}

// every is how many appended events trigger a trim.
func (r *decisionLogRetention) every() int { return max(r.keep/10, 1000) }

// appended records n events appended to the stream and reports whether
// it is time to trim it.
func (r *decisionLogRetention) appended(st store.LogStream, n int) bool {
	key := st.TenantID + "/" + st.Key
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, ok := r.since[key]
	if ok && seen+n < r.every() {
		r.since[key] = seen + n
		return false
	}
	r.since[key] = 0
	return true
}
