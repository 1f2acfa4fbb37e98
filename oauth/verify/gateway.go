package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gatehouse-dev/gatehouse/bundleservice"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// GatewayAuth admits at the bundle service the access tokens of a
// gateway's own OAuth client (the client made when the gateway was
// created with a server): issued by that server, for the gateway's
// audience (model.GatewayAudience), client_id that client. It implements
// bundleservice.GatewayTokenVerifier.
type GatewayAuth struct {
	Verifier *Verifier
}

// VerifyGateway checks raw as an access token of gateway gw of tid.
func (a GatewayAuth) VerifyGateway(ctx context.Context, tid, gw, raw string) error {
	err := a.verifyGateway(ctx, tid, gw, raw)
	if errors.Is(err, ErrNotAccepted) {
		return fmt.Errorf("%w: %w", bundleservice.ErrTokenNotAccepted, err)
	}
	return err
}

func (a GatewayAuth) verifyGateway(ctx context.Context, tid, gw, raw string) error {
	o, err := a.Verifier.store.Get(ctx, model.KindGateway, tid, gw)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: gateway %s/%s does not exist", ErrNotAccepted, tid, gw)
	}
	if err != nil {
		return fmt.Errorf("verify: read gateway %s/%s: %w", tid, gw, err)
	}
	var spec model.GatewaySpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		return fmt.Errorf("verify: decode gateway %s/%s: %w", tid, gw, err)
	}
	if spec.ServerID == "" {
		return fmt.Errorf("%w: gateway %s/%s has no server", ErrNotAccepted, tid, gw)
	}
	tok, err := a.Verifier.Verify(ctx, tid, spec.ServerID, raw, model.GatewayAudience(tid, gw))
	if err != nil {
		return err
	}
	cid, _ := tok.Claims["client_id"].(string)
	if cid == "" {
		return fmt.Errorf("%w: the token names no client_id", ErrNotAccepted)
	}
	co, err := a.Verifier.store.Get(ctx, model.KindClient, tid, cid)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: client %s does not exist", ErrNotAccepted, cid)
	}
	if err != nil {
		return fmt.Errorf("verify: read client %s/%s: %w", tid, cid, err)
	}
	var client model.ClientSpec
	if err := json.Unmarshal(co.Spec, &client); err != nil {
		return fmt.Errorf("verify: decode client %s/%s: %w", tid, cid, err)
	}
	if client.GatewayID != gw || client.ServerID != spec.ServerID {
		return fmt.Errorf("%w: client %s is not gateway %s's", ErrNotAccepted, cid, gw)
	}
	return nil
}
