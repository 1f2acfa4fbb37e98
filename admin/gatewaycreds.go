package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// GatewayCredentials verifies gateway credentials (ghg_<tenant>.<id>.<secret>)
// against the store: the one check behind the bundle service
// (/api/system/{tid}/gateways/{gw}/opa/…) and the xDS server (it is an
// envoy.CredentialVerifier).
type GatewayCredentials struct {
	store store.Store
	log   *slog.Logger
}

// NewGatewayCredentials returns the verifier of st's gateway credentials.
func NewGatewayCredentials(st store.Store, log *slog.Logger) *GatewayCredentials {
	if log == nil {
		log = slog.Default()
	}
	return &GatewayCredentials{store: st, log: log}
}

var _ envoy.CredentialVerifier = (*GatewayCredentials)(nil)

// VerifyGateway returns the gateway token is a credential of. A malformed,
// unknown, wrong or revoked token is envoy.ErrInvalidCredential; a store
// failure is another error.
func (g *GatewayCredentials) VerifyGateway(ctx context.Context, token string) (envoy.GatewayIdentity, error) {
	cred, tid, err := verifyGatewayToken(ctx, g.store, token)
	if err != nil {
		return envoy.GatewayIdentity{}, err
	}
	return envoy.GatewayIdentity{TenantID: tid, GatewayID: cred.Spec.GatewayID, CredentialID: cred.Meta.ID}, nil
}

// verifyGatewayToken looks a gateway credential up and checks its secret
// in constant time. It returns the credential and its tenant, an error
// wrapping envoy.ErrInvalidCredential, or a store error.
func verifyGatewayToken(ctx context.Context, r store.Reader, token string) (*store.Typed[model.GatewayCredentialSpec], string, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(token), gatewayCredentialPrefix)
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || !model.ValidTenantID(parts[0]) || !model.ValidObjectID(parts[1]) {
		return nil, "", fmt.Errorf("malformed token: %w", envoy.ErrInvalidCredential)
	}
	cred, err := gatewayCredRepo.Get(ctx, r, parts[0], parts[1])
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, "", fmt.Errorf("look up gateway credential: %w", err)
	}
	want := []byte{}
	if cred != nil {
		want, _ = hex.DecodeString(cred.Spec.SecretHash)
	}
	sum := sha256.Sum256([]byte(parts[2]))
	if cred == nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, "", fmt.Errorf("unknown credential or wrong secret: %w", envoy.ErrInvalidCredential)
	}
	return cred, parts[0], nil
}

// revocationKinds are the kinds whose deletion may revoke gateway
// credentials (a gateway's and a tenant's take their credentials along).
var revocationKinds = map[string]bool{model.KindGatewayCredential: true, model.KindGateway: true, model.KindTenant: true}

// FollowRevocations calls revoked after every committed transaction that
// deleted gateway credentials (revoked ones, or those of a deleted gateway
// or tenant), following the store's change feed from fromRevision (0: the
// current revision) until ctx ends — changes made through any replica. It
// calls revoked too when the feed resumes after an interruption (changes
// may have been missed). Give it the xDS server's Reverify.
func (g *GatewayCredentials) FollowRevocations(ctx context.Context, fromRevision int64, revoked func(context.Context)) error {
	rev := fromRevision
	if rev <= 0 {
		var err error
		if rev, err = g.revision(ctx); err != nil {
			return fmt.Errorf("follow gateway credential revocations: %w", err)
		}
	}
	backoff := 100 * time.Millisecond
	for {
		last, err := g.follow(ctx, rev, revoked)
		if ctx.Err() != nil {
			return nil
		}
		if last > rev {
			rev, backoff = last, 100*time.Millisecond
		}
		if errors.Is(err, store.ErrCompacted) {
			// Start over from now; the call to revoked below covers the gap.
			if now, rerr := g.revision(ctx); rerr == nil {
				rev = now
			}
		}
		g.log.Warn("gateway credential revocations: change feed interrupted; resuming", "error", fmt.Sprint(err), "revision", rev)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		revoked(ctx)
	}
}

// follow watches from rev and returns the last revision seen and why it
// stopped.
func (g *GatewayCredentials) follow(ctx context.Context, rev int64, revoked func(context.Context)) (int64, error) {
	ch, err := g.store.Watch(ctx, rev)
	if err != nil {
		return rev, err
	}
	for {
		select {
		case <-ctx.Done():
			return rev, ctx.Err()
		case ev, ok := <-ch:
			if !ok {
				return rev, errors.New("watch closed")
			}
			if ev.Err != nil {
				return rev, ev.Err
			}
			rev = ev.Revision
			for _, c := range ev.Changes {
				if c.Op == store.OpDelete && revocationKinds[c.Kind] {
					revoked(ctx)
					break
				}
			}
		}
	}
}

func (g *GatewayCredentials) revision(ctx context.Context) (int64, error) {
	var rev int64
	err := g.store.View(ctx, func(ctx context.Context, r store.Reader) error {
		var err error
		rev, err = r.Revision(ctx)
		return err
	})
	return rev, err
}
