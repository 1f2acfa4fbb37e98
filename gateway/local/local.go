// Package local feeds an in-process authorizer straight from the bundle
// manager (gatehouse serve): every gateway's current compiled bundle is
// activated as soon as it is built, without a network round trip.
package local

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Run activates every bundle of m and follows its changes until ctx ends.
func Run(ctx context.Context, m *bundles.Manager, a *gateway.Activator, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	select {
	case <-m.Ready():
	case <-ctx.Done():
		return
	}
	active := map[string]string{} // gateway key -> bundle hash
	for {
		changed := m.Changed()
		seen := map[string]bool{}
		for _, b := range m.All() {
			key := gateway.Key(b.TenantID, b.GatewayID)
			seen[key] = true
			if active[key] == b.Hash {
				continue
			}
			src, err := gateway.SourceFromCompiled(b.Compiled, strconv.FormatInt(b.Revision, 10))
			if err == nil {
				_, err = a.Activate(ctx, src, "in-process")
			}
			if err != nil {
				log.Error("in-process activation failed", "tenant", b.TenantID, "gateway", b.GatewayID, "error", err.Error())
				continue
			}
			active[key] = b.Hash
		}
		for key := range active {
			if !seen[key] {
				tid, gw := split(key)
				a.Remove(tid, gw)
				delete(active, key)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func split(key string) (string, string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return key, ""
}

// StoreSink writes decision log events straight into the store's decision
// log (what the bundle service's logs endpoint does for remote
// authorizers).
type StoreSink struct{ Store store.Runtime }

// Send implements gateway.LogSink.
func (s StoreSink) Send(ctx context.Context, tenantID, gatewayID string, events []json.RawMessage) error {
	return s.Store.AppendLog(ctx, store.LogStream{Name: model.DecisionLogStream, TenantID: tenantID, Key: gatewayID}, events)
}
