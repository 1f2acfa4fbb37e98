package admin

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
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
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// gatewayPackage returns the gateway's package: a zip with the Envoy
// bootstrap (or a gRPC xDS bootstrap for grpc gateways),
// gatehouse-authorizer.yaml, the same settings as a .env, the bundle
// signing public key and a README. By default each download mints a new
// credential (named ?name=, else after the download: who and when);
// earlier ones stay valid until revoked. ?credential=<id> puts an
// existing credential in the package instead: its secret is stored
// hashed and cannot be read back, so the package carries its id and a
// placeholder where the secret goes (credentialPlaceholder), unless
// &rotate=true gives that credential a new secret (the old one stops
// working) which the package then carries.
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
	var zipped []byte
	if !s.write(c, "gateway credential", opts.credential, func(ctx context.Context, tx store.Tx) error {
		if _, err := gatewayRepo.Get(ctx, tx, tid, gw.Meta.ID); err != nil {
			return err
		}
		var err error
		switch {
		case opts.credential == "":
			name, isDefault := opts.name, opts.name == ""
			if isDefault {
				name = defaultCredentialName(c, "package download")
			}
			cred, err = mintGatewayCredential(ctx, tx, c, tid, gw.Meta.ID, name, isDefault)
		case opts.rotate:
			cred, err = rotateGatewayCredential(ctx, tx, c, tid, gw.Meta.ID, opts.credential)
		default:
			var t *store.Typed[model.GatewayCredentialSpec]
			t, err = gatewayCredRepo.Get(ctx, tx, tid, opts.credential)
			if errors.Is(err, store.ErrNotFound) || err == nil && t.Spec.GatewayID != gw.Meta.ID {
				return fieldError("credential", "gateway %q has no credential %q", gw.Meta.ID, opts.credential)
			}
			if err == nil {
				out := renderGatewayCredential(t, nil)
				cred = &out // no token: the package carries a placeholder
			}
		}
		if err != nil {
			return err
		}
		zipped, err = s.buildPackage(tid, gw, key, opts, cred)
		return err
	}) {
		return
	}
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="gatehouse-%s-%s.zip"`, tid, gw.Meta.ID))
	c.Header("Cache-Control", "no-store")
	c.Header("X-Gateway-Credential-Id", cred.ID)

	c.Data(http.StatusOK, "application/zip", zipped)
}

// buildPackage renders the package's zip for cred. gatewayPackage calls it
// in the transaction that mints or rotates the credential, so a package
// that cannot be built leaves no credential (or rotated secret) that
// nobody received.
func (s *Server) buildPackage(tid string, gw *store.Typed[model.GatewaySpec], key *policies.SigningKey, opts packageOptions, cred *credentialSecret) ([]byte, error) {
	// The token goes into the configurations; without one (an existing
	// credential, not rotated), the authorizer's settings leave it out
	// (it then asks for --credential) and the bootstraps, which need a
	// value, carry the placeholder.
	bootCred := cred.Token
	if bootCred == "" {
		bootCred = credentialPlaceholder
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
		return nil, err
	}
	files := []struct {
		name string
		body []byte
		mode uint32
	}{
		{model.PackageAuthorizer, append([]byte(authorizerHeader(cred)), authzYAML...), 0o600},
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
			XDSAddress: s.xdsPublic, Credential: bootCred, XDSTLS: xdsTLS})
	} else {
		boot, err = envoy.Bootstrap(envoy.BootstrapOptions{NodeID: nodeID, Cluster: "gatehouse-" + tid, XDSAddress: s.xdsPublic,
			Credential: bootCred, XDSTLS: xdsTLS})
	}
	if err != nil {
		return nil, err
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
	}{model.PackageReadme, []byte(packageReadme(tid, gw, nodeID, s.xdsPublic, s.xdsTLS, opts, cred)), 0o644})

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
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// credentialPlaceholder stands in the bootstraps of a package for the
// secret token of an existing credential (?credential=<id> without
// rotate=true), which is stored hashed and cannot be put in.
const credentialPlaceholder = "REPLACE_WITH_GATEWAY_CREDENTIAL"

// authorizerHeader is the comment atop gatehouse-authorizer.yaml.
func authorizerHeader(cred *credentialSecret) string {
	h := "# gatehouse authorizer --config gatehouse-authorizer.yaml (or --package on the zip)\n"
	if cred.Token == "" {
		return h + "# credential is left out: give the token of gateway credential " + cred.ID +
			" (which this package reuses; its secret cannot be read back) with --credential or GATEHOUSE_GATEWAY_CREDENTIAL.\n"
	}
	return h + "# It holds a gateway credential: keep it secret.\n"
}

func packageReadme(tid string, gw *store.Typed[model.GatewaySpec], nodeID, xds string, xdsTLS bool, opts packageOptions, cred *credentialSecret) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Gatehouse gateway package: tenant %s, gateway %s (%s)\n\n", tid, gw.Meta.ID, gw.Spec.Type)
	scheme := "grpc"
	if xdsTLS {
		scheme = "grpcs"
	}
	fmt.Fprintf(&b, "Envoy node id: %s    xDS control plane: %s://%s\n", nodeID, scheme, xds)
	fmt.Fprintf(&b, "Gateway credential: %s (%s)\n\n", cred.ID, cred.Name)
	grpcGW := gw.Spec.Type == model.GatewayGRPC
	bootName := model.PackageEnvoyBootstrap
	if grpcGW {
		bootName = model.PackageGRPCBootstrap
	}
	if cred.Token == "" {
		fmt.Fprintf(&b, `This package reuses credential %s without a new secret: its secret is stored
hashed and cannot be read back, so the package does not hold it. Give the token
you kept (ghg_%s.%s.…) to the authorizer with --credential or
GATEHOUSE_GATEWAY_CREDENTIAL (gatehouse-authorizer.yaml and .env leave it out),
and put it in %s in place of %s:
  sed -i "s|%s|$GATEHOUSE_GATEWAY_CREDENTIAL|" %s
Lost the token? Download with ?credential=%s&rotate=true for a new secret of the
same credential (the old secret stops working at once), or without credential=
for a new credential.

`, cred.ID, tid, cred.ID, bootName, credentialPlaceholder, credentialPlaceholder, bootName, cred.ID)
	}
	secret := "including a gateway credential (secret)"
	if cred.Token == "" {
		secret = "without the credential's secret"
	}
	fmt.Fprintf(&b, `Files
  gatehouse-authorizer.yaml  settings of the authorizer, %s
  .env                       the same settings as environment variables
  bundle-signing-key.pem     the tenant's public key; bundles that do not verify are refused
`, secret)
	if opts.ca != "" {
		b.WriteString(`  control-plane-ca.pem       the CA bundle the control plane's certificates (https, xDS) are verified with
`)
	}
	if grpcGW {
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
  gatehouse authorizer --package this.zip          # ext_authz on 127.0.0.1:9191, health and metrics on 127.0.0.1:9192
`)
	if grpcGW {
		b.WriteString(`  GRPC_XDS_BOOTSTRAP=grpc-xds-bootstrap.json ./your-grpc-client
                                                   # proxyless gRPC: dial xds:///<service host or id>;
                                                   # routes and clusters come from the control plane
This package has no Envoy bootstrap: gRPC clients run no ext_authz, so only routing
is enforced on the client; services ask the authorizer themselves (ext_authz Check
on its --authz-addr) or sit behind a gateway of type envoy.
`)
	} else {
		b.WriteString(`  envoy -c envoy.yaml                              # Envoy, configured over xDS, asks the authorizer
Without Envoy, the authorizer can proxy itself:
  gatehouse authorizer --package this.zip --proxy-addr 127.0.0.1:8000
`)
	}
	b.WriteString(`
Beside make run (gatehouse serve on this host)
  gatehouse serve already listens on 127.0.0.1:9191 (its in-process ext_authz), so this
  authorizer needs other ports; every authorizer on a host needs its own health and
  metrics port too (--http-addr, default 127.0.0.1:9192):
    gatehouse authorizer --package this.zip --authz-addr 127.0.0.1:9291 --http-addr 127.0.0.1:9292
  A second authorizer of the same gateway: --authz-addr 127.0.0.1:9391 --http-addr 127.0.0.1:9392, and so on.
  The Envoys configured over xDS ask the authorizer at serve's --authorizer-address
  (default 127.0.0.1:9191, serve's own): to send them to this one, run serve with
  --authorizer-address 127.0.0.1:9291.

` + packageTLSReadme(xdsTLS, opts) + `
Each download of the package mints a new credential unless it names one
(?credential=<id>, with &rotate=true for a new secret); list them with
  GET /api/admin/` + tid + `/gateways/` + gw.Meta.ID + `/credentials
and revoke old ones with
  DELETE /api/admin/` + tid + `/gateways/` + gw.Meta.ID + `/credentials/{id}
Revoking a credential, or rotating its secret, ends the xDS streams opened with it
and refuses new ones.
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
	// credential is the existing credential to put in the package
	// (?credential=<id>; "" mints a new one), rotate whether to give it a
	// new secret (&rotate=true).
	credential string
	rotate     bool
	// name names the credential a download mints (?name=…).
	name string
}

// packageQuery lists the query parameters of GET …/package.
var packageQuery = []string{"client_cert_file", "client_key_file", "credential", "rotate", "name"}

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
	for name, vals := range q {
		if len(vals) > 1 {
			abort(c, fieldError(name, "given more than once"))
			return packageOptions{}, false
		}
	}
	if v, ok := q["credential"]; ok {
		if !model.ValidObjectID(v[0]) {
			abort(c, fieldError("credential", "invalid credential id %q (%s)", v[0], model.ObjectIDRule))
			return packageOptions{}, false
		}
		opts.credential = v[0]
	}
	rotate, apiErr := boolQuery(c, "rotate")
	if apiErr != nil {
		abort(c, apiErr)
		return packageOptions{}, false
	}
	opts.rotate = rotate
	if v, ok := q["name"]; ok {
		if apiErr := validateText("name", v[0], true, 256); apiErr != nil {
			abort(c, apiErr)
			return packageOptions{}, false
		}
		opts.name = v[0]
	}
	switch {
	case opts.rotate && opts.credential == "":
		abort(c, fieldError("rotate", "rotates the secret of the credential named by credential=<id>; without one, every download mints a new credential"))
		return packageOptions{}, false
	case opts.name != "" && opts.credential != "":
		abort(c, fieldError("name", "names the credential a download mints; a reused credential (credential=<id>) keeps its name"))
		return packageOptions{}, false
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
