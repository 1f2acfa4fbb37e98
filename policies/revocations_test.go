package policies

import (
	"encoding/json"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

// TestCompileRevocations: data.gatehouse.config.revocations is empty (with
// every map present) by default and Config.Revocations otherwise.
func TestCompileRevocations(t *testing.T) {
	revocations := func(cfg *Config) any {
		t.Helper()
		c, err := Compile(cfg, "edge")
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := ParseBundleConfig(c.Data)
		if err != nil {
			t.Fatal(err)
		}
		if !parsed.Revocations.Empty() != (cfg.Revocations != nil && !cfg.Revocations.Empty()) {
			t.Errorf("Empty() = %v for %+v", parsed.Revocations.Empty(), cfg.Revocations)
		}
		raw, _ := json.Marshal(c.Data["gatehouse"].(map[string]any)["config"].(map[string]any)["revocations"])
		return string(raw)
	}
	cfg := revocationsConfig()
	if got, want := revocations(cfg), `{"client_not_before":{},"jti":{},"not_before":{}}`; got != want {
		t.Errorf("default: %s, want %s", got, want)
	}
	in := &RevocationsData{
		JTI:             map[string]map[string]int64{"https://idp": {"j1": 1700000600}},
		NotBefore:       map[string]map[string]int64{"https://idp": {"a|b": 1700000000}},
		ClientNotBefore: map[string]map[string]map[string]int64{"https://idp": {"carol": {"app1": 1700000001}}},
	}
	cfg.Revocations = in
	want := `{"client_not_before":{"https://idp":{"carol":{"app1":1700000001}}},"jti":{"https://idp":{"j1":1700000600}},"not_before":{"https://idp":{"a|b":1700000000}}}`
	if got := revocations(cfg); got != want {
		t.Errorf("compiled: %s, want %s", got, want)
	}
	cfg.Revocations = &RevocationsData{JTI: map[string]map[string]int64{"https://idp": {}}}
	if got, want := revocations(cfg), `{"client_not_before":{},"jti":{"https://idp":{}},"not_before":{}}`; got != want {
		t.Errorf("empty per issuer: %s, want %s", got, want)
	}
}

func revocationsConfig() *Config {
	return &Config{Revision: 1, Gateways: []Object[model.GatewaySpec]{{ID: "edge", Name: "edge"}}}
}
