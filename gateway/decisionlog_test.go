package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
)

// TestDecisionLogsMaskCredentials: credentials never reach a decision log,
// whatever the letter case of the header or parameter name, wherever the
// query string appears (path, query, fragment, :path and referer headers,
// parsed_query); everything else is logged as it was, and the policy saw
// the request unmasked.
func TestDecisionLogsMaskCredentials(t *testing.T) {
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	activate(t, engines, testCompiled(t, nil), "7")
	sink := &blockingSink{}
	logs := NewDecisionLogger(DecisionLogOptions{Sink: sink, FlushInterval: 20 * time.Millisecond,
		MaskedHeaders: []string{"X-Session"}, MaskedQueryParameters: []string{"Sig"}})
	srv := NewServer(ServerOptions{Engines: engines, Logs: logs})

	const path = "/pets/7?access_token=s3cr3t-a&Id_Token=s3cr3t-b&keep=visible&%63ode=s3cr3t-c&sig=s3cr3t-d&REFRESH_TOKEN=s3cr3t-e"
	req := check("GET", path, map[string]string{
		"x-key": "good", "Authorization": "Basic s3cr3t-g", "COOKIE": "session=s3cr3t-h", "Proxy-Authorization": "Basic s3cr3t-i",
		"set-cookie": "a=s3cr3t-j", "X-Api-Key": "s3cr3t-k", "x-session": "s3cr3t-l",
		":path": "/pets/7?api_key=s3cr3t-m&keep=visible", "Referer": "https://app.example/cb?code=s3cr3t-n&state=xyz",
	})
	req.Attributes.Request.Http.Query = "Access_Token=s3cr3t-o&keep=visible"
	res, err := srv.Check(context.Background(), req)
	if err != nil || res.GetOkResponse() == nil {
		t.Fatalf("the policy must see the request as it is and allow it: %v %v", res, err)
	}
	logs.Close(context.Background())
	if len(sink.events) != 1 {
		t.Fatalf("%d events, want 1", len(sink.events))
	}
	raw := sink.events[0]
	if bytes.Contains(raw, []byte("s3cr3t")) {
		t.Fatalf("a credential was logged: %s", raw)
	}
	var ev struct {
		Input struct {
			Attributes struct {
				Request struct {
					HTTP struct {
						Path    string            `json:"path"`
						Query   string            `json:"query"`
						Headers map[string]string `json:"headers"`
					} `json:"http"`
				} `json:"request"`
			} `json:"attributes"`
			ParsedQuery map[string][]string `json:"parsed_query"`
		} `json:"input"`
		Erased []string `json:"erased"`
		Masked []string `json:"masked"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	h := ev.Input.Attributes.Request.HTTP
	if want := "/pets/7?access_token=REDACTED&Id_Token=REDACTED&keep=visible&%63ode=REDACTED&sig=REDACTED&REFRESH_TOKEN=REDACTED"; h.Path != want {
		t.Errorf("path %q, want %q", h.Path, want)
	}
	if h.Query != "Access_Token=REDACTED&keep=visible" {
		t.Errorf("query %q", h.Query)
	}
	if h.Headers[":path"] != "/pets/7?api_key=REDACTED&keep=visible" || h.Headers["Referer"] != "https://app.example/cb?code=REDACTED&state=xyz" ||
		h.Headers["x-key"] != "good" || len(h.Headers) != 3 {
		t.Errorf("headers %v", h.Headers)
	}
	if fmt.Sprint(ev.Input.ParsedQuery) != "map[keep:[visible]]" {
		t.Errorf("parsed_query %v", ev.Input.ParsedQuery)
	}
	const hp = "/input/attributes/request/http/headers/"
	wantErased := []string{hp + "Authorization", hp + "COOKIE", hp + "Proxy-Authorization", hp + "X-Api-Key", hp + "set-cookie", hp + "x-session",
		"/input/parsed_query/Id_Token", "/input/parsed_query/REFRESH_TOKEN", "/input/parsed_query/access_token", "/input/parsed_query/code",
		"/input/parsed_query/sig"}
	if fmt.Sprint(ev.Erased) != fmt.Sprint(wantErased) {
		t.Errorf("erased %v\nwant   %v", ev.Erased, wantErased)
	}
	wantMasked := []string{hp + ":path", hp + "Referer", "/input/attributes/request/http/path", "/input/attributes/request/http/query"}
	if fmt.Sprint(ev.Masked) != fmt.Sprint(wantMasked) {
		t.Errorf("masked %v\nwant   %v", ev.Masked, wantMasked)
	}
}

// TestMaskLeavesTheInputAlone: masking copies; the input document the
// policy evaluated is not changed, fragments are masked too, and an input
// without credentials is logged as it is.
func TestMaskLeavesTheInputAlone(t *testing.T) {
	l := NewDecisionLogger(DecisionLogOptions{Sink: &blockingSink{}})
	defer l.Close(context.Background())
	in := map[string]any{
		"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"path":     "/cb?token=s3cr3t-a&x=1#id_token=s3cr3t-b&state=s",
			"fragment": "access_token=s3cr3t-c&state=s",
			"headers":  map[string]any{"authorization": "Bearer s3cr3t-d", "x-key": "v"},
		}}},
		"parsed_query": map[string]any{"token": []any{"s3cr3t-a"}, "x": []any{"1"}},
	}
	before, _ := json.Marshal(in)
	out, erased, masked := l.mask(in)
	after, _ := json.Marshal(in)
	if !bytes.Equal(before, after) {
		t.Fatalf("mask changed the input:\n%s\n%s", before, after)
	}
	h := out["attributes"].(map[string]any)["request"].(map[string]any)["http"].(map[string]any)
	if h["path"] != "/cb?token=REDACTED&x=1#id_token=REDACTED&state=s" || h["fragment"] != "access_token=REDACTED&state=s" {
		t.Fatalf("path %q, fragment %q", h["path"], h["fragment"])
	}
	if b, _ := json.Marshal(out); bytes.Contains(b, []byte("s3cr3t")) || len(erased) != 2 || len(masked) != 2 {
		t.Fatalf("masked input %s, erased %v, masked %v", b, erased, masked)
	}

	plain := RequestFromCheck(check("GET", "/a?x=1&tokens=2&mytoken=3&code_challenge=4", map[string]string{"x-key": "v"})).Document()
	out, erased, masked = l.mask(plain)
	a, _ := json.Marshal(out)
	b, _ := json.Marshal(plain)
	if !bytes.Equal(a, b) || erased != nil || masked != nil {
		t.Fatalf("an input without credentials changed: %s (erased %v, masked %v)", a, erased, masked)
	}
	if p := out["attributes"].(map[string]any)["request"].(map[string]any)["http"].(map[string]any)["path"]; p != "/a?x=1&tokens=2&mytoken=3&code_challenge=4" {
		t.Fatalf("path %q", p)
	}
}

// Why a bearer token was refused goes into the decision log
// (result.token_reason), never to the client unless the gateway exposes
// token errors; a request without a token logs no reason.
func TestDecisionLogsSayWhyATokenWasRefused(t *testing.T) {
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	activate(t, engines, testCompiled(t, nil), "7")
	sink := &blockingSink{}
	logs := NewDecisionLogger(DecisionLogOptions{Sink: sink, FlushInterval: 20 * time.Millisecond})
	srv := NewServer(ServerOptions{Engines: engines, Logs: logs})
	res, err := srv.Check(context.Background(), check("GET", "/pets/7", map[string]string{"x-key": "good", "authorization": "Bearer aaa.bbb.ccc"}))
	if err != nil || res.GetDeniedResponse() == nil {
		t.Fatalf("an invalid token must be denied: %v %v", res, err)
	}
	for _, h := range res.GetDeniedResponse().GetHeaders() {
		if strings.Contains(h.GetHeader().GetValue(), "issuer_unknown") {
			t.Fatalf("the reason reached the client: %v", h)
		}
	}
	if _, err := srv.Check(context.Background(), check("GET", "/pets/7", map[string]string{"x-key": "good"})); err != nil {
		t.Fatal(err)
	}
	logs.Close(context.Background())
	if len(sink.events) != 2 {
		t.Fatalf("%d events, want 2", len(sink.events))
	}
	var reasons []any
	for _, raw := range sink.events {
		var ev struct {
			Result map[string]any `json:"result"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, ev.Result["token_reason"])
	}
	if fmt.Sprint(reasons) != "[issuer_unknown <nil>]" {
		t.Fatalf("token reasons logged: %v", reasons)
	}
}
