package gatewaycred_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/gatewaycred"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The store is written as the admin API writes it (package admin is above
// this one): gateways with a credential each, revocations and deletions.

// createGateway stores gateway gw of tenant tid with a credential and
// returns the credential's id and token.
func createGateway(t *testing.T, st store.Store, tid, gw string) (id, token string) {
	t.Helper()
	cred, token := newCredential(t, tid, gw)
	testkit.Create(t, st, testkit.Gateway(tid, gw, model.GatewaySpec{Type: model.GatewayEnvoy}), cred)
	return cred.ID, token
}

// addCredential stores another credential of gateway gw and returns its
// token.
func addCredential(t *testing.T, st store.Store, tid, gw string) string {
	t.Helper()
	cred, token := newCredential(t, tid, gw)
	testkit.Create(t, st, cred)
	return token
}

func newCredential(t *testing.T, tid, gw string) (*store.Object, string) {
	t.Helper()
	cred, token, err := gatewaycred.NewCredential(tid, gw)
	if err != nil {
		t.Fatal(err)
	}
	return cred, token
}

// revoke deletes one credential (DELETE …/gateways/{gw}/credentials/{id}).
func revoke(t *testing.T, st store.Store, tid, id string) {
	t.Helper()
	testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
		_, err := tx.Delete(ctx, model.KindGatewayCredential, tid, id, 0, false)
		return err
	})
}

// deleteGateway deletes a gateway and soft-deletes its credentials in one
// transaction (DELETE …/gateways/{gw}).
func deleteGateway(t *testing.T, st store.Store, tid, gw string) {
	t.Helper()
	testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
		page, err := tx.List(ctx, store.Query{Kind: model.KindGatewayCredential, TenantID: tid, ParentID: gw})
		if err != nil {
			return err
		}
		for _, o := range page.Items {
			if _, err := tx.Delete(ctx, model.KindGatewayCredential, tid, o.ID, 0, true); err != nil {
				return err
			}
		}
		_, err = tx.Delete(ctx, model.KindGateway, tid, gw, 0, false)
		return err
	})
}

// deleteTenant deletes everything of a tenant and marks it deleted in one
// transaction (DELETE /api/system/tenants/{tid}).
func deleteTenant(t *testing.T, st store.Store, tid string) {
	t.Helper()
	testkit.Write(t, st, func(ctx context.Context, tx store.Tx) error {
		if _, err := tx.DeleteTenant(ctx, tid); err != nil {
			return err
		}
		_, err := tx.Delete(ctx, model.KindTenant, "", tid, 0, true)
		return err
	})
}

// revision is the store's current revision.
func revision(t *testing.T, st store.Store) int64 {
	t.Helper()
	rev, err := st.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rev
}
