package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

const petsRego = `package policy

default allow := false

allow if {
	input.attributes.request.http.headers["x-key"] == "good"
	input.gatehouse.path_params.id != "locked"
}

allow if input.parsed_query.override[0] == "yes"

allow if input.parsed_body.admin == true

headers := {"x-pet-id": input.gatehouse.path_params.id} if allow

request_headers_to_remove := ["x-key"] if allow

response_headers_to_add := {"x-checked": "yes"} if allow

reason := "locked pet" if input.gatehouse.path_params.id == "locked"

http_status := 423 if input.gatehouse.path_params.id == "locked"

body := "{\"error\":\"locked\"}" if input.gatehouse.path_params.id == "locked"

dynamic_metadata := {"pet": input.gatehouse.path_params.id}
`

func testCompiled(t testing.TB, mutate func(*policies.Config)) *policies.Compiled {
	t.Helper()
	cfg := &policies.Config{
		Revision: 7,
		Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
		Services: []policies.Object[model.ServiceSpec]{{ID: "pets", Name: "pets", Spec: model.ServiceSpec{URL: "http://127.0.0.1:9"}}},
		APIs: []policies.Object[model.APISpec]{
			{ID: "get-pet", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/pets/{id}", PolicyID: "pets"}},
			{ID: "post-pet", Spec: model.APISpec{ServiceID: "pets", Method: "POST", Path: "/pets", PolicyID: "pets"}},
			{ID: "health", Spec: model.APISpec{ServiceID: "pets", Method: "GET", Path: "/healthz", Public: true}},
			{ID: "dry", Spec: model.APISpec{ServiceID: "pets", Method: "DELETE", Path: "/pets/{id}", PolicyID: "dry-deny"}},
		},
		Policies: []policies.Object[model.PolicySpec]{
			{ID: "pets", Name: "pets", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: petsRego}},
			{ID: "dry-deny", Name: "dry", Spec: model.PolicySpec{Language: model.LanguageValidators, DryRun: true,
				Validators: []model.ValidatorConfig{{Name: "false"}}}},
		},
		// The longest policy deadline: tests run on loaded machines, and
		// only the deadline tests (timeout_test.go) should ever meet one.
		Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy,
			PolicyTimeoutMS: model.MaxPolicyTimeoutMS}}},
	}
	if mutate != nil {
		mutate(cfg)
	}
	c, err := policies.Compile(cfg, "edge")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func activate(t testing.TB, engines *Engines, c *policies.Compiled, rev string) *Engine {
	t.Helper()
	src, err := SourceFromCompiled(c, rev)
	if err != nil {
		t.Fatal(err)
	}
	a := &Activator{Engines: engines}
	e, err := a.Activate(context.Background(), src, "test")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// startGRPC serves s on a loopback port and returns a client connection.
func startGRPC(t testing.TB, s *Server) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	s.Register(gs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func check(method, path string, headers map[string]string) *authv3.CheckRequest {
	if headers == nil {
		headers = map[string]string{}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "pets.example.com", Headers: headers}}}}
}

func TestExtAuthzOverGRPC(t *testing.T) {
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	srv := NewServer(ServerOptions{Engines: engines, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	conn := startGRPC(t, srv)
	client := authv3.NewAuthorizationClient(conn)
	health := healthpb.NewHealthClient(conn)
	ctx := context.Background()

	if !t.Run("without a bundle it is not serving and denies every check", func(t *testing.T) {
		if st, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || st.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health before a bundle: %v %v", st, err)
		}
		res, err := client.Check(ctx, check("GET", "/healthz", nil))
		if err != nil || res.Status.Code != int32(code.Code_PERMISSION_DENIED) || res.GetDeniedResponse().GetStatus().GetCode() != 503 {
			t.Fatalf("check without a bundle must be denied: %v %v", res, err)
		}
	}) {
		return
	}

	if !t.Run("with a bundle it is serving", func(t *testing.T) {
		activate(t, engines, testCompiled(t, nil), "7")
		srv.updateHealth()
		if st, _ := health.Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName}); st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health with a bundle: %v", st)
		}
	}) {
		return
	}

	type want struct {
		code    code.Code
		status  int32
		headers map[string]string
		remove  []string
		body    string
	}
	jsonBody := check("POST", "/pets", map[string]string{"content-type": "application/json"})
	jsonBody.Attributes.Request.Http.Body = `{"admin": true}`
	ext := check("GET", "/not/routed/by/path", map[string]string{"x-key": "good"})
	ext.Attributes.ContextExtensions = map[string]string{"tenant": "acme", "service": "pets", "api": "health"}
	otherTenant := check("GET", "/healthz", nil)
	otherTenant.Attributes.ContextExtensions = map[string]string{"tenant": "evil", "api": "health"}
	cases := []struct {
		name string
		req  *authv3.CheckRequest
		want want
	}{
		{"allowed with path params", check("GET", "/pets/7", map[string]string{"x-key": "good"}),
			want{code.Code_OK, 0, map[string]string{"x-pet-id": "7"}, []string{"x-key"}, ""}},
		{"denied without a token: 401", check("GET", "/pets/7", map[string]string{"x-key": "bad"}),
			want{code.Code_UNAUTHENTICATED, 401, map[string]string{"www-authenticate": "Bearer"}, nil, ""}},
		{"policy status, body and reason", check("GET", "/pets/locked", map[string]string{"x-key": "good"}),
			want{code.Code_PERMISSION_DENIED, 423, nil, nil, `{"error":"locked"}`}},
		{"query", check("GET", "/pets/1?override=yes", nil), want{code.Code_OK, 0, map[string]string{"x-pet-id": "1"}, nil, ""}},
		{"JSON body", jsonBody, want{code.Code_OK, 0, nil, []string{"x-key"}, ""}},
		{"public", check("GET", "/healthz", nil), want{code.Code_OK, 0, nil, nil, ""}},
		{"unknown route", check("GET", "/cats", nil), want{code.Code_PERMISSION_DENIED, 404, nil, nil, ""}},
		{"context extensions pick the API", ext, want{code.Code_OK, 0, nil, nil, ""}},
		{"extensions of another tenant: never decided", otherTenant, want{code.Code_PERMISSION_DENIED, 403, map[string]string{"content-type": "application/json"}, nil,
			`{"status_code":403,"error":"the route names another tenant than the gateway's","error_code":"foreign_tenant"}`}},
		{"dry-run policy allows", check("DELETE", "/pets/1", nil), want{code.Code_OK, 0, nil, nil, ""}},
	}
	t.Run("checks are decided", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				res, err := client.Check(ctx, c.req)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if res.Status.Code != int32(c.want.code) {
					t.Errorf("%s: code %v (%s), want %v", c.name, code.Code(res.Status.Code), res.Status.Message, c.want.code)
					return
				}
				got := map[string]string{}
				if ok := res.GetOkResponse(); ok != nil {
					for _, h := range ok.Headers {
						got[h.Header.Key] = h.Header.Value
					}
					if len(c.want.remove) > 0 && (len(ok.HeadersToRemove) != 1 || ok.HeadersToRemove[0] != c.want.remove[0]) {
						t.Errorf("%s: headers to remove %v", c.name, ok.HeadersToRemove)
					}
				}
				if d := res.GetDeniedResponse(); d != nil {
					if int32(d.Status.Code) != c.want.status || d.Body != c.want.body {
						t.Errorf("%s: denied %d %q", c.name, d.Status.Code, d.Body)
					}
					for _, h := range d.Headers {
						got[h.Header.Key] = h.Header.Value
					}
				}
				for k, v := range c.want.headers {
					if got[k] != v {
						t.Errorf("%s: header %s = %q, want %q (all %v)", c.name, k, got[k], v, got)
					}
				}
			})
		}
	})
	t.Run("the policy's dynamic metadata is returned", func(t *testing.T) {
		res, _ := client.Check(ctx, check("GET", "/pets/9", map[string]string{"x-key": "good"}))
		if res.DynamicMetadata.GetFields()["pet"].GetStringValue() != "9" {
			t.Errorf("dynamic metadata: %v", res.DynamicMetadata)
		}
	})
	t.Run("server reflection lists the service", func(t *testing.T) {
		rc, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		rr, err := rc.Recv()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range rr.GetListServicesResponse().GetService() {
			found = found || s.Name == authv3.Authorization_ServiceDesc.ServiceName
		}
		if !found {
			t.Errorf("reflection does not list the ext_authz service: %v", rr)
		}
	})
}

func TestActivationIsAnAtomicSwap(t *testing.T) {
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	first := activate(t, engines, testCompiled(t, nil), "7")
	inFlight := engines.For(nil)
	second := activate(t, engines, testCompiled(t, func(c *policies.Config) {
		c.APIs[2].Spec.Public = false
	}), "8")
	if inFlight != first || engines.For(nil) != second {
		t.Fatal("activation must swap the engine for new checks only")
	}
	// The engine a check started with still decides by its own revision.
	d, err := inFlight.Decide(context.Background(), RequestFromCheck(check("GET", "/healthz", nil)))
	if err != nil || !d.Allowed {
		t.Fatalf("in-flight engine changed under a check: %v %v", d, err)
	}
	d, _ = engines.For(nil).Decide(context.Background(), RequestFromCheck(check("GET", "/healthz", nil)))
	if d.Allowed {
		t.Fatal("the new revision is not in force")
	}
}
