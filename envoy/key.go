package envoy

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sort"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/policies"
)

// translationKey identifies everything Translate reads from a compiled
// gateway and its options: equal keys give identical resources. The server
// uses it to skip gateways whose bundle changed in ways xDS does not see
// (policies, scopes, issuers). Keep it in step with Translate: a field
// Translate starts to read must be added here (TestTranslationKey).
func translationKey(c *policies.Compiled, opts TranslateOptions) [sha256.Size]byte {
	h := sha256.New()
	w := keyWriter{h: h}
	o := opts.withDefaults()
	w.str("opts", o.AuthorizerAddress, o.AuthorizerTimeout.String(), o.AuthorizerConnectTimeout.String(),
		o.UpstreamConnectTimeout.String(), o.UpstreamCAFile)
	if t := o.AuthorizerTLS; t != nil {
		w.str("authorizer-tls", t.CAPEM, t.CAFile, t.ServerName, t.CertFile, t.KeyFile)
	}
	g := c.Gateway.Spec
	w.str("gateway", c.TenantID, c.GatewayID, g.Type, g.ListenerAddress, strconv.Itoa(g.ListenerPort),
		strconv.FormatBool(g.AllowUnmatchedRoutes))
	if b := g.RequestBody; b != nil {
		w.str("body", strconv.FormatUint(uint64(b.MaxRequestBytes), 10), strconv.FormatBool(b.AllowPartialMessage))
	}
	for _, s := range c.Services {
		w.str("service", s.ID, s.Spec.URL)
		w.str("hosts", s.Spec.Hosts...)
	}
	if c.Routes != nil {
		for _, vh := range c.Routes.VHosts {
			w.str("vhost", vh.Name)
			w.str("domains", vh.Domains...)
			for _, r := range vh.Routes {
				w.str("route", r.APIID, r.ServiceID, r.Method, r.Template.Raw,
					strconv.FormatBool(skipsAuthorizer(c.APIs[r.APIID].Spec)))
			}
		}
	}
	// APIs are read through the routes above; their count guards against
	// an API without a route.
	ids := make([]string, 0, len(c.APIs))
	for id := range c.APIs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	w.str("apis", ids...)
	w.str("owned-headers", c.OwnedHeaders...)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// keyWriter writes length-prefixed strings, so that no two sequences
// encode alike.
type keyWriter struct{ h hash.Hash }

func (w keyWriter) str(tag string, vs ...string) {
	var n [binary.MaxVarintLen64]byte
	for _, v := range append([]string{tag}, vs...) {
		w.h.Write(n[:binary.PutUvarint(n[:], uint64(len(v)))])
		w.h.Write([]byte(v))
	}
	w.h.Write([]byte{0xff})
}
