package bundles

import (
	"time"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// publishedKeys reads the public key sets of the tenant's servers (by
// server id), each with its server's retention.
func publishedKeys(servers []policies.Object[model.ServerSpec], sets []*store.Object) (map[string]policies.KeySet, error) {
	retention := map[string]*model.ServerSpec{}
	for i := range servers {
		retention[servers[i].ID] = &servers[i].Spec
	}
	out := map[string]policies.KeySet{}
	for _, o := range sets {
		spec, ok := retention[o.ID]
		if !ok {
			continue // a key set outliving its server (deleted with it)
		}
		set, err := keys.Published(o, keys.RetentionOf(spec))
		if err != nil {
			return nil, err
		}
		out[o.ID] = set
	}
	return out, nil
}

// revocationsOf is data.gatehouse.config.revocations of the tenant's
// revocation objects (nil when there are none).
func revocationsOf(revs []policies.Object[model.TokenRevocationSpec]) *policies.RevocationsData {
	if len(revs) == 0 {
		return nil
	}
	r := &policies.RevocationsData{JTI: map[string]map[string]int64{}, NotBefore: map[string]map[string]int64{},
		ClientNotBefore: map[string]map[string]map[string]int64{}}
	for _, o := range revs {
		s := o.Spec
		switch {
		case s.JTI != "":
			if r.JTI[s.Issuer] == nil {
				r.JTI[s.Issuer] = map[string]int64{}
			}
			r.JTI[s.Issuer][s.JTI] = s.ExpiresAt.Unix()
		case s.NotBefore != nil && s.ClientID != "":
			bySub := r.ClientNotBefore[s.Issuer]
			if bySub == nil {
				bySub = map[string]map[string]int64{}
				r.ClientNotBefore[s.Issuer] = bySub
			}
			if bySub[s.Subject] == nil {
				bySub[s.Subject] = map[string]int64{}
			}
			bySub[s.Subject][s.ClientID] = max(bySub[s.Subject][s.ClientID], ceilUnix(*s.NotBefore))
		case s.NotBefore != nil:
			if r.NotBefore[s.Issuer] == nil {
				r.NotBefore[s.Issuer] = map[string]int64{}
			}
			r.NotBefore[s.Issuer][s.Subject] = max(r.NotBefore[s.Issuer][s.Subject], ceilUnix(*s.NotBefore))
		}
	}
	return r
}

// ceilUnix is t in Unix seconds, rounded up: a token's iat has a second's
// resolution, so one issued in the second of a revocation — before it or
// after — cannot be told apart, and is refused (deny when unsure).
func ceilUnix(t time.Time) int64 {
	if t.Nanosecond() == 0 {
		return t.Unix()
	}
	return t.Unix() + 1
}
