package policies

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/gatehouse-dev/gatehouse/model"
)

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "plain", `quote " backslash \ slash /`, "<a href='x'>&amp;</a>", "\u2028\u2029", "\x7f\x00\x1f\b\f\n\r\t",
		"caf\xc3\xa9", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate", "emoji 🙂"}
	for b := 0; b < 256; b++ {
		cases = append(cases, string([]byte{byte(b)}), "a"+string([]byte{byte(b)})+"z")
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		buf := make([]byte, rnd.IntN(12))
		for j := range buf {
			buf[j] = byte(rnd.IntN(256))
		}
		cases = append(cases, string(buf))
	}
	for _, s := range cases {
		html, _ := json.Marshal(s)
		var plain bytes.Buffer
		enc := json.NewEncoder(&plain)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		if got := appendJSONString(nil, s, true); !bytes.Equal(got, html) {
			t.Errorf("%q with HTML escaping: %s, want %s", s, got, html)
		}
		if got, want := appendJSONString(nil, s, false), bytes.TrimSuffix(plain.Bytes(), []byte("\n")); !bytes.Equal(got, want) {
			t.Errorf("%q: %s, want %s", s, got, want)
		}
	}
}

func TestIsValidNumber(t *testing.T) {
	for s, want := range map[string]bool{"0": true, "-0": true, "12": true, "1.5": true, "-1.5e+10": true, "1E3": true, "0.0": true,
		"": false, "-": false, "01": false, "1.": false, ".5": false, "1e": false, "1e+": false, "+1": false, "true": false, "1 ": false} {
		if got := IsValidNumber(s); got != want {
			t.Errorf("IsValidNumber(%q) = %v, want %v", s, got, want)
		}
	}
}

// awkwardConfig is testConfig with strings that JSON encoders escape.
func awkwardConfig() *Config {
	cfg := testConfig()
	cfg.Tenant.Spec.Name = "Acme <R&D> \u2028 \"quoted\" \t tab"
	cfg.Services[0].Name = "pets & <cats>"
	cfg.Scopes = append(cfg.Scopes, Object[model.ScopeSpec]{ID: "s2", Name: "x<y>&z", Description: "line\nbreak \x01"})
	return cfg
}

func TestReadVerifiedBundleIsReadBundle(t *testing.T) {
	key, _ := GenerateSigningKey("acme")
	vc := VerificationConfig(key.KeyID, key.PublicKeyPEM)
	for name, cfg := range map[string]*Config{"test": testConfig(), "awkward": awkwardConfig(), "bench": benchConfig("acme", 200)} {
		t.Run(name, func(t *testing.T) {
			_, raw := mustBuild(t, cfg, "edge", key)
			want, err := ReadBundle(raw, vc)
			if err != nil {
				t.Fatal(err)
			}
			wantDigest, err := ContentDigest(&want)
			if err != nil {
				t.Fatal(err)
			}
			// The same bundle read the slow way (a verification config
			// with exclusions takes it).
			slowVC := *vc
			slowVC.Exclude = []string{"nothing-here"}
			for how, c := range map[string]*bundle.VerificationConfig{"fast": vc, "slow": &slowVC} {
				got, err := ReadVerifiedBundle(raw, c, "gatehouse")
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				if got.Digest != wantDigest {
					t.Errorf("%s: digest %s, want %s", how, got.Digest, wantDigest)
				}
				if !reflect.DeepEqual(got.Data, want.Data) {
					t.Errorf("%s: the data differs from ReadBundle's", how)
				}
				if !reflect.DeepEqual(got.Manifest, want.Manifest) {
					t.Errorf("%s: manifest %+v, want %+v", how, got.Manifest, want.Manifest)
				}
				wantMods := want.ParsedModules("gatehouse")
				if len(got.Modules) != len(wantMods) {
					t.Fatalf("%s: %d modules, want %d", how, len(got.Modules), len(wantMods))
				}
				for p, m := range wantMods {
					if g := got.Modules[p]; g == nil || !g.Equal(m) {
						t.Errorf("%s: module %s differs", how, p)
					}
				}
			}
		})
	}
}

func TestReadVerifiedBundleRefusesWhatReadBundleRefuses(t *testing.T) {
	key, _ := GenerateSigningKey("acme")
	vc := VerificationConfig(key.KeyID, key.PublicKeyPEM)
	_, raw := mustBuild(t, awkwardConfig(), "edge", key)
	cases := map[string][]byte{
		"data changed": rewriteTar(t, raw, "data.json", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"acme"`), []byte(`"evil"`), 1)
		}),
		"data not an object": rewriteTar(t, raw, "data.json", func([]byte) []byte { return []byte(`[1]`) }),
		"data not JSON":      rewriteTar(t, raw, "data.json", func(b []byte) []byte { return append(b, '}') }),
		"data with a BOM":    rewriteTar(t, raw, "data.json", func(b []byte) []byte { return append([]byte("\xef\xbb\xbf"), b...) }),
		"manifest changed": rewriteTar(t, raw, ".manifest", func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"acme"`), []byte(`"evil"`), 1)
		}),
	}
	other, _ := GenerateSigningKey("acme")
	_, unsigned := mustBuild(t, testConfig(), "edge", nil)
	cases["unsigned"] = unsigned
	for name, bad := range cases {
		_, wantErr := ReadBundle(bad, vc)
		_, err := ReadVerifiedBundle(bad, vc, "gatehouse")
		if err == nil || wantErr == nil {
			t.Errorf("%s: ReadVerifiedBundle error %v, ReadBundle error %v; want both to refuse", name, err, wantErr)
		}
	}
	if _, err := ReadVerifiedBundle(raw, VerificationConfig(key.KeyID, other.PublicKeyPEM), "gatehouse"); err == nil {
		t.Error("a bundle verified with another key")
	}
	// The same data, reformatted or escaped otherwise: the signature
	// covers the document, not its bytes, so both readers take it, with
	// the digest of the original.
	original, err := ReadVerifiedBundle(raw, vc, "gatehouse")
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func([]byte) []byte{
		"indented": func(b []byte) []byte {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(v, "", "  ")
			return out
		},
		"not HTML-escaped": func(b []byte) []byte {
			if !bytes.Contains(b, []byte(`\u003cR\u0026D\u003e`)) {
				t.Fatalf("data.json is not HTML-escaped: %.200s", b)
			}
			return bytes.ReplaceAll(b, []byte(`\u003cR\u0026D\u003e`), []byte(`<R&D>`))
		},
	} {
		same := rewriteTar(t, raw, "data.json", edit)
		got, err := ReadVerifiedBundle(same, vc, "gatehouse")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := ReadBundle(same, vc)
		if err != nil {
			t.Fatalf("%s, ReadBundle: %v", name, err)
		}
		if d, _ := ContentDigest(&want); d != got.Digest || d != original.Digest {
			t.Errorf("%s: digest %s, ReadBundle's %s, the original's %s", name, got.Digest, d, original.Digest)
		}
	}
}
