package envoy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"go.yaml.in/yaml/v3"
	grpcbootstrap "google.golang.org/grpc/xds/bootstrap"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse-dev/gatehouse/envoy/xdscreds"
	"github.com/gatehouse-dev/gatehouse/internal/tlsfiles"
	"github.com/gatehouse-dev/gatehouse/model"
)

// devCerts writes a throwaway CA, server and client certificate (server
// SANs localhost, 127.0.0.1, ::1) into a temporary directory.
type devCerts struct {
	dir   string
	caPEM string
}

func newDevCerts(t testing.TB) devCerts {
	t.Helper()
	dir := t.TempDir()
	if err := tlsfiles.DevCerts(tlsfiles.DevCertOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, tlsfiles.DevCAFile))
	if err != nil {
		t.Fatal(err)
	}
	return devCerts{dir: dir, caPEM: string(ca)}
}

func (d devCerts) file(name string) string { return filepath.Join(d.dir, name) }

// parseBootstrap reads a Bootstrap as Envoy does (YAML → JSON → proto) and
// validates it.
func parseBootstrap(t testing.TB, raw []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, raw)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		t.Fatalf("not a Bootstrap: %v\n%s", err, raw)
	}
	if err := validateMessage(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// clusterTLS decodes a cluster's UpstreamTlsContext (nil without a
// transport socket).
func clusterTLS(t testing.TB, c *clusterv3.Cluster) *tlsv3.UpstreamTlsContext {
	t.Helper()
	ts := c.GetTransportSocket()
	if ts == nil {
		return nil
	}
	if ts.GetName() != wellknown.TransportSocketTLS {
		t.Fatalf("cluster %s: transport socket %q", c.GetName(), ts.GetName())
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatalf("cluster %s: %v", c.GetName(), err)
	}
	return ctx
}

// wantTLS is what a cluster's UpstreamTlsContext should say.
type wantTLS struct {
	sni              string // "" for none
	san              string
	sanIP            bool
	inlineCA, caFile string
	certFile         string
	keyFile          string
}

func checkTLS(t testing.TB, ctx *tlsv3.UpstreamTlsContext, w wantTLS) {
	t.Helper()
	if ctx == nil {
		t.Fatal("no TLS transport socket")
	}
	if ctx.GetSni() != w.sni {
		t.Errorf("sni %q, want %q", ctx.GetSni(), w.sni)
	}
	common := ctx.GetCommonTlsContext()
	if p := common.GetAlpnProtocols(); len(p) != 1 || p[0] != "h2" {
		t.Errorf("alpn %v, want [h2]", p)
	}
	vc := common.GetValidationContext()
	if vc.GetTrustedCa().GetInlineString() != w.inlineCA || vc.GetTrustedCa().GetFilename() != w.caFile {
		t.Errorf("trusted_ca %v, want inline %q or file %q", vc.GetTrustedCa(), w.inlineCA, w.caFile)
	}
	sans := vc.GetMatchTypedSubjectAltNames()
	wantType := tlsv3.SubjectAltNameMatcher_DNS
	if w.sanIP {
		wantType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	if len(sans) != 1 || sans[0].GetSanType() != wantType || sans[0].GetMatcher().GetExact() != w.san {
		t.Errorf("match_typed_subject_alt_names %v, want %v %q", sans, wantType, w.san)
	}
	certs := common.GetTlsCertificates()
	switch {
	case w.certFile == "" && len(certs) != 0:
		t.Errorf("tls_certificates %v, want none", certs)
	case w.certFile != "" && (len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() != w.certFile ||
		certs[0].GetPrivateKey().GetFilename() != w.keyFile):
		t.Errorf("tls_certificates %v, want %s with %s", certs, w.certFile, w.keyFile)
	}
}

func TestBootstrapXDSTLS(t *testing.T) {
	certs := newDevCerts(t)
	const cred = "ghg_acme.c1.s3cr3t"
	boot := func(addr string, tc *TLSClient) (*bootstrapv3.Bootstrap, string) {
		t.Helper()
		raw, err := Bootstrap(BootstrapOptions{NodeID: "acme/edge", XDSAddress: addr, Credential: cred, XDSTLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		b := parseBootstrap(t, raw)
		xds := b.GetStaticResources().GetClusters()[0]
		po := &upstreamhttpv3.HttpProtocolOptions{}
		if err := xds.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(po); err != nil ||
			po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Fatal("the xds cluster must speak HTTP/2")
		}
		return b, string(raw)
	}
	xdsTLS := func(b *bootstrapv3.Bootstrap) *tlsv3.UpstreamTlsContext {
		return clusterTLS(t, b.GetStaticResources().GetClusters()[0])
	}

	t.Run("plaintext without XDSTLS", func(t *testing.T) {
		b, raw := boot("cp.internal:18000", nil)
		if ctx := xdsTLS(b); ctx != nil {
			t.Fatalf("transport socket %v", ctx)
		}
		if !strings.Contains(raw, "over ADS (plaintext HTTP/2)") {
			t.Fatalf("head comment:\n%s", raw)
		}
	})
	t.Run("inline CA, SNI and DNS SAN from the address's host", func(t *testing.T) {
		b, raw := boot("CP.internal:18000", &TLSClient{CAPEM: certs.caPEM, CAFile: "/ignored.pem"})
		checkTLS(t, xdsTLS(b), wantTLS{sni: "cp.internal", san: "cp.internal", inlineCA: certs.caPEM})
		if !strings.Contains(raw, `over ADS (TLS, verifying "cp.internal")`) {
			t.Fatalf("head comment:\n%s", raw)
		}
	})
	t.Run("CA file and ServerName", func(t *testing.T) {
		b, _ := boot("10.0.0.5:18000", &TLSClient{CAFile: "/etc/gatehouse/ca.pem", ServerName: "xds.example"})
		checkTLS(t, xdsTLS(b), wantTLS{sni: "xds.example", san: "xds.example", caFile: "/etc/gatehouse/ca.pem"})
	})
	t.Run("system CA, an IP address: IP SAN and no SNI", func(t *testing.T) {
		b, _ := boot("[::1]:18000", &TLSClient{})
		checkTLS(t, xdsTLS(b), wantTLS{san: "::1", sanIP: true, caFile: DefaultUpstreamCAFile})
		b, _ = boot("cp.internal:18000", &TLSClient{ServerName: "10.1.2.3"})
		checkTLS(t, xdsTLS(b), wantTLS{san: "10.1.2.3", sanIP: true, caFile: DefaultUpstreamCAFile})
	})
	t.Run("client certificate files", func(t *testing.T) {
		b, raw := boot("cp.internal:18000", &TLSClient{CAPEM: certs.caPEM, CertFile: "/etc/gatehouse/client.pem",
			KeyFile: "/etc/gatehouse/client-key.pem"})
		checkTLS(t, xdsTLS(b), wantTLS{sni: "cp.internal", san: "cp.internal", inlineCA: certs.caPEM,
			certFile: "/etc/gatehouse/client.pem", keyFile: "/etc/gatehouse/client-key.pem"})
		if !strings.Contains(raw, "presenting a client certificate") {
			t.Fatalf("head comment:\n%s", raw)
		}
	})
	key, err := os.ReadFile(certs.file(tlsfiles.DevClientKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]*TLSClient{
		"certificate without key":  {CertFile: "/c.pem"},
		"key without certificate":  {KeyFile: "/k.pem"},
		"CAPEM not PEM":            {CAPEM: "not a certificate"},
		"CAPEM a private key":      {CAPEM: string(key)},
		"CAPEM with trailing junk": {CAPEM: certs.caPEM + "junk"},
		"server name with a port":  {ServerName: "cp.internal:443"},
	} {
		if _, err := Bootstrap(BootstrapOptions{NodeID: "acme/edge", XDSAddress: "cp:18000", Credential: cred, XDSTLS: bad}); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := GRPCBootstrap(GRPCBootstrapOptions{NodeID: "acme/mesh", XDSAddress: "cp:18000", Credential: cred, XDSTLS: bad}); err == nil {
			t.Errorf("grpc bootstrap, %s: accepted", name)
		}
	}
}

func TestTranslateAuthorizerTLS(t *testing.T) {
	certs := newDevCerts(t)
	f := newFixture(t)
	seedShop(f, "acme")
	f.gateway("acme", "edge", model.GatewaySpec{Type: model.GatewayEnvoy})
	c := f.compile("acme", "edge")
	authorizer := func(opts TranslateOptions) *clusterv3.Cluster {
		t.Helper()
		res, err := Translate(c, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateDeep(res); err != nil {
			t.Fatalf("ValidateDeep: %v", err)
		}
		if _, err := newSnapshot("1", res); err != nil {
			t.Fatal(err)
		}
		cl := byName(resourcesOf[*clusterv3.Cluster](t, res, resource.ClusterType))[AuthorizerClusterName]
		po := &upstreamhttpv3.HttpProtocolOptions{}
		if err := cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(po); err != nil ||
			po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Fatal("the authorizer cluster must speak HTTP/2")
		}
		return cl
	}
	if ctx := clusterTLS(t, authorizer(TranslateOptions{AuthorizerAddress: "authz.internal:9191"})); ctx != nil {
		t.Fatalf("plaintext authorizer has %v", ctx)
	}
	mtls := &TLSClient{CAPEM: certs.caPEM, CertFile: "/etc/envoy/client.pem", KeyFile: "/etc/envoy/client-key.pem"}
	checkTLS(t, clusterTLS(t, authorizer(TranslateOptions{AuthorizerAddress: "authz.internal:9191", AuthorizerTLS: mtls})),
		wantTLS{sni: "authz.internal", san: "authz.internal", inlineCA: certs.caPEM,
			certFile: "/etc/envoy/client.pem", keyFile: "/etc/envoy/client-key.pem"})
	checkTLS(t, clusterTLS(t, authorizer(TranslateOptions{AuthorizerAddress: "10.0.0.9:9191", AuthorizerTLS: &TLSClient{}})),
		wantTLS{san: "10.0.0.9", sanIP: true, caFile: DefaultUpstreamCAFile})
	checkTLS(t, clusterTLS(t, authorizer(TranslateOptions{AuthorizerAddress: "10.0.0.9:9191",
		AuthorizerTLS: &TLSClient{CAFile: "/ca.pem", ServerName: "authz.example"}})),
		wantTLS{sni: "authz.example", san: "authz.example", caFile: "/ca.pem"})
	// The https service upstream keeps its own TLS (no ALPN, UpstreamCAFile).
	res, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz.internal:9191", AuthorizerTLS: mtls})
	if err != nil {
		t.Fatal(err)
	}
	store := clusterTLS(t, byName(resourcesOf[*clusterv3.Cluster](t, res, resource.ClusterType))[ServiceClusterName("store")])
	if store.GetSni() != "store.example.com" || len(store.GetCommonTlsContext().GetAlpnProtocols()) != 0 ||
		store.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename() != DefaultUpstreamCAFile ||
		len(store.GetCommonTlsContext().GetTlsCertificates()) != 0 {
		t.Fatalf("https service cluster TLS %v", store)
	}

	if _, err := Translate(c, TranslateOptions{AuthorizerAddress: "authz:9191", AuthorizerTLS: &TLSClient{CertFile: "/c.pem"}}); err == nil {
		t.Fatal("a certificate without key was accepted")
	}

	t.Run("every AuthorizerTLS field changes the translation key", func(t *testing.T) {
		base := TranslateOptions{AuthorizerAddress: "authz:9191"}
		seen := map[[32]byte]string{translationKey(c, base): "plaintext"}
		for name, tc := range map[string]*TLSClient{
			"system CA":   {},
			"inline CA":   {CAPEM: certs.caPEM},
			"CA file":     {CAFile: "/ca.pem"},
			"server name": {ServerName: "authz.example"},
			"client cert": {CertFile: "/c.pem", KeyFile: "/k.pem"},
			"client key":  {CertFile: "/c.pem", KeyFile: "/k2.pem"},
		} {
			o := base
			o.AuthorizerTLS = tc
			k := translationKey(c, o)
			if prev, dup := seen[k]; dup {
				t.Errorf("%s has the key of %s", name, prev)
			}
			seen[k] = name
			o.AuthorizerTLS = &TLSClient{}
			*o.AuthorizerTLS = *tc
			if translationKey(c, o) != k {
				t.Errorf("%s: equal options, another key", name)
			}
		}
	})

	t.Run("New refuses a bad AuthorizerTLS and copies a good one", func(t *testing.T) {
		for name, bad := range map[string]*TLSClient{
			"certificate without key": {CertFile: "/c.pem"},
			"key without certificate": {KeyFile: "/k.pem"},
			"CAPEM not PEM":           {CAPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
		} {
			_, err := New(Options{Bundles: newFakeSource(), AuthorizerAddress: "authz:9191", Credentials: &testCredentials{},
				AuthorizerTLS: bad})
			if err == nil || !strings.Contains(err.Error(), "authorizer tls") {
				t.Errorf("%s: New: %v", name, err)
			}
		}
		tc := &TLSClient{CAPEM: certs.caPEM}
		srv, err := New(Options{Bundles: newFakeSource(), AuthorizerAddress: "authz:9191", Credentials: &testCredentials{},
			AuthorizerTLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		tc.CAPEM = "changed later"
		if srv.opts.AuthorizerTLS == tc || srv.opts.AuthorizerTLS.CAPEM != certs.caPEM {
			t.Fatalf("the server's AuthorizerTLS follows the caller's: %+v", srv.opts.AuthorizerTLS)
		}
	})
}

// GRPCBootstrap writes XDSTLS as the "tls" object of xdscreds.Config,
// which the registered channel credentials accept.
func TestGRPCBootstrapXDSTLS(t *testing.T) {
	certs := newDevCerts(t)
	configOf := func(tc *TLSClient) xdscreds.Config {
		t.Helper()
		raw, err := GRPCBootstrap(GRPCBootstrapOptions{NodeID: "acme/mesh", XDSAddress: "127.0.0.1:18000", Credential: "ghg_acme.c1.s",
			XDSTLS: tc})
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			XDSServers []struct {
				ChannelCreds []struct {
					Type   string          `json:"type"`
					Config json.RawMessage `json:"config"`
				} `json:"channel_creds"`
			} `json:"xds_servers"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		cc := doc.XDSServers[0].ChannelCreds[0]
		dec := json.NewDecoder(bytes.NewReader(cc.Config))
		dec.DisallowUnknownFields()
		var cfg xdscreds.Config
		if err := dec.Decode(&cfg); err != nil || cc.Type != xdscreds.Type {
			t.Fatalf("channel_creds %s %s: %v", cc.Type, cc.Config, err)
		}
		if _, _, err := grpcbootstrap.GetChannelCredentials(xdscreds.Type).Build(cc.Config); err != nil {
			t.Fatalf("xdscreds refuses %s: %v", cc.Config, err)
		}
		return cfg
	}
	if cfg := configOf(nil); cfg.TLS != nil || cfg.Credential != "ghg_acme.c1.s" {
		t.Fatalf("plaintext: %+v", cfg)
	}
	cert, key := certs.file(tlsfiles.DevClientFile), certs.file(tlsfiles.DevClientKeyFile)
	got := configOf(&TLSClient{CAPEM: certs.caPEM, CAFile: "/ignored.pem", ServerName: "localhost", CertFile: cert, KeyFile: key})
	if want := (xdscreds.TLSConfig{CAPEM: certs.caPEM, ServerName: "localhost", CertFile: cert, KeyFile: key}); got.TLS == nil || *got.TLS != want {
		t.Fatalf("tls %+v, want %+v", got.TLS, want)
	}
	caFile := certs.file(tlsfiles.DevCAFile)
	if got := configOf(&TLSClient{CAFile: caFile}); got.TLS == nil || *got.TLS != (xdscreds.TLSConfig{CAFile: caFile}) {
		t.Fatalf("tls %+v", got.TLS)
	}
}
