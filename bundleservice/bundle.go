package bundleservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/internal/httpapi"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// maxLongPoll caps Prefer: wait=N.
const maxLongPoll = 300 * time.Second

var preferWait = regexp.MustCompile(`(?:^|[;,\s])wait=(\d+)`)

var (
	tenantRepo  = store.Repo[model.TenantSpec]{Kind: model.KindTenant}
	gatewayRepo = store.Repo[model.GatewaySpec]{Kind: model.KindGateway}
)

func gatewayNotFound(gw string) *httpapi.Error {
	return httpapi.New(http.StatusNotFound, CodeGatewayNotFound, fmt.Sprintf("gateway %q does not exist (it was deleted)", gw),
		map[string]any{"kind": "gateway", "id": gw})
}

// noBundle answers for a gateway without a bundle: 404 gateway_not_found
// when the gateway does not exist (it was deleted, perhaps during a long
// poll), 503 while its bundle fails to build or is not built yet.
func (s *Service) noBundle(c *gin.Context, tid, gw string) {
	if msg := s.bundles.BuildError(tid, gw); msg != "" {
		httpapi.Abort(c, httpapi.New(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the gateway's bundle failed to build: "+msg, nil))
		return
	}
	if storeDown(c) {
		httpapi.Abort(c, httpapi.StoreUnavailable())
		return
	}
	_, err := gatewayRepo.Get(c.Request.Context(), s.store, tid, gw)
	switch {
	case errors.Is(err, store.ErrNotFound):
		httpapi.Abort(c, gatewayNotFound(gw))
	case err != nil:
		httpapi.Abort(c, httpapi.Internal(err))
	default:
		httpapi.Abort(c, httpapi.New(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the gateway's bundle is not built yet; retry", nil))
	}
}

// tenantDisabled reports whether the tenant is DISABLED (a tenant that
// does not exist is not: noBundle answers for its gateways).
func (s *Service) tenantDisabled(ctx context.Context, tid string) (bool, error) {
	t, err := tenantRepo.Get(ctx, s.store, "", tid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up tenant %s: %w", tid, err)
	}
	return t.Spec.Status == model.TenantDisabled, nil
}

// refuseDisabled answers 403 tenant_disabled and reports true when the
// tenant is DISABLED: its gateways get no bundle (an authorizer keeps
// enforcing the one it has).
func (s *Service) refuseDisabled(c *gin.Context, tid string) bool {
	disabled, err := s.tenantDisabled(c.Request.Context(), tid)
	switch {
	case err != nil:
		httpapi.Abort(c, httpapi.Internal(err))
	case disabled:
		httpapi.Abort(c, httpapi.New(http.StatusForbidden, httpapi.CodeTenantDisabled,
			fmt.Sprintf("tenant %q is disabled: its gateways get no bundle until it is enabled again (keep enforcing the last one)", tid),
			map[string]any{"tenant_id": tid}))
	}
	return err != nil || disabled
}

// serveBundle serves the gateway's bundle with ETag / If-None-Match, and
// long polls when the request says Prefer: wait=N. A DISABLED tenant's
// gateways are refused (403 tenant_disabled). While the service drains
// (Drain), nothing waits. While the store is unavailable, a gateway whose
// credential came from the cache is served (and long-polls on) the bundle
// held in memory, and nothing is written.
func (s *Service) serveBundle(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	ctx := c.Request.Context()
	if s.draining.Err() != nil {
		c.Header("Connection", "close")
	}
	select {
	case <-s.bundles.Ready():
	default:
		select {
		case <-s.bundles.Ready():
		case <-ctx.Done():
			return
		case <-s.draining.Done():
			c.Header("Connection", "close")
			httpapi.Abort(c, httpapi.New(http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the control plane is shutting down before its first build; retry", nil))
			return
		}
	}
	// While the store is down the tenant cannot be checked: the credential
	// was remembered when it last passed this check, and the cache forgets
	// a tenant's credentials when the tenant changes.
	down := storeDown(c)
	if !down {
		if s.refuseDisabled(c, tid) {
			return
		}
		if v, ok := c.Get(ctxVerified); ok && !v.(verified).jwt {
			s.creds.Remember(v.(verified).token, v.(verified).id)
		}
	}
	b := s.bundles.Get(tid, gw)
	if b == nil {
		s.noBundle(c, tid, gw)
		return
	}
	wait := time.Duration(0)
	if m := preferWait.FindStringSubmatch(c.GetHeader("Prefer")); m != nil {
		n, _ := strconv.Atoi(m[1])
		wait = min(time.Duration(n)*time.Second, maxLongPoll)
	}
	inm := c.GetHeader("If-None-Match")
	// A client ahead of this replica (its revision is newer than ours: our
	// change feed lags) is never sent the older bundle, which it would refuse
	// as a rollback: it waits like a client that is current, then gets 304.
	if wait > 0 && (etagMatches(inm, b.ETag()) || clientAhead(inm, b)) {
		wctx, cancel := context.WithTimeout(ctx, wait)
		stop := context.AfterFunc(s.draining, cancel)
		nb := s.bundles.Wait(wctx, tid, gw, b.ETag())
		stop()
		cancel()
		if s.draining.Err() != nil {
			c.Header("Connection", "close")
		}
		if nb == nil {
			s.noBundle(c, tid, gw)
			return
		}
		// The tenant may have been disabled during the wait.
		if !down && nb.ETag() != b.ETag() && s.refuseDisabled(c, tid) {
			return
		}
		b = nb
	}
	if !down {
		s.touchGateway(ctx, tid, gw, c.ClientIP())
	}
	contentType := "application/gzip"
	if wait > 0 {
		contentType = policies.BundleContentType
	}
	if clientAhead(inm, b) {
		c.Header("ETag", strings.TrimSpace(inm))
		c.Status(http.StatusNotModified)
		return
	}
	c.Header("ETag", b.ETag())
	c.Header("Content-Type", contentType)
	if etagMatches(inm, b.ETag()) {
		c.Status(http.StatusNotModified)
		return
	}
	c.Data(http.StatusOK, contentType, b.Raw)
}

// clientAhead reports whether If-None-Match names a single bundle revision
// newer than b's (ETags are quoted revision numbers).
func clientAhead(header string, b *bundles.Bundle) bool {
	v := strings.TrimPrefix(strings.TrimSpace(header), "W/")
	rev, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64)
	return err == nil && len(v) > 2 && v[0] == '"' && v[len(v)-1] == '"' && rev > b.Revision
}

func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		if v = strings.TrimSpace(v); v == etag || v == "W/"+etag {
			return true
		}
	}
	return false
}

// touchGateway records when the gateway last fetched its bundle.
func (s *Service) touchGateway(ctx context.Context, tid, gw, remote string) {
	if err := bundles.RecordFetch(ctx, s.store, tid, gw, remote, time.Now()); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "record gateway activity", "error", err.Error())
	}
}
