package admin

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// What the control plane generated for a gateway, for its tenant's
// admins: GET …/gateways/{gw}/envoy-config (the xDS snapshot its Envoys
// are served, as a config dump) and GET …/gateways/{gw}/bundle-content
// (the files of its current bundle). Both are on the tenant's admin routes:
// a gateway credential (ghg_…) or a gateway's client token does not
// authenticate there.

// Error codes of the generated-configuration routes.
const (
	// CodeXDSDisabled (400): this control plane runs no xDS server
	// (--xds-addr is empty), so there is no xDS configuration to show.
	CodeXDSDisabled = "xds_disabled"
	// CodeNotBuilt (503, Retry-After): the gateway's bundle or xDS
	// snapshot is not built yet; retry shortly.
	CodeNotBuilt = "not_built"
	// CodeBuildFailed (409): the gateway's configuration does not compile
	// (bundle) or translate (xDS) and nothing was ever built for it;
	// details.reason says why.
	CodeBuildFailed = "build_failed"
)

// notBuiltRetryAfter is the Retry-After (seconds) of a not_built answer.
const notBuiltRetryAfter = 1

// XDSConfigSource returns the xDS resources the control plane serves a
// gateway (the envoy package's Server).
type XDSConfigSource interface {
	GatewayConfig(tenantID, gatewayID string) (*envoy.GatewayConfig, error)
}

// envoyConfigBody is GET …/envoy-config.
type envoyConfigBody struct {
	TenantID  string `json:"tenant_id"`
	GatewayID string `json:"gateway_id"`
	*envoy.GatewayConfig
}

func (s *Server) gatewayEnvoyConfig(c *gin.Context) {
	gw, ok := s.loadGateway(c)
	if !ok {
		return
	}
	if s.xdsConfig == nil {
		abort(c, newError(http.StatusBadRequest, CodeXDSDisabled,
			"this control plane runs no xDS server (--xds-addr), so it serves no Envoy configuration", nil))
		return
	}
	tid, id := gw.Meta.TenantID, gw.Meta.ID
	cfg, err := s.xdsConfig.GatewayConfig(tid, id)
	var te *envoy.TranslationError
	switch {
	case errors.As(err, &te):
		abort(c, newError(http.StatusConflict, CodeBuildFailed, te.Error(), map[string]any{"reason": te.Reason}))
		return
	case errors.Is(err, envoy.ErrNotBuilt):
		if f := s.bundles.BuildFailure(tid, id); f != nil && s.bundles.Get(tid, id) == nil {
			abort(c, newError(http.StatusConflict, CodeBuildFailed, "the gateway's bundle does not build, so it has no xDS snapshot: "+f.Error,
				map[string]any{"reason": f.Error}))
			return
		}
		abort(c, newError(http.StatusServiceUnavailable, CodeNotBuilt, "the gateway's xDS snapshot is not built yet; retry", nil).
			WithRetryAfter(notBuiltRetryAfter))
		return
	case err != nil:
		abort(c, internalError(err))
		return
	}
	c.JSON(http.StatusOK, envoyConfigBody{TenantID: tid, GatewayID: id, GatewayConfig: cfg})
}

// bundleContentBody is GET …/bundle-content: the current bundle's files
// as the gateway's authorizers load them.
type bundleContentBody struct {
	TenantID  string    `json:"tenant_id"`
	GatewayID string    `json:"gateway_id"`
	Revision  int64     `json:"revision"`
	ETag      string    `json:"etag"`
	Hash      string    `json:"hash"`
	KeyID     string    `json:"key_id"`
	BuiltAt   time.Time `json:"built_at"`
	// Bytes is the size of the bundle (gzip tar) the bundle service serves.
	Bytes int `json:"bytes"`
	// Manifest is .manifest and Data is data.json, as JSON.
	Manifest json.RawMessage `json:"manifest"`
	Data     json.RawMessage `json:"data"`
	// Modules are the Rego files, sorted by path.
	Modules []bundleModule `json:"modules"`
	// Files are every file of the tarball (.manifest, data.json,
	// .signatures.json, the modules), in its order.
	Files []bundleFile `json:"files"`
	// SkippedPolicies are the policies left out because they do not
	// compile (the APIs bound to them are denied), by id.
	SkippedPolicies map[string]string `json:"skipped_policies"`
	// BuildError is there while the gateway's configuration fails to
	// build: this bundle is then the last good one, still served.
	BuildError *buildErrorStatus `json:"build_error,omitempty"`
}

type bundleFile struct {
	Path   string `json:"path"`
	Bytes  int    `json:"bytes"`
	SHA256 string `json:"sha256"`
}

type bundleModule struct {
	bundleFile
	// PolicyID names the policy a module is the package of ("" for the
	// built-in library).
	PolicyID string `json:"policy_id,omitempty"`
	Source   string `json:"source"`
}

func (s *Server) gatewayBundleContent(c *gin.Context) {
	gw, ok := s.loadGateway(c)
	if !ok {
		return
	}
	tid, id := gw.Meta.TenantID, gw.Meta.ID
	b := s.bundles.Get(tid, id)
	failure := s.bundles.BuildFailure(tid, id)
	switch {
	case b == nil && failure != nil && !failure.Retrying:
		abort(c, newError(http.StatusConflict, CodeBuildFailed, "the gateway's bundle does not build: "+failure.Error,
			map[string]any{"reason": failure.Error}))
		return
	case b == nil:
		abort(c, newError(http.StatusServiceUnavailable, CodeNotBuilt, "the gateway's bundle is not built yet; retry", nil).
			WithRetryAfter(notBuiltRetryAfter))
		return
	}
	body, err := bundleContent(b)
	if err != nil {
		abort(c, internalError(err))
		return
	}
	if failure != nil {
		body.BuildError = &buildErrorStatus{Error: failure.Error, Since: failure.Since, Failures: failure.Failures, Retrying: failure.Retrying}
	}
	respondObject(c, http.StatusOK, b.Revision, body)
}

// bundleContent reads a built bundle's tarball.
func bundleContent(b *bundles.Bundle) (*bundleContentBody, error) {
	out := &bundleContentBody{TenantID: b.TenantID, GatewayID: b.GatewayID, Revision: b.Revision, ETag: b.ETag(), Hash: b.Hash,
		KeyID: b.KeyID, BuiltAt: b.BuiltAt, Bytes: len(b.Raw), Modules: []bundleModule{}, Files: []bundleFile{},
		SkippedPolicies: map[string]string{}}
	policyOf := map[string]string{} // module path -> policy id
	if b.Compiled != nil {
		for pid, why := range b.Compiled.Skipped {
			out.SkippedPolicies[pid] = why
		}
		for _, p := range bundlePolicies(b.Compiled) {
			policyOf[policies.Root+"/policies/"+p.Package+".rego"] = p.ID
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.Raw))
	if err != nil {
		return nil, fmt.Errorf("read the bundle of %s/%s: %w", b.TenantID, b.GatewayID, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the bundle of %s/%s: %w", b.TenantID, b.GatewayID, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read %s of the bundle of %s/%s: %w", h.Name, b.TenantID, b.GatewayID, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		sum := sha256.Sum256(content)
		f := bundleFile{Path: name, Bytes: len(content), SHA256: hex.EncodeToString(sum[:])}
		out.Files = append(out.Files, f)
		switch {
		case name == ".manifest":
			out.Manifest = content
		case name == "data.json":
			out.Data = content
		case strings.HasSuffix(name, ".rego"):
			out.Modules = append(out.Modules, bundleModule{bundleFile: f, PolicyID: policyOf[name], Source: string(content)})
		}
	}
	slices.SortFunc(out.Modules, func(a, b bundleModule) int { return strings.Compare(a.Path, b.Path) })
	if out.Manifest == nil || out.Data == nil {
		return nil, fmt.Errorf("the bundle of %s/%s has no .manifest or data.json", b.TenantID, b.GatewayID)
	}
	return out, nil
}

// bundlePolicies reads data.gatehouse.config.policies of compiled content.
func bundlePolicies(c *policies.Compiled) []policies.PolicyData {
	g, _ := c.Data[policies.Root].(map[string]any)
	cfg, _ := g["config"].(map[string]any)
	ps, _ := cfg["policies"].(map[string]any)
	out := make([]policies.PolicyData, 0, len(ps))
	for _, v := range ps {
		raw, err := json.Marshal(v)
		if err != nil {
			continue
		}
		var p policies.PolicyData
		if json.Unmarshal(raw, &p) == nil && p.ID != "" {
			out = append(out, p)
		}
	}
	return out
}
