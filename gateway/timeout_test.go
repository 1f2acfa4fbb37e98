package gateway

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// slowRego would take hours and terabytes without its deadline.
const slowRego = `package policy

default allow := false

allow if count([x | some x in numbers.range(1, 1000000000000)]) > 0
`

// counterValue is the value of a counter with exactly these labels.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestSlowPolicyIsDeniedAtTheGatewayDeadline(t *testing.T) {
	compiled := testCompiled(t, func(cfg *policies.Config) {
		cfg.Policies = append(cfg.Policies,
			policies.Object[model.PolicySpec]{ID: "slow", Name: "slow", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: slowRego}},
			policies.Object[model.PolicySpec]{ID: "slow-dry", Name: "slow-dry", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: slowRego, DryRun: true}})
		cfg.APIs = append(cfg.APIs,
			policies.Object[model.APISpec]{ID: "slow-api", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/slow", PolicyID: "slow"}},
			policies.Object[model.APISpec]{ID: "slow-dry-api", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/slow-dry", PolicyID: "slow-dry"}})
		cfg.Gateways[0].Spec.PolicyTimeoutMS = 40
	})
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	reg := prometheus.NewRegistry()
	metrics, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerOptions{Engines: engines, Metrics: metrics, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	activate(t, engines, compiled, "7")
	client := authv3.NewAuthorizationClient(startGRPC(t, srv))

	for i, path := range []string{"/slow", "/slow-dry"} {
		var res *authv3.CheckResponse
		done := make(chan error, 1)
		go func() {
			var err error
			res, err = client.Check(context.Background(), check("GET", path, nil))
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s: the check was not stopped at the policy deadline", path)
		}
		if res.Status.Code != int32(code.Code_PERMISSION_DENIED) || res.Status.Message != PolicyTimeoutReason ||
			res.GetDeniedResponse().GetStatus().GetCode() != 503 {
			t.Fatalf("%s: %v", path, res)
		}
		if got := counterValue(t, reg, "gatehouse_authorizer_policy_timeouts_total", map[string]string{"tenant": "acme", "gateway": "edge"}); got != float64(i+1) {
			t.Fatalf("%s: policy timeouts counter %v", path, got)
		}
		if got := counterValue(t, reg, "gatehouse_authorizer_checks_total", map[string]string{"outcome": "timeout", "tenant": "acme", "gateway": "edge"}); got != float64(i+1) {
			t.Fatalf("%s: timeout checks %v", path, got)
		}
	}
	// The decision names what timed out.
	d, _ := srv.Decide(context.Background(), RequestFromCheck(check("GET", "/slow", nil)))
	if d.Allowed || d.HTTPStatus != 503 || d.Reason != PolicyTimeoutReason || d.PolicyID != "slow" || d.APIID != "slow-api" || d.ServiceID != "pets" {
		t.Fatalf("decision: %+v", d)
	}
	// Other policies of the gateway decide as before.
	res, err := client.Check(context.Background(), check("GET", "/pets/7", map[string]string{"x-key": "good"}))
	if err != nil || res.Status.Code != int32(code.Code_OK) {
		t.Fatalf("a fast policy after a timeout: %v %v", res, err)
	}
	if got := counterValue(t, reg, "gatehouse_authorizer_checks_total", map[string]string{"outcome": "allow", "tenant": "acme", "gateway": "edge"}); got != 1 {
		t.Fatalf("allowed checks %v", got)
	}
}
