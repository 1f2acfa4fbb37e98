package tests

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// TestGatewayCredentialsManaged, against a running gatehouse serve: an
// xDS stream opened with a package's credential records its last use
// (last_used_at in the list, next to its name and creator); a download
// that rotates that credential's secret keeps its id and name and ends
// the stream opened with the old secret; the audit log says who minted
// and rotated it; the tenant's advertised url answers its credential.
func TestGatewayCredentialsManaged(t *testing.T) {
	cp := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, cp.URL, testToken)
	setupGateway(t, c, "http://127.0.0.1:9")
	xdsAddr := cp.waitLog(t, "xDS listening", "addr")

	authorization, credID := packageADSMetadata(t, c, "acme", "edge")
	list := func(t *testing.T) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, x := range c.on(t).must(200, "GET", "/api/admin/acme/gateways/edge/credentials", nil).JSON(t)["credentials"].([]any) {
			m := x.(map[string]any)
			out[m["id"].(string)] = m
		}
		return out
	}
	cred := list(t)[credID]
	if !strings.HasPrefix(cred["name"].(string), "package download by bootstrap-admin at ") || cred["created_by"] != "bootstrap-admin" ||
		cred["last_used_at"] != nil {
		t.Fatalf("the download's credential before use: %v", cred)
	}

	cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(
		metadata.AppendToOutgoingContext(ctx, "authorization", authorization))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: "acme/edge", Cluster: "test"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("ADS with the package's credential: %v", err)
	}
	t.Run("the xDS server's verification records last_used_at", func(t *testing.T) {
		testkit.Eventually(t, 10*time.Second, func() error {
			at, _ := list(t)[credID]["last_used_at"].(string)
			ts, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return err
			}
			return testkit.Check(time.Since(ts) < time.Minute, "last_used_at %s", at)
		})
	})

	t.Run("a rotating download keeps the credential and ends the old secret's stream", func(t *testing.T) {
		pkg := c.on(t).must(200, "GET", "/api/admin/acme/gateways/edge/package?credential="+credID+"&rotate=true", nil)
		if pkg.Header.Get("X-Gateway-Credential-Id") != credID {
			t.Fatalf("rotated package names credential %q, want %q", pkg.Header.Get("X-Gateway-Credential-Id"), credID)
		}
		if _, err := s.Recv(); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("the old secret's stream after the rotation: %v, want Unauthenticated", err)
		}
		if after := list(t)[credID]; after["name"] != cred["name"] || after["created_by"] != "bootstrap-admin" {
			t.Fatalf("after the rotation: %v", after)
		}
		var actions []string
		for _, x := range c.on(t).must(200, "GET", "/api/admin/acme/events?kind=gateway-credentials", nil).JSON(t)["events"].([]any) {
			ev := x.(map[string]any)
			if ev["object_id"] == credID {
				actions = append(actions, ev["action"].(string)+" by "+ev["actor"].(string))
			}
		}
		if strings.Join(actions, ", ") != "rotate by bootstrap-admin, create by bootstrap-admin" {
			t.Fatalf("the credential's audit events: %v", actions)
		}
	})

	t.Run("the tenant's url answers its credential", func(t *testing.T) {
		tenant := c.on(t).must(200, "GET", "/api/system/tenants/acme", nil).JSON(t)
		path, ok := strings.CutPrefix(tenant["url"].(string), cp.URL)
		if !ok {
			t.Fatalf("url %v is not under %s", tenant["url"], cp.URL)
		}
		token := c.on(t).must(201, "POST", "/api/system/tenants/acme/credentials", map[string]any{"name": "ci"}).JSON(t)["token"].(string)
		if got := newClient(t, cp.URL, token).must(200, "GET", path, nil).JSON(t); got["id"] != "acme" {
			t.Fatalf("GET %s: %v", path, got)
		}
	})
}
