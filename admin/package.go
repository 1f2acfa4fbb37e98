package admin

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	yaml "go.yaml.in/yaml/v3"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// gatewayPackage mints a credential and returns the gateway's package: a
// zip with the Envoy bootstrap (or a gRPC xDS bootstrap for grpc gateways),
// gatehouse-authorizer.yaml, the same settings as a .env, the bundle
// signing public key and a README. Each download mints a new credential;
// earlier ones stay valid until revoked.
func (s *Server) gatewayPackage(c *gin.Context) {
	tid := tenantID(c)
	gw, ok := s.loadGateway(c)
	if !ok {
		return
	}
	if s.xdsPublic == "" {
		abort(c, newError(http.StatusBadRequest, httpapi.CodeInvalidRequest,
			"this control plane runs no xDS server (--xds-addr), so there is no bootstrap to put in a package", nil))
		return
	}
	opts, ok := s.packageOptions(c)
	if !ok {
		return
	}
	key, err := s.keys.Key(c.Request.Context(), tid)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	var cred *credentialSecret
	if !s.write(c, "gateway", gw.Meta.ID, func(ctx context.Context, tx store.Tx) error {
		if _, err := gatewayRepo.Get(ctx, tx, tid, gw.Meta.ID); err != nil {
			return err
		}
		var err error
		cred, err = mintGatewayCredential(ctx, tx, c, tid, gw.Meta.ID)
		return err
	}) {
		return
	}
	nodeID := envoy.NodeID(tid, gw.Meta.ID)
	authz := model.AuthorizerConfig{
		ControlPlaneURL: strings.TrimSuffix(s.public, "/"), Tenant: tid, Gateway: gw.Meta.ID, Credential: cred.Token,
		KeyID: key.KeyID, PublicKey: key.PublicKeyPEM, AuthzAddr: "127.0.0.1:9191", HTTPAddr: "127.0.0.1:9192",
	}
	if opts.https {
		authz.ControlPlaneCA = opts.ca
		authz.ControlPlaneClientCertFile, authz.ControlPlaneClientKeyFile = opts.certFile, opts.keyFile
	}
	authzYAML, err := yaml.Marshal(authz)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	files := []struct {
		name string
		body []byte
		mode uint32
	}{
		{model.PackageAuthorizer, append([]byte("# gatehouse authorizer --config gatehouse-authorizer.yaml (or --package on the zip)\n# It holds a gateway credential: keep it secret.\n"), authzYAML...), 0o600},
		{model.PackageEnv, []byte(authz.EnvFile()), 0o600},
		{model.PackagePublicKey, []byte(key.PublicKeyPEM), 0o644},
	}
	if opts.ca != "" {
		files = append(files, struct {
			name string
			body []byte
			mode uint32
		}{model.PackageControlPlaneCA, []byte(opts.ca), 0o644})
	}
	// The xDS channel's TLS: the packaged CA (else the system's), and the
	// operator's client certificate files on the gateway's host.
	var xdsTLS *envoy.TLSClient
	if s.xdsTLS {
		xdsTLS = &envoy.TLSClient{CAPEM: opts.ca, CertFile: opts.certFile, KeyFile: opts.keyFile}
	}
	// The bootstraps hold the credential too: the xDS server serves a node
	// id only to a credential of its gateway.
	bootName, boot, err := model.PackageEnvoyBootstrap, []byte(nil), error(nil)
	if gw.Spec.Type == model.GatewayGRPC {
		bootName = model.PackageGRPCBootstrap
		boot, err = envoy.GRPCBootstrap(envoy.GRPCBootstrapOptions{NodeID: nodeID, Cluster: "gatehouse-" + tid,
			XDSAddress: s.xdsPublic, Credential: cred.Token, XDSTLS: xdsTLS})
	} else {
		boot, err = envoy.Bootstrap(envoy.BootstrapOptions{NodeID: nodeID, Cluster: "gatehouse-" + tid, XDSAddress: s.xdsPublic,
			Credential: cred.Token, XDSTLS: xdsTLS})
	}
	if err != nil {
		abort(c, internalError(err))
		return
	}
	files = append(files, struct {
		name string
		body []byte
		mode uint32
	}{bootName, boot, 0o600})
	files = append(files, struct {
		name string
		body []byte
		mode uint32
	}{model.PackageReadme, []byte(packageReadme(tid, gw, nodeID, s.xdsPublic, s.xdsTLS, opts)), 0o644})

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: time.Now().UTC()}
		h.SetMode(fsMode(f.mode))
		w, err := zw.CreateHeader(h)
		if err == nil {
			_, err = w.Write(f.body)
		}
		if err != nil {
			abort(c, internalError(err))
			return
		}
	}
	if err := zw.Close(); err != nil {
		abort(c, internalError(err))
		return
	}
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="gatehouse-%s-%s.zip"`, tid, gw.Meta.ID))
	c.Header("Cache-Control", "no-store")
	c.Header("X-Gateway-Credential-Id", cred.ID)
	c.Data(http.StatusOK, "application/zip", buf.Bytes())
}

func packageReadme(tid string, gw *store.Typed[model.GatewaySpec], nodeID, xds string, xdsTLS bool, opts packageOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Gatehouse gateway package: tenant %s, gateway %s (%s)\n\n", tid, gw.Meta.ID, gw.Spec.Type)
	scheme := "grpc"
	if xdsTLS {
		scheme = "grpcs"
	}
	fmt.Fprintf(&b, "Envoy node id: %s    xDS control plane: %s://%s\n\n", nodeID, scheme, xds)
	b.WriteString(`Files
  gatehouse-authorizer.yaml  settings of the authorizer, including a gateway credential (secret)
  .env                       the same settings as environment variables
  bundle-signing-key.pem     the tenant's public key; bundles that do not verify are refused
`)
	if opts.ca != "" {
		b.WriteString(`  control-plane-ca.pem       the CA bundle the control plane's certificates (https, xDS) are verified with
`)
	}
	if gw.Spec.Type == model.GatewayGRPC {
		b.WriteString(`  grpc-xds-bootstrap.json    xDS bootstrap for proxyless gRPC clients and servers
                             (GRPC_XDS_BOOTSTRAP=grpc-xds-bootstrap.json); it holds the gateway
                             credential (secret) in channel_creds of type "gatehouse": Go programs
                             import _ "github.com/gatehouse-dev/gatehouse/envoy/xdscreds" to register it
`)
	} else {
		b.WriteString(`  envoy.yaml                 Envoy bootstrap: listeners, routes and clusters come from the control plane (ADS);
                             it holds the gateway credential (secret) in the ADS stream's initial_metadata
`)
	}
	b.WriteString(`
Run
  gatehouse authorizer --package this.zip          # ext_authz on 127.0.0.1:9191
  envoy -c envoy.yaml                              # Envoy, configured over xDS, asks the authorizer
Without Envoy, the authorizer can proxy itself:
  gatehouse authorizer --package this.zip --proxy-addr 127.0.0.1:8000

` + packageTLSReadme(xdsTLS, opts) + `
Each download of the package mints a new credential; revoke old ones with
  DELETE /api/admin/` + tid + `/gateways/` + gw.Meta.ID + `/credentials/{id}
Revoking a credential ends the xDS streams opened with it and refuses new ones.
`)
	return b.String()
}

func fsMode(m uint32) fs.FileMode { return fs.FileMode(m) }

// packageOptions are a package download's query parameters and the TLS
// facts of this control plane.
type packageOptions struct {
	// https: the control plane's URL (its bundle service) is https.
	https bool
	// ca is the CA bundle the package carries ("" for none).
	ca string
	// certFile and keyFile are the gateway's client certificate files on
	// its host, from ?client_cert_file=…&client_key_file=….
	certFile, keyFile string
}

// packageQuery lists the query parameters of GET …/package.
var packageQuery = []string{"client_cert_file", "client_key_file"}

// packageOptions reads a package download's query: unknown parameters,
// a certificate without its key, relative paths and client certificates
// without TLS are 400s naming the parameter.
func (s *Server) packageOptions(c *gin.Context) (packageOptions, bool) {
	q := c.Request.URL.Query()
	for name := range q {
		if !slices.Contains(packageQuery, name) {
			abort(c, fieldError(name, "unknown query parameter (known: %s)", strings.Join(packageQuery, ", ")))
			return packageOptions{}, false
		}
	}
	opts := packageOptions{https: strings.HasPrefix(s.public, "https://")}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"client_cert_file", &opts.certFile}, {"client_key_file", &opts.keyFile}} {
		vals := q[p.name]
		if len(vals) == 0 {
			continue
		}
		v := vals[0]
		switch {
		case len(vals) > 1:
			abort(c, fieldError(p.name, "given more than once"))
			return packageOptions{}, false
		case !path.IsAbs(v) || path.Clean(v) != v:
			abort(c, fieldError(p.name, "must be a clean absolute path on the gateway's host, like /etc/gatehouse/tls/gateway.pem"))
			return packageOptions{}, false
		case strings.IndexFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 || len(v) > 1024:
			abort(c, fieldError(p.name, "must be at most 1024 printable characters"))
			return packageOptions{}, false
		}
		*p.dst = v
	}
	switch {
	case (opts.certFile == "") != (opts.keyFile == ""):
		missing := "client_key_file"
		if opts.certFile == "" {
			missing = "client_cert_file"
		}
		abort(c, fieldError(missing, "client_cert_file and client_key_file go together"))
		return packageOptions{}, false
	case opts.certFile != "" && !opts.https && !s.xdsTLS:
		abort(c, fieldError("client_cert_file", "this control plane serves no TLS (--tls-cert-file), so gateways present no client certificate"))
		return packageOptions{}, false
	}
	if s.packageCA != nil && (opts.https || s.xdsTLS) {
		ca, err := s.packageCA()
		if err != nil {
			abort(c, internalError(fmt.Errorf("the CA bundle of gateway packages: %w", err)))
			return packageOptions{}, false
		}
		opts.ca = ca
	}
	return opts, true
}

// packageTLSReadme is the README's paragraph on TLS.
func packageTLSReadme(xdsTLS bool, opts packageOptions) string {
	if !xdsTLS && !opts.https {
		return "The control plane serves plaintext: run it with --tls-cert-file before crossing untrusted networks.\n"
	}
	var b strings.Builder
	b.WriteString("TLS: the authorizer and Envoy verify the control plane's certificate against ")
	if opts.ca != "" {
		b.WriteString("control-plane-ca.pem (inline in the configurations).\n")
	} else {
		b.WriteString("the system's roots.\n")
	}
	if opts.certFile != "" {
		fmt.Fprintf(&b, "They present the client certificate %s (key %s): put this gateway's certificate there.\n", opts.certFile, opts.keyFile)
	}
	return b.String()
}
