package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/netguard"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/resource"
	"github.com/gatehouse-dev/gatehouse/store"
)

var issuerRepo = store.Repo[model.IssuerSpec]{Kind: model.KindIssuer}

// maxInlineJWKS caps an inline key set.
const maxInlineJWKS = 64 << 10

// issuerBody is a token issuer on the wire — one whose bearer tokens the
// tenant's gateways accept: the body of create and PUT and what GET
// returns. tenant_id and metadata are read-only.
type issuerBody struct {
	ID          string            `json:"id"`
	TenantID    string            `json:"tenant_id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Issuer      string            `json:"issuer"`
	Audiences   []string          `json:"audiences"`
	JWKS        json.RawMessage   `json:"jwks,omitempty"`
	JWKSURI     string            `json:"jwks_uri,omitempty"`
	Discovery   bool              `json:"discovery"`
	Labels      map[string]string `json:"labels"`
	Metadata    *Metadata         `json:"metadata,omitempty"`
}

func renderIssuer(t *store.Typed[model.IssuerSpec]) issuerBody {
	return issuerBody{
		ID: t.Meta.ID, TenantID: t.Meta.TenantID, Name: t.Meta.Name, Description: t.Meta.Description, Issuer: t.Spec.Issuer,
		Audiences: nonNilStrings(t.Spec.Audiences), JWKS: t.Spec.JWKS, JWKSURI: t.Spec.JWKSURI, Discovery: t.Spec.Discovery,
		Labels: labelsOrEmpty(t.Meta.Labels), Metadata: metadataOf(&t.Meta),
	}
}

// addIssuerKind registers token issuers (the JWT issuers a tenant's
// gateways trust; one issuer URL per tenant). PUT replaces the issuer.
func addIssuerKind(sch *resource.Scheme) {
	simpleKind[model.IssuerSpec, issuerBody, issuerBody]{
		Kind:  &resource.Kind{Name: model.KindIssuer, Singular: "issuer", Bundled: true, Exported: true},
		Param: "iid", NameField: "name", Render: renderIssuer, ID: func(r *issuerBody) string { return r.ID },
		Build: func(s *Server, tid, _ string, r *issuerBody) (store.Object, model.IssuerSpec, error) {
			spec, apiErr := r.spec(tid, s.allowPrivateJWKSURLs)
			if apiErr != nil {
				return store.Object{}, spec, apiErr
			}
			return store.Object{Name: r.Name, Description: r.Description, Labels: r.Labels}, spec, nil
		},
		Check: func(ctx context.Context, tx store.Tx, t *store.Typed[model.IssuerSpec]) error {
			return uniqueIssuer(ctx, tx, t.Meta.TenantID, t.Meta.ID, t.Spec.Issuer)
		},
	}.register(sch)
	apiOf(sch.MustKind(model.KindIssuer)).importCheck = checkIssuerURLs
}

// spec validates the request: an issuer URL, exactly one key source (an
// inline public JWK Set, a jwks_uri, or OIDC discovery from the issuer URL)
// and at least one audience. URLs the authorizer fetches (jwks_uri, the
// issuer with discovery) must be https and may name a loopback or private
// host only when allowPrivate is set (--jwks-allow-private-urls).
func (r *issuerBody) spec(tid string, allowPrivate bool) (model.IssuerSpec, *Error) {
	spec, keyErr := r.keySpec(allowPrivate)
	return spec, collect(
		validateText("name", r.Name, true, 256),
		validateText("description", r.Description, false, 4096),
		tenantMatch(r.TenantID, tid),
		keyErr,
		validateLabels(r.Labels),
	)
}

// keySpec checks the issuer URL, the audiences and the key source.
func (r *issuerBody) keySpec(allowPrivate bool) (model.IssuerSpec, *Error) {
	if r.Issuer == "" {
		return model.IssuerSpec{}, missingField("issuer")
	}
	if len(r.Issuer) > 2048 {
		return model.IssuerSpec{}, fieldError("issuer", "must be at most 2048 characters")
	}
	if err := issuerURL(r.Issuer); err != nil {
		return model.IssuerSpec{}, err
	}
	if r.Discovery {
		if err := keyURL("issuer", r.Issuer, allowPrivate); err != nil {
			return model.IssuerSpec{}, err
		}
	}
	if len(r.Audiences) == 0 {
		return model.IssuerSpec{}, fieldError("audiences", "at least one audience is required (tokens must name one of them in aud)")
	}
	for i, a := range r.Audiences {
		if err := validateText(fmt.Sprintf("audiences[%d]", i), a, true, 512); err != nil {
			return model.IssuerSpec{}, err
		}
	}
	sources := 0
	for _, set := range []bool{len(r.JWKS) > 0 && string(r.JWKS) != "null", r.JWKSURI != "", r.Discovery} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return model.IssuerSpec{}, fieldError("jwks", "give exactly one key source: jwks (inline), jwks_uri, or discovery")
	}
	spec := model.IssuerSpec{Issuer: r.Issuer, Audiences: r.Audiences, JWKSURI: r.JWKSURI, Discovery: r.Discovery}
	if r.JWKSURI != "" {
		if len(r.JWKSURI) > 2048 {
			return model.IssuerSpec{}, fieldError("jwks_uri", "must be at most 2048 characters")
		}
		if err := keyURL("jwks_uri", r.JWKSURI, allowPrivate); err != nil {
			return model.IssuerSpec{}, err
		}
	}
	if len(r.JWKS) > 0 && string(r.JWKS) != "null" {
		jwks, apiErr := publicJWKS(r.JWKS)
		if apiErr != nil {
			return model.IssuerSpec{}, apiErr
		}
		spec.JWKS = jwks
	}
	return spec, nil
}

// issuerURL checks an issuer identifier (the iss of its tokens): an
// absolute http(s) URL without credentials, query or fragment, as OpenID
// Connect Discovery requires of issuers.
func issuerURL(raw string) *Error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n") {
		return fieldError("issuer", "must be an absolute http(s) URL without credentials, query or fragment (the iss of the tokens)")
	}
	return nil
}

// keyURL checks a URL the authorizer fetches keys or discovery documents
// from: https, without credentials or fragment. A loopback, private or
// link-local host (an IP literal, or localhost) is refused unless
// allowPrivate is set, and then may also be plain http; a public host must
// be https. Names resolving to private addresses are caught when the
// authorizer dials them (internal/netguard).
func keyURL(field, raw string, allowPrivate bool) *Error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" || u.User != nil ||
		u.Fragment != "" || strings.ContainsAny(raw, " \t\r\n") {
		return fieldError(field, "must be an absolute https URL without credentials or fragment")
	}
	kind := hostKind(u.Hostname())
	switch {
	case kind != "" && !allowPrivate:
		return fieldError(field, "names a %s address; such URLs are allowed only with --jwks-allow-private-urls", kind)
	case u.Scheme != "https" && kind == "":
		return fieldError(field, "must be an https URL (plain http is allowed only to loopback and private addresses, with --jwks-allow-private-urls)")
	}
	return nil
}

// hostKind is netguard.Kind of an IP literal host, "loopback" for
// localhost and its subdomains, and "" for any other name.
func hostKind(host string) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		return netguard.Kind(ip)
	}
	if h := strings.ToLower(strings.TrimSuffix(host, ".")); h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return "loopback"
	}
	return ""
}

// uniqueIssuer refuses an issuer URL another issuer of the tenant (other
// than id) already has: a token's iss must name one issuer.
func uniqueIssuer(ctx context.Context, tx store.Tx, tid, id, issuer string) error {
	all, err := issuerRepo.ListAll(ctx, tx, store.Query{TenantID: tid})
	if err != nil {
		return err
	}
	for _, other := range all {
		if other.Meta.ID != id && other.Spec.Issuer == issuer {
			return newError(http.StatusConflict, httpapi.CodeAlreadyExists, fmt.Sprintf("issuer: %q is already the issuer URL of issuer %q", issuer, other.Meta.ID),
				map[string]any{"field": "issuer", "reason": "already the issuer URL of another issuer", "kind": "issuer", "id": other.Meta.ID})
		}
	}
	return nil
}

// publicJWKS checks an inline key set: a JSON Web Key Set of public
// signing keys (private key material is refused), stored compact.
func publicJWKS(raw json.RawMessage) (json.RawMessage, *Error) {
	if len(raw) > maxInlineJWKS {
		return nil, fieldError("jwks", "must be at most %d bytes", maxInlineJWKS)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fieldError("jwks", "is not a JSON Web Key Set: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, fieldError("jwks", "holds no keys")
	}
	for i, k := range set.Keys {
		field := fmt.Sprintf("jwks.keys[%d]", i)
		if !k.Valid() {
			return nil, fieldError(field, "is not a valid key")
		}
		if !k.IsPublic() {
			return nil, fieldError(field, "holds private key material; give the public key only")
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fieldError(field, "use must be sig")
		}
	}
	compact, err := json.Marshal(set)
	if err != nil {
		return nil, fieldError("jwks", "cannot be encoded: %v", err)
	}
	return compact, nil
}

// checkIssuerURLs applies the issuer endpoint's rule that one tenant's
// issuers have distinct issuer URLs: within the document and, in merge
// mode, against the stored issuers the merge keeps.
func checkIssuerURLs(want []*configObject, stored configState, merge bool) *Error {
	seen := map[string]string{} // issuer URL -> where it is
	if merge {
		named := map[string]bool{}
		for _, o := range want {
			named[o.obj.ID] = true
		}
		for _, id := range slices.Sorted(maps.Keys(stored)) {
			if named[id] {
				continue
			}
			var spec model.IssuerSpec
			if err := json.Unmarshal(stored[id].Spec, &spec); err != nil {
				return internalError(fmt.Errorf("decode issuer %q: %w", id, err))
			}
			seen[spec.Issuer] = fmt.Sprintf("issuer %q, which a merge keeps", id)
		}
	}
	for _, o := range want {
		var spec model.IssuerSpec
		if err := json.Unmarshal(o.obj.Spec, &spec); err != nil {
			return internalError(fmt.Errorf("decode issuer %q: %w", o.obj.ID, err))
		}
		if prev, dup := seen[spec.Issuer]; dup {
			return fieldError(o.field+".issuer", "%q is also the issuer URL of %s", spec.Issuer, prev)
		}
		seen[spec.Issuer] = o.field
	}
	return nil
}
