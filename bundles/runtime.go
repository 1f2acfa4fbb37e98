package bundles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Gateway runtime state: what the control plane keeps of a gateway's
// authorizers as the bundle service hears from them (store.Runtime values,
// not configuration) — the last status report of each OPA instance, when
// the gateway last fetched its bundle, and its decision log. The bundle
// service writes it, the admin API shows it (a gateway's status.opa, its
// decisions listing), and a deleted gateway's is forgotten (ForgetGateway)
// so a gateway created later with the same id starts clean.

// Runtime state kinds.
const (
	// StatusKind holds the last status report of each OPA instance of a
	// gateway, under the id "<gateway>/<instance>" (OPAInstance).
	StatusKind = "opa-status"
	// ActivityKind holds when a gateway last fetched its bundle, under the
	// gateway's id.
	ActivityKind = "gateway-activity"
)

// MaxOPAInstances bounds the instances remembered per gateway
// (PruneOPAInstances); the ones not seen for the longest go first.
const MaxOPAInstances = 32

// DecisionLog is the log stream of the decision log events gateway gw of
// tenant tid uploaded.
func DecisionLog(tid, gw string) store.LogStream {
	return store.LogStream{Name: model.DecisionLogStream, TenantID: tid, Key: gw}
}

// OPAInstance is what is kept of one OPA instance's last status report.
type OPAInstance struct {
	ID             string            `json:"id"`
	LastSeen       time.Time         `json:"last_seen"`
	ActiveRevision string            `json:"active_revision,omitempty"`
	LastActivation *time.Time        `json:"last_successful_activation,omitempty"`
	Errors         []string          `json:"errors,omitempty"`
	Plugins        map[string]string `json:"plugins,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// DecisionLogs is the instance's decision log state and counters.
	DecisionLogs *OPADecisionLogs `json:"decision_logs,omitempty"`
}

// OPADecisionLogs is what an instance's status report says of its
// decision logs: the decision_logs plugin state and OPA's counters
// (counter_decision_logs_dropped_<reason> and the Gatehouse authorizer's
// events, sent, dropped and buffered figures).
type OPADecisionLogs struct {
	State           string           `json:"state,omitempty"`
	Events          *int64           `json:"events,omitempty"`
	Sent            *int64           `json:"sent,omitempty"`
	Dropped         int64            `json:"dropped"`
	DroppedByReason map[string]int64 `json:"dropped_by_reason"`
	BufferedEvents  *int64           `json:"buffered_events,omitempty"`
	BufferedBytes   *int64           `json:"buffered_bytes,omitempty"`
	// Skipped and SkippedByMode count the decisions the mode left out
	// (not lost), by the kind of mode (off, denied, sample).
	Skipped       *int64           `json:"skipped,omitempty"`
	SkippedByMode map[string]int64 `json:"skipped_by_mode,omitempty"`
	// Mode is the decision log mode in effect (on, off, denied or
	// sample:N) and ModeSource where it comes from: "gateway" (the
	// gateway's decision_logs, from its bundle) or "authorizer" (the
	// authorizer's --decision-logs, overriding it).
	Mode       string `json:"mode,omitempty"`
	ModeSource string `json:"mode_source,omitempty"`
}

// OPAStatus summarises a gateway's OPA instances (the admin API's
// status.opa of a gateway).
type OPAStatus struct {
	ActiveRevision string        `json:"active_revision,omitempty"`
	LastSeen       *time.Time    `json:"last_seen,omitempty"`
	LastFetch      *time.Time    `json:"last_fetch,omitempty"`
	Errors         []string      `json:"errors"`
	Instances      []OPAInstance `json:"instances"`
	// DecisionLogs sums the instances' decision log counters (absent when
	// no instance reports them).
	DecisionLogs *DecisionLogsSummary `json:"decision_logs,omitempty"`
}

// DecisionLogsSummary sums the instances' decision log figures for the
// gateway's status.
type DecisionLogsSummary struct {
	// Dropped and DroppedByReason add up the instances' counters (each
	// since that instance started).
	Dropped         int64            `json:"dropped"`
	DroppedByReason map[string]int64 `json:"dropped_by_reason"`
	Sent            int64            `json:"sent"`
	BufferedEvents  int64            `json:"buffered_events"`
	// Skipped adds up the decisions the instances' modes left out.
	Skipped int64 `json:"skipped"`
	// Modes are the decision log modes the instances report, sorted.
	Modes []string `json:"modes"`
	// Failing lists the instances whose uploads fail (state ERROR).
	Failing []string `json:"failing"`
}

// PutOPAInstance records inst as the last status report of its instance
// of gateway gw of tenant tid.
func PutOPAInstance(ctx context.Context, st store.Runtime, tid, gw string, inst OPAInstance) error {
	raw, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("encode the status of OPA instance %s: %w", inst.ID, err)
	}
	if err := st.PutState(ctx, StatusKind, tid, gw+"/"+inst.ID, raw); err != nil {
		return fmt.Errorf("record the status of OPA instance %s of gateway %s/%s: %w", inst.ID, tid, gw, err)
	}
	return nil
}

// PruneOPAInstances forgets the instances of gateway gw beyond the
// MaxOPAInstances seen most recently.
func PruneOPAInstances(ctx context.Context, st store.Runtime, tid, gw string) error {
	status := GatewayOPAStatus(ctx, st, tid, gw) // newest first
	var errs []error
	for _, inst := range status.Instances[min(len(status.Instances), MaxOPAInstances):] {
		if err := st.DeleteState(ctx, StatusKind, tid, gw+"/"+inst.ID); err != nil {
			errs = append(errs, fmt.Errorf("forget OPA instance %s of gateway %s/%s: %w", inst.ID, tid, gw, err))
		}
	}
	return errors.Join(errs...)
}

// RecordFetch records that gateway gw of tenant tid fetched its bundle at
// at, from remote.
func RecordFetch(ctx context.Context, st store.Runtime, tid, gw, remote string, at time.Time) error {
	body, err := json.Marshal(map[string]any{"last_fetch": at.UTC(), "remote": remote})
	if err != nil {
		return fmt.Errorf("encode the activity of gateway %s/%s: %w", tid, gw, err)
	}
	return st.PutState(ctx, ActivityKind, tid, gw, body)
}

// GatewayOPAStatus assembles gateway gw's OPAStatus from its instances'
// reports: the newest report decides the active revision and errors. A
// store that cannot list the reports is said in Errors.
func GatewayOPAStatus(ctx context.Context, st store.Runtime, tid, gw string) OPAStatus {
	status := OPAStatus{Errors: []string{}, Instances: []OPAInstance{}}
	entries, err := st.ListState(ctx, StatusKind, tid)
	if err != nil {
		status.Errors = append(status.Errors, "status unavailable: "+err.Error())
		return status
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.ID, gw+"/") {
			continue
		}
		var inst OPAInstance
		if json.Unmarshal(e.Value, &inst) == nil {
			status.Instances = append(status.Instances, inst)
		}
	}
	sort.Slice(status.Instances, func(i, j int) bool { return status.Instances[i].LastSeen.After(status.Instances[j].LastSeen) })
	if len(status.Instances) > 0 {
		newest := status.Instances[0]
		status.ActiveRevision, status.LastSeen = newest.ActiveRevision, &newest.LastSeen
		status.Errors = append(status.Errors, newest.Errors...)
	}
	status.DecisionLogs = summariseDecisionLogs(status.Instances)
	if e, err := st.GetState(ctx, ActivityKind, tid, gw); err == nil {
		var act struct {
			LastFetch time.Time `json:"last_fetch"`
		}
		if json.Unmarshal(e.Value, &act) == nil {
			status.LastFetch = &act.LastFetch
		}
	}
	return status
}

func summariseDecisionLogs(instances []OPAInstance) *DecisionLogsSummary {
	var v *DecisionLogsSummary
	for _, inst := range instances {
		d := inst.DecisionLogs
		if d == nil {
			continue
		}
		if v == nil {
			v = &DecisionLogsSummary{DroppedByReason: map[string]int64{}, Failing: []string{}, Modes: []string{}}
		}
		if d.Skipped != nil {
			v.Skipped += *d.Skipped
		}
		if d.Mode != "" && !slices.Contains(v.Modes, d.Mode) {
			v.Modes = append(v.Modes, d.Mode)
		}
		v.Dropped += d.Dropped
		for r, n := range d.DroppedByReason {
			v.DroppedByReason[r] += n
		}
		if d.Sent != nil {
			v.Sent += *d.Sent
		}
		if d.BufferedEvents != nil {
			v.BufferedEvents += *d.BufferedEvents
		}
		if d.State == "ERROR" {
			v.Failing = append(v.Failing, inst.ID)
		}
	}
	if v != nil {
		slices.Sort(v.Modes)
	}
	return v
}

// ForgetGatewayRuntime drops the runtime state of gateway gw of tenant
// tid — its decision log, its instances' status reports and its activity
// — and reports what could not be dropped (it drops all it can).
func ForgetGatewayRuntime(ctx context.Context, st store.Runtime, tid, gw string) error {
	var errs []error
	if _, err := st.TrimLog(ctx, DecisionLog(tid, gw), 0); err != nil {
		errs = append(errs, fmt.Errorf("drop the decision log: %w", err))
	}
	for _, inst := range GatewayOPAStatus(ctx, st, tid, gw).Instances {
		if err := st.DeleteState(ctx, StatusKind, tid, gw+"/"+inst.ID); err != nil {
			errs = append(errs, fmt.Errorf("drop the status of OPA instance %s: %w", inst.ID, err))
		}
	}
	if err := st.DeleteState(ctx, ActivityKind, tid, gw); err != nil {
		errs = append(errs, fmt.Errorf("drop the activity: %w", err))
	}
	return errors.Join(errs...)
}

// ForgetGateway drops a deleted gateway's runtime state from the manager's
// store (ForgetGatewayRuntime), so a gateway created later with the same
// id starts clean; what cannot be dropped is logged. The admin API calls
// it after a gateway's deletion commits (a gateway deleted, or left out
// of a configuration import).
func (m *Manager) ForgetGateway(ctx context.Context, tenantID, gatewayID string) {
	if err := ForgetGatewayRuntime(ctx, m.store, tenantID, gatewayID); err != nil {
		m.log.WarnContext(ctx, "forget the runtime data of a deleted gateway", "tenant", tenantID, "gateway", gatewayID, "error", err.Error())
	}
}
