package admin

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/store"
)

// DefaultDecisionLogsKept is how many decision log events are kept per
// gateway unless Options.DecisionLogsKept says otherwise.
const DefaultDecisionLogsKept = 100000

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

// trim trims the stream when it is due.
func (s *Server) trimDecisions(ctx context.Context, st store.LogStream, appended int) {
	if !s.decisionLogs.appended(st, appended) {
		return
	}
	if _, err := s.store.TrimLog(ctx, st, s.decisionLogs.keep); err != nil {
		s.log.WarnContext(ctx, "trim decision log", "error", err.Error())
	}
}

// decisionLogMetrics reads the decision_logs status of a report: OPA's
// metrics (numbers by name) and the plugin's state. Unknown metrics and
// values that are not whole numbers are ignored.
func decisionLogMetrics(metrics map[string]json.RawMessage, state string) *bundles.OPADecisionLogs {
	if len(metrics) == 0 && state == "" {
		return nil
	}
	d := &bundles.OPADecisionLogs{State: state, DroppedByReason: map[string]int64{}}
	num := func(name string) *int64 {
		var n json.Number
		if raw, ok := metrics[name]; !ok || json.Unmarshal(raw, &n) != nil {
			return nil
		}
		v, err := n.Int64()
		if err != nil || v < 0 {
			return nil
		}
		return &v
	}
	d.Events, d.Sent = num("counter_decision_logs_events"), num("counter_decision_logs_sent")
	d.BufferedEvents, d.BufferedBytes = num("gauge_decision_logs_buffered_events"), num("gauge_decision_logs_buffered_bytes")
	for name := range metrics {
		reason, ok := strings.CutPrefix(name, "counter_decision_logs_dropped_")
		if !ok || reason == "" || len(reason) > 64 || len(d.DroppedByReason) >= 32 {
			continue
		}
		if v := num(name); v != nil {
			d.DroppedByReason[reason] = *v
			d.Dropped += *v
		}
	}
	if v := num("counter_decision_logs_dropped"); v != nil && *v > d.Dropped {
		d.Dropped = *v
	}
	return d
}
