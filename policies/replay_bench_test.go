package policies_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/authzkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// benchDraft is a draft of keyed as policies are written: the token's
// scopes by method, an owner check on a path parameter, a header, and a
// reason.
const benchDraft = `package policy

default allow := false

scope_for := {"GET": "pets:read", "DELETE": "pets:write"}

allow if {
	input.gatehouse.token.valid
	scope_for[input.attributes.request.http.method] in input.gatehouse.token.scopes
	not blocked
}

allow if {
	input.attributes.request.http.headers["x-key"] == "open-sesame"
	input.attributes.request.http.method == "GET"
}

blocked if {
	input.attributes.request.http.method == "DELETE"
	input.gatehouse.path_params.id == "0"
}

reason := sprintf("%s %s needs scope %s", [input.attributes.request.http.method, input.gatehouse.api_id, scope_for[input.attributes.request.http.method]]) if not allow
`

// BenchmarkReplay10k replays a draft against 10,000 decisions logged by
// the gateway's authorizer (authzkit): valid tokens with scopes (their
// Authorization header erased in the log), keys, GETs and DELETEs of two
// APIs bound to the policy. Issue 13's target: at most 2 s per replay on
// one core (go test -bench BenchmarkReplay10k -cpu 1 ./policies).
func BenchmarkReplay10k(b *testing.B) {
	const n = 10000
	tokens := authzkit.Tokens{"reader": {"pets:read"}, "writer": {"pets:read", "pets:write"}}
	reqs := make([]authzkit.Request, n)
	for i := range reqs {
		method := "GET"
		if i%3 == 0 {
			method = "DELETE"
		}
		h := map[string]string{"user-agent": "bench/1.0", "accept": "application/json", "x-request-id": fmt.Sprintf("req-%06d", i)}
		switch i % 4 {
		case 0:
			h["authorization"] = "Bearer reader"
		case 1:
			h["authorization"] = "Bearer writer"
		case 2:
			h["x-key"] = "open-sesame"
		}
		reqs[i] = authzkit.Request{Method: method, Host: "pets.example.com", Path: fmt.Sprintf("/pets/%d?page=%d", i%50, i%7), Headers: h}
	}
	decisions := logged(b, replayConfig(model.GatewaySpec{}), tokens, reqs)
	tr := newReplayTester(b, 1, 0)
	draft := model.PolicySpec{Language: model.LanguageRego, Definition: benchDraft}
	var res *policies.ReplayResult
	cpu0 := cpuTime()
	for b.Loop() {
		var err error
		res, err = tr.Replay(context.Background(), policies.ReplayRequest{PolicyID: "keyed", Draft: draft, Limit: n,
			Config:    func(context.Context) (*policies.Config, error) { return replayConfig(model.GatewaySpec{}), nil },
			Decisions: newestFirst(decisions)})
		if err != nil {
			b.Fatal(err)
		}
	}
	if res.Evaluated != n || !res.Complete || res.Errors != 0 || res.Timeouts != 0 || res.Flips.AllowToDeny == 0 || res.Flips.DenyToAllow == 0 {
		b.Fatalf("replay: %d evaluated, complete %v, errors %d, timeouts %d, flips %+v", res.Evaluated, res.Complete, res.Errors, res.Timeouts, res.Flips)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	// The process's CPU time per replay (GC included): on a shared
	// machine it is what the target is about, not the wall time.
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
