package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the authorizer.
type Metrics struct {
	checks         *prometheus.CounterVec
	policyTimeouts *prometheus.CounterVec
	checkDuration  prometheus.Histogram
	activations    *prometheus.CounterVec
	revision       *prometheus.GaugeVec
	logsDropped    prometheus.Counter
	logsSent       prometheus.Counter
}

// NewMetrics registers the authorizer's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_checks_total", Help: "Authorization checks by outcome (allow, deny, timeout, error).",
		}, []string{"outcome"}),
		policyTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_policy_timeouts_total", Help: "Checks denied because the policy evaluation passed the gateway's policy_timeout_ms.",
		}, []string{"tenant", "gateway"}),
		checkDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gatehouse_authorizer_check_duration_seconds", Help: "Time to decide one check.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_bundle_activations_total", Help: "Bundle activations by source (control-plane, disk-cache, in-process) and result.",
		}, []string{"source", "result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_authorizer_bundle_revision", Help: "Active bundle revision per gateway.",
		}, []string{"tenant", "gateway"}),
		logsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_decision_logs_dropped_total", Help: "Decision log events dropped because the buffer was full or uploads kept failing.",
		}),
		logsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_authorizer_decision_logs_sent_total", Help: "Decision log events delivered to the control plane.",
		}),
	}
	for _, c := range []prometheus.Collector{m.checks, m.policyTimeouts, m.checkDuration, m.activations, m.revision, m.logsDropped, m.logsSent} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register authorizer metrics: %w", err)
		}
	}
	return m, nil
}
