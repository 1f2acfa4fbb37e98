package gateway

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/model"
)

// UnknownLabel is the tenant and gateway label value of checks decided
// without an engine (a gateway this authorizer has no bundle for, none
// named, another tenant's). Object ids start with a letter or digit, so
// it never collides with a real one.
const UnknownLabel = "_unknown"

// Metrics of the authorizer.
//
// Cardinality: the tenant and gateway labels of the check metrics (and
// the proxy's upstream metrics) only take the ids of gateways with an
// active bundle in this authorizer — a request naming any other gateway is
// counted under UnknownLabel — and the proxy's service label only the ids
// of services in those bundles. A standalone authorizer has one gateway;
// serve's in-process authorizer one per gateway it compiles. A gateway's
// series are deleted when its engine is removed, and a service's when a
// new revision of its gateway no longer has it.
type Metrics struct {
	checks            *prometheus.CounterVec
	policyTimeouts    *prometheus.CounterVec
	checkDuration     *prometheus.HistogramVec
	upstreamRequests  *prometheus.CounterVec
	upstreamDuration  *prometheus.HistogramVec
	upstreamErrors    *prometheus.CounterVec
	activations       *prometheus.CounterVec
	revision          *prometheus.GaugeVec
	logUploadDuration prometheus.Histogram
	decisionLogs      *decisionLogCollector
}

// NewMetrics registers the authorizer's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_checks_total",
			Help: "Authorization checks by outcome (allow, deny, timeout, error), tenant and gateway. Only gateways with an active bundle have their own tenant and gateway values; checks without one count under " + UnknownLabel + ".",
		}, []string{"outcome", "tenant", "gateway"}),
		policyTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_policy_timeouts_total", Help: "Checks denied because the policy evaluation passed the gateway's policy_timeout_ms.",
		}, []string{"tenant", "gateway"}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_authorizer_check_duration_seconds",
			Help:    "Time to decide one check, by tenant and gateway (only gateways with an active bundle; others under " + UnknownLabel + ").",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"tenant", "gateway"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_proxy_upstream_requests_total",
			Help: "Requests the reverse proxy forwarded that the upstream answered, by tenant, gateway, service (ids of active bundles only) and status class (1xx … 5xx).",
		}, []string{"tenant", "gateway", "service", "code_class"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_proxy_upstream_duration_seconds",
			Help:    "Time from forwarding a request upstream to the upstream's response headers (or the error), by tenant, gateway and service.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tenant", "gateway", "service"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_proxy_upstream_errors_total",
			Help: "Requests the reverse proxy could not forward (upstream unreachable, timed out, invalid upstream URL), by tenant, gateway and service.",
		}, []string{"tenant", "gateway", "service"}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_bundle_activations_total", Help: "Bundle activations by source (control-plane, disk-cache, in-process) and result.",
		}, []string{"source", "result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_authorizer_bundle_revision", Help: "Active bundle revision per gateway.",
		}, []string{"tenant", "gateway"}),
		logUploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_decision_logs_upload_duration_seconds", Help: "Time of one decision log upload attempt.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		decisionLogs: newDecisionLogCollector(),
	}
	for _, c := range []prometheus.Collector{m.checks, m.policyTimeouts, m.checkDuration, m.upstreamRequests,
		m.upstreamDuration, m.upstreamErrors, m.activations, m.revision, m.logUploadDuration, m.decisionLogs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register authorizer metrics: %w", err)
		}
	}
	return m, nil
}

// forgetGateway deletes a removed gateway's series.
func (m *Metrics) forgetGateway(ref model.GatewayRef) {
	labels := prometheus.Labels{"tenant": ref.TenantID, "gateway": ref.GatewayID}
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.checks, m.policyTimeouts, m.checkDuration, m.upstreamRequests, m.upstreamDuration, m.upstreamErrors} {
		v.DeletePartialMatch(labels)
	}
}

// forgetServices deletes the upstream series of the services old had and
// cur has not.
func (m *Metrics) forgetServices(ref model.GatewayRef, old, cur *Engine) {
	if old == nil || cur == nil {
		return
	}
	for id := range old.cfg.Services {
		if _, kept := cur.cfg.Services[id]; kept {
			continue
		}
		labels := prometheus.Labels{"tenant": ref.TenantID, "gateway": ref.GatewayID, "service": id}
		m.upstreamRequests.DeletePartialMatch(labels)
		m.upstreamDuration.DeletePartialMatch(labels)
		m.upstreamErrors.DeletePartialMatch(labels)
	}
}

// watch keeps the series in step with engines: a removed gateway's and a
// dropped service's disappear.
func (m *Metrics) watch(engines *Engines) {
	engines.watch(func(ref model.GatewayRef, old, cur *Engine) {
		if cur == nil {
			m.forgetGateway(ref)
			return
		}
		m.forgetServices(ref, old, cur)
	})
}

// codeClass is an HTTP status's class label ("2xx").
func codeClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return string(rune('0'+status/100)) + "xx"
}

// attachDecisionLogs makes l's counters part of the metrics (summed over
// every logger attached).
func (m *Metrics) attachDecisionLogs(l *DecisionLogger) {
	m.decisionLogs.mu.Lock()
	m.decisionLogs.loggers = append(m.decisionLogs.loggers, l)
	m.decisionLogs.mu.Unlock()
}

// decisionLogCollector reads the decision loggers' own counters, so the
// request path only touches the logger's atomics.
type decisionLogCollector struct {
	mu      sync.Mutex
	loggers []*DecisionLogger

	events, sent, dropped, skipped, bufferedEvents, bufferedBytes, uploads *prometheus.Desc
}

func newDecisionLogCollector() *decisionLogCollector {
	return &decisionLogCollector{
		events: prometheus.NewDesc("gatehouse_decision_logs_events_total",
			"Decision log events made: the decisions the decision log mode logs.", nil, nil),
		skipped: prometheus.NewDesc("gatehouse_decision_logs_skipped_total",
			"Decisions the decision log mode left out (not lost), by mode: off, denied, sample.", []string{"mode"}, nil),
		sent: prometheus.NewDesc("gatehouse_decision_logs_sent_total",
			"Decision log events delivered to the control plane.", nil, nil),
		dropped: prometheus.NewDesc("gatehouse_decision_logs_dropped_total",
			"Decision log events lost, by reason: buffer_full, queue_full, encode_error, rejected, shutdown, spill_error.", []string{"reason"}, nil),
		bufferedEvents: prometheus.NewDesc("gatehouse_decision_logs_buffered_events",
			"Decision log events waiting for delivery (memory and disk).", nil, nil),
		bufferedBytes: prometheus.NewDesc("gatehouse_decision_logs_buffered_bytes",
			"Bytes the waiting decision log events take, by medium (memory, disk).", []string{"medium"}, nil),
		uploads: prometheus.NewDesc("gatehouse_decision_logs_uploads_total",
			"Decision log upload attempts by result (ok, error, rejected).", []string{"result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *decisionLogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.sent, c.dropped, c.skipped, c.bufferedEvents, c.bufferedBytes, c.uploads} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *decisionLogCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	loggers := c.loggers
	c.mu.Unlock()
	var sum DecisionLogStatus
	sum.Dropped, sum.Uploads, sum.Skipped = map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
	for _, l := range loggers {
		st := l.Status()
		sum.Events += st.Events
		sum.Sent += st.Sent
		sum.BufferedEvents += st.BufferedEvents
		sum.BufferedBytes += st.BufferedBytes
		sum.SpilledBytes += st.SpilledBytes
		for k, v := range st.Dropped {
			sum.Dropped[k] += v
		}
		for k, v := range st.Uploads {
			sum.Uploads[k] += v
		}
		for k, v := range st.Skipped {
			sum.Skipped[k] += v
		}
	}
	ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(sum.Events))
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(sum.Sent))
	for _, r := range dropReasonIndex {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(sum.Dropped[r]), r)
	}
	for k := model.DecisionLogsOff; k < model.DecisionLogKinds; k++ {
		ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(sum.Skipped[k.String()]), k.String())
	}
	ch <- prometheus.MustNewConstMetric(c.bufferedEvents, prometheus.GaugeValue, float64(sum.BufferedEvents))
	ch <- prometheus.MustNewConstMetric(c.bufferedBytes, prometheus.GaugeValue, float64(sum.BufferedBytes), "memory")
	ch <- prometheus.MustNewConstMetric(c.bufferedBytes, prometheus.GaugeValue, float64(sum.SpilledBytes), "disk")
	for _, r := range uploadResults {
		ch <- prometheus.MustNewConstMetric(c.uploads, prometheus.CounterValue, float64(sum.Uploads[r]), r)
	}
}
