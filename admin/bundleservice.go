package admin

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/gatehouse-dev/gatehouse/bundles"
	"github.com/gatehouse-dev/gatehouse/envoy"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The bundle service: what OPA (or the Gatehouse authorizer) talks to,
// authenticated with a gateway credential, under
// /api/system/{tid}/gateways/{gw}/opa/.
const (
	// maxLongPoll caps Prefer: wait=N.
	maxLongPoll = 300 * time.Second
	// Decision log upload limits: compressed and decompressed bytes.
	maxLogUpload       = 8 << 20
	maxLogDecompressed = 64 << 20
	// statusUpload caps a status report.
	maxStatusUpload = 4 << 20
	ctxGatewayCred  = "gatehouse.gateway_credential"
	// ctxGatewayVerified holds the gatewayVerified of the request.
	ctxGatewayVerified = "gatehouse.gateway_verified"
)

// CodeGatewayNotFound is the bundle service's answer (404) when the gateway
// does not exist, also given to a credential of a deleted gateway: the
// authorizer then stops enforcing the gateway's last bundle.
const CodeGatewayNotFound = "gateway_not_found"

var preferWait = regexp.MustCompile(`(?:^|[;,\s])wait=(\d+)`)

func (s *Server) bundleServiceRoutes(e *gin.Engine) {
	g := e.Group("/api/system/:tid/gateways/:gw/opa", s.gatewayAuth)
	g.GET("/bundle", s.serveBundle)
	g.POST("/status", s.receiveStatus)
	g.POST("/logs", s.receiveLogs)
}

// gatewayVerified is how gatewayAuth admitted the request.
type gatewayVerified struct {
	token string
	id    envoy.GatewayIdentity
	// cached: the store was unavailable and the credential was taken from
	// the cache of recently verified ones.
	cached bool
}

// storeDown reports whether the request's credential came from the cache
// because the store is unavailable: the bundle service then answers from
// memory only.
func storeDown(c *gin.Context) bool {
	v, _ := c.Get(ctxGatewayVerified)
	gv, _ := v.(gatewayVerified)
	return gv.cached
}

// gatewayAuth admits a gateway credential of this tenant and gateway: 401
// for a missing, unknown or wrong token, 403 for a valid token of another
// tenant or gateway, 404 gateway_not_found for a valid token of a gateway
// that was deleted. While the store is unavailable, a credential served
// recently is admitted from the cache (GatewayCredentials) for bundle
// downloads only; anything else is 503 store_unavailable.
func (s *Server) gatewayAuth(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	if !model.ValidTenantID(tid) {
		abort(c, fieldError("tid", "invalid tenant id (%s)", model.TenantIDRule))
		return
	}
	if !model.ValidObjectID(gw) {
		abort(c, fieldError("gw", "invalid gateway id (%s)", model.ObjectIDRule))
		return
	}
	scheme, token, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		abort(c, newError(http.StatusUnauthorized, CodeUnauthorized, "a gateway credential is required (Authorization: Bearer ghg_…)", nil))
		return
	}
	id, cached, err := s.gatewayCreds.verify(c.Request.Context(), token)
	if errors.Is(err, envoy.ErrInvalidCredential) {
		switch deleted, err := s.deletedGatewayCredential(c.Request.Context(), tid, gw, token); {
		case err != nil:
			abort(c, internalError(err))
		case deleted:
			abort(c, gatewayNotFound(gw))
		default:
			abort(c, newError(http.StatusUnauthorized, CodeUnauthorized, "invalid gateway credential", nil))
		}
		return
	}
	if err != nil {
		abort(c, internalError(err))
		return
	}
	if id.TenantID != tid || id.GatewayID != gw {
		abort(c, forbidden("this credential belongs to another gateway"))
		return
	}
	if cached && c.Request.Method != http.MethodGet {
		abort(c, storeUnavailable()) // status reports and decision logs need the store
		return
	}
	c.Set(ctxGatewayVerified, gatewayVerified{token: token, id: id, cached: cached})
	c.Set(ctxGatewayCred, id.CredentialID)
	c.Set(ctxPrincipal, Principal{Subject: "gateway:" + gw, TenantID: tid})
	c.Next()
}

// deletedGatewayCredential reports whether token is a credential of
// gateway gw of tenant tid that was deleted with its gateway (such
// credentials are soft-deleted): only its holder learns of the deletion.
func (s *Server) deletedGatewayCredential(ctx context.Context, tid, gw, token string) (bool, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(token), gatewayCredentialPrefix)
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || parts[0] != tid || !model.ValidObjectID(parts[1]) {
		return false, nil
	}
	page, err := s.store.List(ctx, store.Query{Kind: model.KindGatewayCredential, TenantID: tid, ParentID: gw, IncludeDeleted: true})
	if err != nil {
		return false, fmt.Errorf("look up deleted gateway credentials: %w", err)
	}
	for _, o := range page.Items {
		if o.ID != parts[1] || o.Live() {
			continue
		}
		var spec model.GatewayCredentialSpec
		if err := json.Unmarshal(o.Spec, &spec); err != nil {
			return false, fmt.Errorf("deleted gateway credential %s: %w", o.ID, err)
		}
		want, _ := hex.DecodeString(spec.SecretHash)
		sum := sha256.Sum256([]byte(parts[2]))
		return spec.GatewayID == gw && subtle.ConstantTimeCompare(sum[:], want) == 1, nil
	}
	return false, nil
}

func gatewayNotFound(gw string) *Error {
	return newError(http.StatusNotFound, CodeGatewayNotFound, fmt.Sprintf("gateway %q does not exist (it was deleted)", gw),
		map[string]any{"kind": "gateway", "id": gw})
}

// noBundle answers for a gateway without a bundle: 404 gateway_not_found
// when the gateway does not exist (it was deleted, perhaps during a long
// poll), 503 while its bundle fails to build or is not built yet.
func (s *Server) noBundle(c *gin.Context, tid, gw string) {
	if msg := s.bundles.BuildError(tid, gw); msg != "" {
		abort(c, newError(http.StatusServiceUnavailable, CodeUnavailable, "the gateway's bundle failed to build: "+msg, nil))
		return
	}
	if storeDown(c) {
		abort(c, storeUnavailable())
		return
	}
	_, err := gatewayRepo.Get(c.Request.Context(), s.store, tid, gw)
	switch {
	case errors.Is(err, store.ErrNotFound):
		abort(c, gatewayNotFound(gw))
	case err != nil:
		abort(c, internalError(err))
	default:
		abort(c, newError(http.StatusServiceUnavailable, CodeUnavailable, "the gateway's bundle is not built yet; retry", nil))
	}
}

// Drain ends the bundle service's long polls, for a shutdown: parked
// requests are answered at once (the current bundle, or 304 when the caller
// has it) and later ones are not held; each answer says Connection: close.
// Call it before http.Server.Shutdown, which waits for requests in flight.
func (s *Server) Drain() { s.drain() }

// tenantDisabled reports whether the tenant is DISABLED (a tenant that
// does not exist is not: noBundle answers for its gateways).
func (s *Server) tenantDisabled(ctx context.Context, tid string) (bool, error) {
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
func (s *Server) refuseDisabled(c *gin.Context, tid string) bool {
	disabled, err := s.tenantDisabled(c.Request.Context(), tid)
	switch {
	case err != nil:
		abort(c, internalError(err))
	case disabled:
		abort(c, newError(http.StatusForbidden, CodeTenantDisabled,
			fmt.Sprintf("tenant %q is disabled: its gateways get no bundle until it is enabled again (keep enforcing the last one)", tid),
			map[string]any{"tenant_id": tid}))
	}
	return err != nil || disabled
}

// serveBundle serves the gateway's bundle with ETag / If-None-Match, and
// long polls when the request says Prefer: wait=N. A DISABLED tenant's
// gateways are refused (403 tenant_disabled). While the server drains
// (Drain), nothing waits. While the store is unavailable, a gateway whose
// credential came from the cache is served (and long-polls on) the bundle
// held in memory, and nothing is written.
func (s *Server) serveBundle(c *gin.Context) {
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
			abort(c, newError(http.StatusServiceUnavailable, CodeUnavailable, "the control plane is shutting down before its first build; retry", nil))
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
		if v, ok := c.Get(ctxGatewayVerified); ok {
			s.gatewayCreds.Remember(v.(gatewayVerified).token, v.(gatewayVerified).id)
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
func (s *Server) touchGateway(ctx context.Context, tid, gw, remote string) {
	if err := bundles.RecordFetch(ctx, s.store, tid, gw, remote, time.Now()); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "record gateway activity", "error", err.Error())
	}
}

// opaStatusReport is the part of OPA's status report (UpdateRequestV1) the
// control plane keeps.
type opaStatusReport struct {
	Labels  map[string]string `json:"labels"`
	Bundles map[string]struct {
		Name                     string            `json:"name"`
		ActiveRevision           string            `json:"active_revision"`
		LastSuccessfulActivation *time.Time        `json:"last_successful_activation"`
		LastSuccessfulDownload   *time.Time        `json:"last_successful_download"`
		Code                     string            `json:"code"`
		Message                  string            `json:"message"`
		Errors                   []json.RawMessage `json:"errors"`
	} `json:"bundles"`
	DecisionLogs *struct {
		Code    string                     `json:"code"`
		Message string                     `json:"message"`
		Metrics map[string]json.RawMessage `json:"metrics"`
	} `json:"decision_logs"`
	Plugins map[string]struct {
		State   string `json:"state"`
		Message string `json:"message"`
	} `json:"plugins"`
}

// receiveStatus stores an OPA status report (one per OPA instance).
func (s *Server) receiveStatus(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	var rep opaStatusReport
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxStatusUpload))
	if err != nil {
		abort(c, jsonError(err, maxStatusUpload))
		return
	}
	if apiErr := notNull(body); apiErr != nil {
		abort(c, apiErr)
		return
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		abort(c, jsonError(err, maxStatusUpload))
		return
	}
	inst := bundles.OPAInstance{ID: rep.Labels["id"], LastSeen: time.Now().UTC(), Labels: rep.Labels, Plugins: map[string]string{}}
	if inst.ID == "" || len(inst.ID) > 128 {
		inst.ID = "unlabelled"
	}
	for name, b := range rep.Bundles {
		if b.ActiveRevision != "" {
			inst.ActiveRevision = b.ActiveRevision
			inst.LastActivation = b.LastSuccessfulActivation
		}
		if b.Code != "" || b.Message != "" {
			inst.Errors = append(inst.Errors, fmt.Sprintf("bundle %s: %s %s", name, b.Code, b.Message))
		}
		for _, e := range b.Errors {
			inst.Errors = append(inst.Errors, fmt.Sprintf("bundle %s: %s", name, strings.Trim(string(e), `"`)))
		}
	}
	if d := rep.DecisionLogs; d != nil && (d.Code != "" || d.Message != "") {
		inst.Errors = append(inst.Errors, fmt.Sprintf("decision logs: %s %s", d.Code, d.Message))
	}
	for name, p := range rep.Plugins {
		inst.Plugins[name] = p.State
	}
	var dlMetrics map[string]json.RawMessage
	if rep.DecisionLogs != nil {
		dlMetrics = rep.DecisionLogs.Metrics
	}
	inst.DecisionLogs = decisionLogMetrics(dlMetrics, inst.Plugins["decision_logs"])
	if err := bundles.PutOPAInstance(c.Request.Context(), s.store, tid, gw, inst); err != nil {
		abort(c, internalError(err))
		return
	}
	if err := bundles.PruneOPAInstances(c.Request.Context(), s.store, tid, gw); err != nil {
		s.log.WarnContext(c.Request.Context(), "prune OPA status", "error", err.Error())
	}
	c.Status(http.StatusNoContent)
}

// receiveLogs appends OPA decision log events (a JSON array, usually
// gzip-compressed) to the gateway's decision log.
func (s *Server) receiveLogs(c *gin.Context) {
	tid, gw := c.Param("tid"), c.Param("gw")
	var r io.Reader = http.MaxBytesReader(c.Writer, c.Request.Body, maxLogUpload)
	if strings.EqualFold(c.GetHeader("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r)
		if err != nil {
			abort(c, newError(http.StatusBadRequest, CodeInvalidRequest, "the body is not gzip: "+err.Error(), nil))
			return
		}
		defer zr.Close()
		r = io.LimitReader(zr, maxLogDecompressed+1)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			abort(c, jsonError(err, maxLogUpload))
			return
		}
		abort(c, newError(http.StatusBadRequest, CodeInvalidRequest, "cannot read the body: "+err.Error(), nil))
		return
	}
	if len(body) > maxLogDecompressed {
		abort(c, newError(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("decision logs exceed %d bytes decompressed", maxLogDecompressed), nil))
		return
	}
	var events []json.RawMessage
	err = json.Unmarshal(body, &events)
	if err == nil && events == nil {
		err = errors.New("null is not an array")
	}
	if err != nil {
		abort(c, newError(http.StatusBadRequest, CodeInvalidJSON, "decision logs must be a JSON array of events: "+err.Error(), nil))
		return
	}
	for i, e := range events {
		if len(e) == 0 || e[0] != '{' {
			abort(c, newError(http.StatusBadRequest, CodeInvalidJSON, fmt.Sprintf("decision log event %d is not an object", i), nil))
			return
		}
	}
	stream := bundles.DecisionLog(tid, gw)
	if err := s.store.AppendLog(c.Request.Context(), stream, events); err != nil {
		fail(c, err, "decision log", gw)
		return
	}
	s.trimDecisions(c.Request.Context(), stream, len(events))
	c.Status(http.StatusNoContent)
}
