package admin_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
	serverkeys "github.com/gatehouse-dev/gatehouse/oauth/keys"
	"github.com/gatehouse-dev/gatehouse/store"
)

// adminKinds are the kinds the admin API writes: the configuration
// kinds, credentials, the authorization servers' signing keys, and the
// token revocations a client's delete writes. The tenants' bundle
// signing keys are left out: the bundle manager creates them in the
// background when a tenant's first gateway is built.
var adminKinds = []string{model.KindTenant, model.KindAdminCredential, model.KindService, model.KindAPI, model.KindPolicy,
	model.KindScope, model.KindIssuer, model.KindGateway, model.KindGatewayCredential,
	model.KindServer, serverkeys.Kind, model.KindClaim, model.KindClient, model.KindTokenRevocation}

// snapshot is what the admin API has written: every object of adminKinds
// (live or soft-deleted, with its uid and revision) and every audit event.
// Tests compare snapshots rather than the global revision, which the
// bundle manager moves whenever it likes.
type snapshot struct {
	objects string
	events  map[string]*store.Event
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	ctx := context.Background()
	tenants := []string{""}
	var b strings.Builder
	list := func(kind, tid string) {
		pg, err := e.store.List(ctx, store.Query{Kind: kind, TenantID: tid, IncludeDeleted: true})
		if err != nil {
			e.t.Fatalf("list %s of %q: %v", kind, tid, err)
		}
		for _, o := range pg.Items {
			fmt.Fprintf(&b, "%s/%s/%s uid=%s rev=%d deleted=%v\n", kind, tid, o.ID, o.UID, o.Revision, o.DeletedAt != nil)
			if kind == model.KindTenant && tid == "" && !slices.Contains(tenants, o.ID) {
				tenants = append(tenants, o.ID)
			}
		}
	}
	list(model.KindTenant, "")
	slices.Sort(tenants)
	s := snapshot{events: map[string]*store.Event{}}
	for _, tid := range tenants {
		for _, kind := range adminKinds {
			list(kind, tid)
		}
		pg, err := e.store.ListEvents(ctx, store.EventQuery{TenantID: tid})
		if err != nil {
			e.t.Fatalf("events of %q: %v", tid, err)
		}
		for _, ev := range pg.Items {
			s.events[tid+"/"+ev.ID] = ev
		}
	}
	s.objects = b.String()
	return s
}

// requireUnchanged fails the test when the admin API wrote anything since
// before.
func (e *env) requireUnchanged(t *testing.T, before snapshot, msg string) {
	t.Helper()
	after := e.snapshot()
	if after.objects != before.objects || len(after.events) != len(before.events) {
		t.Fatalf("%s:\nbefore:\n%s%d events\nafter:\n%s%d events", msg, before.objects, len(before.events), after.objects, len(after.events))
	}
}

// transactionsSince counts the write transactions of the admin API since
// before: the distinct revisions of the audit events recorded since (every
// admin write records its events in its own transaction).
func (e *env) transactionsSince(before snapshot) int {
	e.t.Helper()
	revs := map[int64]bool{}
	for k, ev := range e.snapshot().events {
		if before.events[k] == nil {
			revs[ev.Revision] = true
		}
	}
	return len(revs)
}
