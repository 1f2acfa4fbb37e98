package bundleservice

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
)

// maxStatusUpload caps a status report.
const maxStatusUpload = 4 << 20

// opaStatusReport is the part of OPA's status report (UpdateRequestV1) the
// control plane keeps.
type opaStatusReport struct {
	Labels  map[string]string `json:"labels"`
	Bundles map[string]struct {
		Name                     string            `json:"name"`
		ActiveRevision           string            `json:"active_revision"`
		LastSuccessfulActivation *time.Time        `json:"last_successful_activation"`
		LastSuccessfulDownload   *time.Time        `json:"last_successful_download"`
		Code                     string            `json:"code"`
		Message                  string            `json:"message"`
		Errors                   []json.RawMessage `json:"errors"`
	} `json:"bundles"`
	DecisionLogs *struct {
		Code    string                     `json:"code"`
		Message string                     `json:"message"`
		Metrics map[string]json.RawMessage `json:"metrics"`
		// Mode and ModeSource are the Gatehouse authorizer's decision
		// log mode in effect and where it comes from (OPA sends neither).
		Mode       string `json:"mode"`
		ModeSource string `json:"mode_source"`
	} `json:"decision_logs"`
	Plugins map[string]struct {
		State   string `json:"state"`
		Message string `json:"message"`
	} `json:"plugins"`
	// TokenIssuers are the Gatehouse authorizer's token issuers whose keys
	// it cannot fetch, by issuer id (OPA sends none).
	TokenIssuers map[string]struct {
		Code    string     `json:"code"`
		Message string     `json:"message"`
		Since   *time.Time `json:"since"`
		HasKeys bool       `json:"has_keys"`
	} `json:"token_issuers"`
}

// Bounds of the token issuer problems kept from one report.
const (
	maxReportedIssuers       = 32
	maxReportedIssuerMessage = 512
)

// receiveStatus stores an OPA status report (one per OPA instance); the
// admin API shows them in the gateway's status.opa.
func (s *Service) receiveStatus(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	var rep opaStatusReport
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxStatusUpload))
	if err != nil {
		httpapi.Abort(c, httpapi.JSONError(err, maxStatusUpload))
		return
	}
	if apiErr := httpapi.NotNull(body); apiErr != nil {
		httpapi.Abort(c, apiErr)
		return
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		httpapi.Abort(c, httpapi.JSONError(err, maxStatusUpload))
		return
	}
	inst := bundles.OPAInstance{ID: rep.Labels["id"], LastSeen: time.Now().UTC(), Labels: rep.Labels, Plugins: map[string]string{}}
	if inst.ID == "" || len(inst.ID) > 128 {
		inst.ID = "unlabelled"
	}
	for name, b := range rep.Bundles {
		if b.ActiveRevision != "" {
			inst.ActiveRevision = b.ActiveRevision
			inst.LastActivation = b.LastSuccessfulActivation
		}
		if b.Code != "" || b.Message != "" {
			inst.Errors = append(inst.Errors, fmt.Sprintf("bundle %s: %s %s", name, b.Code, b.Message))
		}
		for _, e := range b.Errors {
			inst.Errors = append(inst.Errors, fmt.Sprintf("bundle %s: %s", name, strings.Trim(string(e), `"`)))
		}
	}
	if d := rep.DecisionLogs; d != nil && (d.Code != "" || d.Message != "") {
		inst.Errors = append(inst.Errors, fmt.Sprintf("decision logs: %s %s", d.Code, d.Message))
	}
	ids := make([]string, 0, len(rep.TokenIssuers))
	for id := range rep.TokenIssuers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for i, id := range ids {
		if i == maxReportedIssuers {
			inst.Errors = append(inst.Errors, fmt.Sprintf("token issuers: %d more cannot fetch their keys", len(ids)-i))
			break
		}
		is := rep.TokenIssuers[id]
		msg := fmt.Sprintf("token issuer %s: %s", truncate(id, 128), truncate(is.Message, maxReportedIssuerMessage))
		if is.Since != nil {
			msg += " (since " + is.Since.UTC().Format(time.RFC3339) + ")"
		}
		if is.HasKeys {
			msg += "; tokens are verified with the keys fetched before"
		} else {
			msg += "; its tokens are refused"
		}
		inst.Errors = append(inst.Errors, msg)
	}
	for name, p := range rep.Plugins {
		inst.Plugins[name] = p.State
	}
	var dlMetrics map[string]json.RawMessage
	var mode, source string
	if d := rep.DecisionLogs; d != nil {
		dlMetrics, mode, source = d.Metrics, d.Mode, d.ModeSource
	}
	inst.DecisionLogs = decisionLogMetrics(dlMetrics, inst.Plugins["decision_logs"])
	if inst.DecisionLogs != nil {
		inst.DecisionLogs.Mode, inst.DecisionLogs.ModeSource = reportedMode(mode, source)
	}
	if err := bundles.PutOPAInstance(c.Request.Context(), s.store, tid, gw, inst); err != nil {
		httpapi.Abort(c, httpapi.Internal(err))
		return
	}
	if err := bundles.PruneOPAInstances(c.Request.Context(), s.store, tid, gw); err != nil {
		s.log.WarnContext(c.Request.Context(), "prune OPA status", "error", err.Error())
	}
	c.Status(http.StatusNoContent)
}

// Where a reported decision log mode comes from (bundles.OPADecisionLogs
// ModeSource): the gateway's setting or the authorizer's override.
var modeSources = map[string]bool{"gateway": true, "authorizer": true}

// reportedMode keeps a reported decision log mode when it is one the
// control plane knows (in its canonical form) and its source with it;
// anything else is left out.
func reportedMode(mode, source string) (string, string) {
	m, err := model.ParseDecisionLogMode(mode)
	if err != nil || m.String() != mode {
		return "", ""
	}
	if !modeSources[source] {
		source = ""
	}
	return mode, source
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
	for k := model.DecisionLogsOff; k < model.DecisionLogKinds; k++ {
		if v := num("counter_decision_logs_skipped_" + k.String()); v != nil {
			if d.SkippedByMode == nil {
				d.SkippedByMode = map[string]int64{}
			}
			d.SkippedByMode[k.String()] = *v
		}
	}
	d.Skipped = num("counter_decision_logs_skipped")
	return d
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
