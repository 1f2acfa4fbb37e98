package bundles

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/store"
)

// TestGatewayRuntimeState: status reports are read back newest first (the
// newest deciding the active revision and errors) with the last fetch and
// the instances' decision log figures summed; pruning keeps the
// MaxOPAInstances seen last; forgetting a gateway drops its reports,
// activity and decision log and nothing of another gateway's.
func TestGatewayRuntimeState(t *testing.T) {
	st := testkit.Store(t)
	ctx := context.Background()
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	sent := int64(5)
	for i, gw := range []string{"edge", "edge", "side"} {
		inst := OPAInstance{ID: []string{"a", "b", "a"}[i], LastSeen: base.Add(time.Duration(i) * time.Minute),
			ActiveRevision: []string{"3", "4", "9"}[i], Errors: []string{[]string{"old", "new", "other"}[i]},
			DecisionLogs: &OPADecisionLogs{State: "ERROR", Sent: &sent, Dropped: 2, DroppedByReason: map[string]int64{"buffer_full": 2}}}
		if err := PutOPAInstance(ctx, st, "acme", gw, inst); err != nil {
			t.Fatal(err)
		}
	}
	if err := RecordFetch(ctx, st, "acme", "edge", "10.0.0.1", base); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{"edge", "side"} {
		if err := st.AppendLog(ctx, DecisionLog("acme", gw), []json.RawMessage{json.RawMessage(`{"decision_id":"d1"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	status := GatewayOPAStatus(ctx, st, "acme", "edge")
	if len(status.Instances) != 2 || status.Instances[0].ID != "b" || status.ActiveRevision != "4" ||
		len(status.Errors) != 1 || status.Errors[0] != "new" || status.LastFetch == nil || !status.LastFetch.Equal(base) {
		t.Fatalf("edge's status: %+v", status)
	}
	if d := status.DecisionLogs; d == nil || d.Dropped != 4 || d.DroppedByReason["buffer_full"] != 4 || d.Sent != 10 || len(d.Failing) != 2 {
		t.Fatalf("edge's decision log summary: %+v", status.DecisionLogs)
	}

	for i := range MaxOPAInstances + 3 {
		inst := OPAInstance{ID: "i" + string(rune('A'+i)), LastSeen: base.Add(time.Hour + time.Duration(i)*time.Second)}
		if err := PutOPAInstance(ctx, st, "acme", "edge", inst); err != nil {
			t.Fatal(err)
		}
	}
	if err := PruneOPAInstances(ctx, st, "acme", "edge"); err != nil {
		t.Fatal(err)
	}
	status = GatewayOPAStatus(ctx, st, "acme", "edge")
	if n := len(status.Instances); n != MaxOPAInstances || status.Instances[n-1].ID != "iD" {
		t.Fatalf("after pruning: %d instances, the oldest %s", n, status.Instances[n-1].ID)
	}

	if err := ForgetGatewayRuntime(ctx, st, "acme", "edge"); err != nil {
		t.Fatal(err)
	}
	status = GatewayOPAStatus(ctx, st, "acme", "edge")
	logs, err := st.ListLog(ctx, store.LogQuery{Stream: DecisionLog("acme", "edge"), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(status.Instances) != 0 || status.LastFetch != nil || status.DecisionLogs != nil || len(logs.Items) != 0 {
		t.Fatalf("a forgotten gateway: %+v, %d decisions", status, len(logs.Items))
	}
	other := GatewayOPAStatus(ctx, st, "acme", "side")
	logs, err = st.ListLog(ctx, store.LogQuery{Stream: DecisionLog("acme", "side"), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(other.Instances) != 1 || other.ActiveRevision != "9" || len(logs.Items) != 1 {
		t.Fatalf("another gateway after forgetting edge: %+v, %d decisions", other, len(logs.Items))
	}
}
