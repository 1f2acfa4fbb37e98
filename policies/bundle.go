package policies

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// BundleContentType is what the bundle service answers with; OPA keeps long
// polling only when it sees exactly this.
const BundleContentType = "application/vnd.openpolicyagent.bundles"

// Build writes a compiled bundle as an OPA bundle (gzip tar): .manifest
// (revision, roots, rego_version 1, tenant and gateway metadata), data.json,
// the Rego modules and, when key is set, .signatures.json. The output is a
// function of its inputs: no timestamps, sorted files, a deterministic
// signature algorithm.
func Build(c *Compiled, revision int64, key *SigningKey) ([]byte, error) {
	roots := []string{Root}
	b := bundle.Bundle{
		Manifest: bundle.Manifest{
			Revision: strconv.FormatInt(revision, 10),
			Roots:    &roots,
			Metadata: map[string]any{"tenant": c.TenantID, "gateway": c.GatewayID},
		},
		Data: c.Data,
	}
	b.Manifest.SetRegoVersion(ast.RegoV1)
	if b.Data == nil {
		b.Data = map[string]any{}
	}
	for _, m := range c.Modules {
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: m.Path, Path: m.Path, Raw: []byte(m.Source)})
	}
	if key != nil {
		sc := bundle.NewSigningConfig(key.privatePEM, key.Algorithm, "")
		if err := b.GenerateSignature(sc, key.KeyID, true); err != nil {
			return nil, fmt.Errorf("sign bundle: %w", err)
		}
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).UseModulePath(true).Write(b); err != nil {
		return nil, fmt.Errorf("write bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// VerificationConfig is how a reader verifies bundles signed with a
// tenant's public key.
func VerificationConfig(keyID, publicKeyPEM string) *bundle.VerificationConfig {
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{
		keyID: {Key: publicKeyPEM, Algorithm: SigningAlgorithm},
	}, keyID, "", nil)
}

// ReadBundle reads and verifies a bundle (the signature is required when vc
// is set).
func ReadBundle(raw []byte, vc *bundle.VerificationConfig) (bundle.Bundle, error) {
	r := bundle.NewReader(bytes.NewReader(raw)).WithRegoVersion(ast.RegoV1)
	if vc != nil {
		r = r.WithBundleVerificationConfig(vc)
	} else {
		r = r.WithSkipBundleVerification(true)
	}
	return r.Read()
}
