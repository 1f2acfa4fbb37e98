package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// FollowerOptions configures a Follower.
type FollowerOptions struct {
	// URL is the gateway's bundle service: <control plane>/api/system/{tid}/gateways/{gw}/opa.
	URL        string
	TenantID   string
	GatewayID  string
	Credential string
	// KeyID and PublicKeyPEM verify bundle signatures (required).
	KeyID        string
	PublicKeyPEM string
	// CacheDir keeps the last good bundle; empty disables the cache.
	CacheDir string
	// LongPoll is the Prefer: wait=N the follower asks for (default 30 s).
	LongPoll   time.Duration
	Client     *http.Client
	Activator  *Activator
	InstanceID string
	Version    string
	Logger     *slog.Logger
	// MaxBundleBytes caps a download (default 64 MiB).
	MaxBundleBytes int64
	// DecisionLogs, when set, is reported as the decision_logs plugin
	// (state, the mode in effect, drops by reason, events sent, skipped
	// and buffered).
	DecisionLogs interface{ Status() DecisionLogStatus }
}

// Follower keeps a gateway's bundle current: it long-polls the bundle
// service with the ETag of the revision it has, verifies every bundle's
// signature with the tenant key before activating it, writes the last good
// bundle to disk and starts from that cache when the control plane is
// unreachable. It reports status to the control plane in OPA's format.
//
// It never rolls back: it keeps the highest revision it has activated (its
// high-water mark, persisted beside the cache) and refuses a verified bundle
// with a lower revision, or with the same revision and other content. When
// the control plane answers that the gateway does not exist, it removes the
// gateway's engine (every request is denied, Ready is false), deletes the
// cache and records the deletion, so a restart does not resurrect the bundle.
type Follower struct {
	opts FollowerOptions
	vc   *bundle.VerificationConfig

	// activating serialises activations, so the high-water mark check and
	// the swap are one step.
	activating sync.Mutex
	stateOnce  sync.Once
	stateErr   error

	mu          sync.Mutex
	etag        string
	revision    string
	digest      string
	activatedAt time.Time
	downloadAt  time.Time
	lastErr     string
	lastCode    string
	// reported is what the last status report the control plane took
	// said (reportKey), so a change, such as an error that cleared, is
	// reported at once.
	reported string
	// hwm is the highest revision activated (hwmSet false: none yet) and
	// hwmDigest that revision's content digest.
	hwm       int64
	hwmDigest string
	hwmSet    bool
	// deletedAt is when the control plane said the gateway was deleted
	// (nil while it is not).
	deletedAt *time.Time
}

// Errors the follower's checks end in.
var (
	// errRollback: a verified bundle older than the high-water mark, or at
	// the same revision with different content.
	errRollback = errors.New("bundle rollback refused")
	// errGatewayDeleted: the control plane answered that the gateway does
	// not exist.
	errGatewayDeleted = errors.New("the gateway was deleted on the control plane")
	// errTenantDisabled: the control plane refuses the bundle because the
	// tenant is DISABLED; the last good bundle stays enforced.
	errTenantDisabled = errors.New("the tenant is disabled on the control plane; enforcing the last good bundle")
)

// codeGatewayNotFound is the bundle service's error_code (404) for a
// gateway that does not exist, also given to a credential of a deleted
// gateway (bundleservice.CodeGatewayNotFound; the gateway never imports
// the control plane's packages).
const codeGatewayNotFound = "gateway_not_found"

// codeTenantDisabled is the bundle service's error_code (403) for the
// gateways of a DISABLED tenant (admin.CodeTenantDisabled).
const codeTenantDisabled = "tenant_disabled"

// followerState is state.json beside the cached bundle.
type followerState struct {
	// Revision and Digest are the high-water mark: the highest revision
	// activated and its content digest.
	Revision string `json:"revision,omitempty"`
	Digest   string `json:"digest,omitempty"`
	// DeletedAt is set while the control plane says the gateway is deleted.
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

// NewFollower validates the options.
func NewFollower(opts FollowerOptions) (*Follower, error) {
	switch {
	case opts.URL == "" || opts.TenantID == "" || opts.GatewayID == "":
		return nil, errors.New("follower: the control plane URL, tenant and gateway are required")
	case opts.Credential == "":
		return nil, errors.New("follower: a gateway credential is required")
	case opts.KeyID == "" || opts.PublicKeyPEM == "":
		return nil, errors.New("follower: the bundle signing key (id and public key) is required")
	case opts.Activator == nil:
		return nil, errors.New("follower: an activator is required")
	}
	if opts.LongPoll <= 0 {
		opts.LongPoll = 30 * time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBundleBytes <= 0 {
		opts.MaxBundleBytes = 64 << 20
	}
	opts.URL = strings.TrimRight(opts.URL, "/")
	return &Follower{opts: opts, vc: policies.VerificationConfig(opts.KeyID, opts.PublicKeyPEM)}, nil
}

// Revision is the active bundle revision ("" before the first activation
// and after the gateway was deleted).
func (f *Follower) Revision() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revision
}

// Deleted reports whether the control plane said the gateway was deleted
// (then nothing is enforced: every request is denied).
func (f *Follower) Deleted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deletedAt != nil
}

func (f *Follower) cacheDir() string {
	if f.opts.CacheDir == "" {
		return ""
	}
	return filepath.Join(f.opts.CacheDir, f.opts.TenantID, f.opts.GatewayID)
}

func (f *Follower) cachePath() string {
	if dir := f.cacheDir(); dir != "" {
		return filepath.Join(dir, "bundle.tar.gz")
	}
	return ""
}

func (f *Follower) statePath() string {
	if dir := f.cacheDir(); dir != "" {
		return filepath.Join(dir, "state.json")
	}
	return ""
}

// loadState reads state.json once. A missing file is an empty state (a
// first start, or a cache written before the high-water mark existed); an
// unreadable one is an error, and the cache is then not trusted.
func (f *Follower) loadState() error {
	f.stateOnce.Do(func() {
		path := f.statePath()
		if path == "" {
			return
		}
		raw, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err != nil {
			f.stateErr = fmt.Errorf("read %s: %w", path, err)
			return
		}
		var st followerState
		if err := json.Unmarshal(raw, &st); err != nil {
			f.stateErr = fmt.Errorf("read %s: %w", path, err)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if st.Revision != "" {
			rev, err := parseRevision(st.Revision)
			if err != nil {
				f.stateErr = fmt.Errorf("read %s: %w", path, err)
				return
			}
			f.hwm, f.hwmDigest, f.hwmSet = rev, st.Digest, true
		}
		f.deletedAt = st.DeletedAt
	})
	return f.stateErr
}

// state is what state.json should hold now.
func (f *Follower) state() followerState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := followerState{DeletedAt: f.deletedAt}
	if f.hwmSet {
		st.Revision, st.Digest = strconv.FormatInt(f.hwm, 10), f.hwmDigest
	}
	return st
}

// saveState writes the current state.
func (f *Follower) saveState() error { return f.writeState(f.state()) }

// writeState writes state.json atomically (nothing without a cache
// directory: the high-water mark then lives in memory only).
func (f *Follower) writeState(st followerState) error {
	path := f.statePath()
	if path == "" {
		return nil
	}
	// Never lower a mark already on disk (another process sharing the
	// cache directory may have activated a newer revision).
	if raw, err := os.ReadFile(path); err == nil {
		var disk followerState
		if json.Unmarshal(raw, &disk) == nil && disk.Revision != "" {
			dr, derr := parseRevision(disk.Revision)
			cr, cerr := parseRevision(st.Revision)
			if derr == nil && (st.Revision == "" || (cerr == nil && dr > cr)) {
				st.Revision, st.Digest = disk.Revision, disk.Digest
			}
		}
	}
	raw, _ := json.Marshal(st)
	return writeFileAtomic(path, append(raw, '\n'))
}

// LoadCache activates the cached bundle, if there is one that verifies and
// is not older than the high-water mark, and the gateway was not deleted.
func (f *Follower) LoadCache(ctx context.Context) error {
	path := f.cachePath()
	if path == "" {
		return errors.New("no cache directory")
	}
	if err := f.loadState(); err != nil {
		return fmt.Errorf("not using the cached bundle: %w", err)
	}
	if f.Deleted() {
		return fmt.Errorf("not using the cached bundle: %w", errGatewayDeleted)
	}
	// Caches written before the ETag came from the verified manifest have
	// a side file; it is never read.
	_ = os.Remove(path + ".etag")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if _, err := f.activate(ctx, raw, "disk-cache"); err != nil {
		return fmt.Errorf("cached bundle %s: %w", path, err)
	}
	if err := f.saveState(); err != nil {
		f.opts.Logger.Warn("cannot write the follower state", "error", err.Error())
	}
	return nil
}

// Run activates the disk cache if the control plane has not delivered a
// bundle yet, then follows the bundle service until ctx ends, and returns
// nil: failures are retried (and reported), never returned.
func (f *Follower) Run(ctx context.Context) error {
	if f.cachePath() != "" {
		switch err := f.LoadCache(ctx); {
		case err == nil:
			f.opts.Logger.Info("activated the cached bundle", "revision", f.Revision(), "path", f.cachePath())
		case errors.Is(err, os.ErrNotExist):
		case errors.Is(err, errGatewayDeleted):
			f.setError(err)
			f.opts.Logger.Error("the gateway was deleted on the control plane; not using the cache, every request is denied",
				"tenant", f.opts.TenantID, "gateway", f.opts.GatewayID)
		case errors.Is(err, errRollback):
			f.setError(err)
			f.opts.Logger.Error("cached bundle refused", "error", err.Error(), "path", f.cachePath())
		default:
			f.opts.Logger.Warn("cannot use the cached bundle", "error", err.Error())
		}
	}
	go f.reportLoop(ctx)
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		changed, err := f.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		f.setError(err)
		if err == nil {
			backoff = 250 * time.Millisecond
			if changed {
				f.report(ctx)
			} else {
				f.reportChange(ctx) // an error that cleared
			}
			continue
		}
		switch {
		case errors.Is(err, errGatewayDeleted):
			f.failClosed()
		case errors.Is(err, errRollback):
			f.opts.Logger.Error("bundle rollback refused; enforcing the active revision", "error", err.Error(), "revision", f.Revision())
		case errors.Is(err, errTenantDisabled):
			f.opts.Logger.Warn("the tenant is disabled on the control plane; enforcing the last good bundle", "revision", f.Revision(), "retry_in", backoff.String())
		default:
			f.opts.Logger.Warn("bundle download failed; enforcing the last good bundle", "error", err.Error(), "revision", f.Revision(), "retry_in", backoff.String())
		}
		f.report(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
	return nil
}

func (f *Follower) setError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastErr, f.lastCode = "", ""
	switch {
	case err == nil:
		return
	case errors.Is(err, errGatewayDeleted):
		f.lastCode = codeGatewayNotFound
	case errors.Is(err, errRollback):
		f.lastCode = "bundle_rollback"
	case errors.Is(err, errTenantDisabled):
		f.lastCode = codeTenantDisabled
	default:
		f.lastCode = "bundle_error"
	}
	f.lastErr = err.Error()
}

// failClosed handles the control plane's word that the gateway is gone:
// its engine goes at once (every request is denied, /readyz fails), then
// the cache is deleted and the deletion recorded, so a restart starts with
// nothing; Deleted reports true once all that is done.
func (f *Follower) failClosed() {
	f.opts.Activator.Remove(f.opts.TenantID, f.opts.GatewayID)
	f.mu.Lock()
	first := f.deletedAt == nil
	f.etag, f.revision, f.digest = "", "", ""
	f.mu.Unlock()
	if !first {
		return
	}
	f.opts.Logger.Error("the gateway was deleted on the control plane; every request is denied",
		"tenant", f.opts.TenantID, "gateway", f.opts.GatewayID)
	if path := f.cachePath(); path != "" {
		for _, p := range []string{path, path + ".etag"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				f.opts.Logger.Warn("cannot delete the bundle cache", "error", err.Error())
			}
		}
	}
	now := time.Now().UTC()
	st := f.state()
	st.DeletedAt = &now
	if err := f.writeState(st); err != nil {
		f.opts.Logger.Warn("cannot record the gateway's deletion", "error", err.Error())
	}
	f.mu.Lock()
	f.deletedAt = &now
	f.mu.Unlock()
}

// poll makes one (long-polling) request and activates what it gets. After
// an error it does not ask to wait, so the error clears (and is reported
// cleared) as soon as the control plane answers again.
func (f *Follower) poll(ctx context.Context) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, f.opts.LongPoll+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, f.opts.URL+"/bundle", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Credential)
	f.mu.Lock()
	etag, failing := f.etag, f.lastErr != ""
	f.mu.Unlock()
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if failing {
		req.Header.Set("Prefer", "modes=snapshot")
	} else {
		req.Header.Set("Prefer", fmt.Sprintf("modes=snapshot;wait=%d", int(f.opts.LongPoll/time.Second)))
	}
	res, err := f.opts.Client.Do(req)
	if err != nil {
		return false, fmt.Errorf("download bundle: %w", err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNotModified:
		return false, nil
	case http.StatusOK:
	default:
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		// Only the bundle service's own answer counts as a deletion, not
		// any 404 (a proxy, a wrong URL).
		var apiErr struct {
			Code    string `json:"error_code"`
			Message string `json:"error"`
		}
		if res.StatusCode == http.StatusNotFound && json.Unmarshal(b, &apiErr) == nil && apiErr.Code == codeGatewayNotFound {
			return false, fmt.Errorf("%w: %s", errGatewayDeleted, apiErr.Message)
		}
		if res.StatusCode == http.StatusForbidden && json.Unmarshal(b, &apiErr) == nil && apiErr.Code == codeTenantDisabled {
			return false, fmt.Errorf("%w (%s)", errTenantDisabled, apiErr.Message)
		}
		return false, fmt.Errorf("download bundle: %s: %s", res.Status, bytes.TrimSpace(b))
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, f.opts.MaxBundleBytes+1))
	if err != nil {
		return false, fmt.Errorf("download bundle: %w", err)
	}
	if int64(len(raw)) > f.opts.MaxBundleBytes {
		return false, fmt.Errorf("download bundle: larger than %d bytes", f.opts.MaxBundleBytes)
	}
	f.mu.Lock()
	f.downloadAt = time.Now().UTC()
	f.mu.Unlock()
	changed, err := f.activate(ctx, raw, "control-plane")
	if err != nil || !changed {
		return false, err
	}
	// The cache first, then the high-water mark: a crash between the two
	// leaves a cache newer than the mark, never older.
	if err := f.writeCache(raw); err != nil {
		f.opts.Logger.Warn("cannot write the bundle cache", "error", err.Error())
	}
	if err := f.saveState(); err != nil {
		f.opts.Logger.Warn("cannot write the follower state", "error", err.Error())
	}
	return true, nil
}

// activate verifies the signature, the gateway and the revision against the
// high-water mark, builds the engine and swaps it in. It reports false
// (and does nothing) when the bundle is the one already active.
func (f *Follower) activate(ctx context.Context, raw []byte, source string) (bool, error) {
	b, err := policies.ReadVerifiedBundle(raw, f.vc, "gatehouse")
	if err != nil {
		return false, fmt.Errorf("verify bundle: %w", err)
	}
	if t, g := b.Manifest.Metadata["tenant"], b.Manifest.Metadata["gateway"]; t != f.opts.TenantID || g != f.opts.GatewayID {
		return false, fmt.Errorf("verify bundle: it is for %v/%v, not %s", t, g, model.GatewayRef{TenantID: f.opts.TenantID, GatewayID: f.opts.GatewayID})
	}
	rev, err := parseRevision(b.Manifest.Revision)
	if err != nil {
		return false, fmt.Errorf("verify bundle: %w", err)
	}
	digest := b.Digest
	f.activating.Lock()
	defer f.activating.Unlock()
	f.mu.Lock()
	active := f.revision == b.Manifest.Revision && f.digest == digest
	switch {
	case !f.hwmSet || active:
	case rev < f.hwm:
		err = fmt.Errorf("%w: revision %d is older than revision %d, the newest this authorizer has activated", errRollback, rev, f.hwm)
	case rev == f.hwm && digest != f.hwmDigest:
		err = fmt.Errorf("%w: this revision %d has other content than the revision %d activated before", errRollback, rev, f.hwm)
	}
	f.mu.Unlock()
	if err != nil || active {
		return false, err
	}
	// The engine keeps only what its policies read of the data; nothing
	// else holds the parsed bundle once it is built.
	src := &Source{TenantID: f.opts.TenantID, GatewayID: f.opts.GatewayID, Revision: b.Manifest.Revision,
		Modules: b.Modules, Data: b.Data}
	b.Modules, b.Data = nil, nil
	if _, err := f.opts.Activator.activate(ctx, src, source, false); err != nil {
		return false, fmt.Errorf("activate bundle revision %s: %w", b.Manifest.Revision, err)
	}
	// Reading and activating a bundle leaves garbage several times the
	// engine's size (the archive's files, the parsed data, the replaced
	// engine), which the runtime would otherwise hand back to the system
	// only slowly: return it now, once per activation.
	src = nil
	debug.FreeOSMemory()
	f.mu.Lock()
	f.etag, f.revision, f.digest, f.activatedAt = etagOf(b.Manifest.Revision), b.Manifest.Revision, digest, time.Now().UTC()
	if !f.hwmSet || rev > f.hwm {
		f.hwm, f.hwmDigest, f.hwmSet = rev, digest, true
	}
	undeleted := f.deletedAt != nil
	f.deletedAt = nil
	f.mu.Unlock()
	if undeleted {
		f.opts.Logger.Warn("the control plane serves the gateway again", "tenant", f.opts.TenantID, "gateway", f.opts.GatewayID)
	}
	f.opts.Logger.Info("bundle activated", "revision", b.Manifest.Revision, "source", source)
	return true, nil
}

// etagOf is the bundle service's ETag of a revision. The follower derives
// it from the verified manifest, so what it asks for is what it enforces.
func etagOf(revision string) string { return `"` + revision + `"` }

// parseRevision reads a manifest revision: a store revision number in
// canonical decimal form; anything else is refused.
func parseRevision(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("manifest revision %q is not a revision number", s)
	}
	return n, nil
}

// writeCache stores the bundle atomically and drops the legacy ETag side
// file.
func (f *Follower) writeCache(raw []byte) error {
	path := f.cachePath()
	if path == "" {
		return nil
	}
	if err := writeFileAtomic(path, raw); err != nil {
		return err
	}
	if err := os.Remove(path + ".etag"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writeFileAtomic writes a file through a temporary file, fsync and rename,
// then syncs the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// reportLoop reports every 30 seconds, and within reportCheckInterval of
// a change the follower does not hear of itself (a token issuer's keys
// becoming unavailable, or available again).
func (f *Follower) reportLoop(ctx context.Context) {
	full := time.NewTicker(30 * time.Second)
	defer full.Stop()
	check := time.NewTicker(reportCheckInterval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			f.report(ctx)
		case <-check.C:
			f.reportChange(ctx)
		}
	}
}

// reportCheckInterval is how often reportLoop looks for a change to report.
const reportCheckInterval = 2 * time.Second

// reportKey is what a status report says that matters to its reader: the
// active revision and the error. Called with mu held.
func (f *Follower) reportKey() string {
	key := f.revision + "\x00" + f.lastCode + "\x00" + f.lastErr
	for _, p := range f.keyProblems() {
		key += "\x00" + p.IssuerID + "\x00" + p.Error
	}
	if f.opts.DecisionLogs != nil {
		st := f.opts.DecisionLogs.Status()
		mode, source := f.decisionLogMode(st)
		key += "\x00" + st.State + "\x00" + strconv.FormatUint(st.DroppedTotal(), 10) + "\x00" + mode + "\x00" + source
	}
	return key
}

// Where the decision log mode in effect comes from, in the status report
// (decision_logs.mode_source).
const (
	// modeFromGateway: the gateway's decision_logs, from the active bundle.
	modeFromGateway = "gateway"
	// modeFromAuthorizer: the authorizer's own setting (--decision-logs),
	// overriding the gateway's.
	modeFromAuthorizer = "authorizer"
)

// decisionLogMode is the decision log mode in effect for the gateway and
// where it comes from: the logger's override, else the active bundle's
// setting; "" when neither is there (no bundle is active).
func (f *Follower) decisionLogMode(st DecisionLogStatus) (mode, source string) {
	if st.Override != nil {
		return st.Override.String(), modeFromAuthorizer
	}
	if f.opts.Activator.Engines != nil {
		if e := f.opts.Activator.Engines.Get(f.opts.TenantID, f.opts.GatewayID); e != nil {
			return e.Config().Gateway.DecisionLogMode.String(), modeFromGateway
		}
	}
	return "", ""
}

// decisionLogReport renders the decision log state as OPA reports it:
// the decision_logs status (code, message, http_code, metrics with OPA's
// counter_/gauge_ names, and Gatehouse's mode and mode_source when the
// mode is known) and the decision_logs plugin's state.
func decisionLogReport(st DecisionLogStatus, mode, source string) (status map[string]any, plugin map[string]string) {
	metrics := map[string]any{
		"counter_decision_logs_events":        st.Events,
		"counter_decision_logs_sent":          st.Sent,
		"counter_decision_logs_dropped":       st.DroppedTotal(),
		"counter_decision_logs_skipped":       st.SkippedTotal(),
		"gauge_decision_logs_buffered_events": st.BufferedEvents,
		"gauge_decision_logs_buffered_bytes":  st.BufferedBytes,
		"gauge_decision_logs_spilled_bytes":   st.SpilledBytes,
	}
	for reason, n := range st.Dropped {
		metrics["counter_decision_logs_dropped_"+reason] = n
	}
	for kind, n := range st.Skipped {
		metrics["counter_decision_logs_skipped_"+kind] = n
	}
	status = map[string]any{"metrics": metrics}
	if mode != "" {
		status["mode"], status["mode_source"] = mode, source
	}
	plugin = map[string]string{"state": st.State}
	if st.State != "OK" {
		status["code"], status["message"] = "decision_log_error", st.Message
		plugin["message"] = st.Message
		if st.HTTPCode != 0 {
			status["http_code"] = st.HTTPCode
		}
	}
	return status, plugin
}

// reportChange reports unless the control plane already has a report that
// says what one would say now (a report that did not get through does not
// count).
func (f *Follower) reportChange(ctx context.Context) {
	f.mu.Lock()
	same := f.reported == f.reportKey()
	f.mu.Unlock()
	if !same {
		f.report(ctx)
	}
}

// report posts an OPA-format status report (UpdateRequestV1).
func (f *Follower) report(ctx context.Context) {
	f.mu.Lock()
	key := f.reportKey()
	st := map[string]any{"name": "gatehouse", "active_revision": f.revision, "last_request": time.Now().UTC()}
	if !f.activatedAt.IsZero() {
		st["last_successful_activation"] = f.activatedAt
	}
	if !f.downloadAt.IsZero() {
		st["last_successful_download"] = f.downloadAt
	}
	state := "OK"
	if f.revision == "" {
		state = "NOT_READY"
	}
	if f.lastErr != "" {
		st["code"], st["message"] = f.lastCode, f.lastErr
		state = "ERROR"
	}
	f.mu.Unlock()
	rep := map[string]any{
		"labels":  map[string]string{"id": f.opts.InstanceID, "app": "gatehouse-authorizer", "version": f.opts.Version},
		"bundles": map[string]any{"gatehouse": st},
	}
	plugins := map[string]any{"bundle": map[string]string{"state": state}}
	if f.opts.DecisionLogs != nil {
		st := f.opts.DecisionLogs.Status()
		mode, source := f.decisionLogMode(st)
		rep["decision_logs"], plugins["decision_logs"] = decisionLogReport(st, mode, source)
	}
	if problems := f.keyProblems(); len(problems) > 0 {
		issuers := map[string]any{}
		for _, p := range problems {
			is := map[string]any{"code": "keys_unavailable", "message": p.Error, "has_keys": p.HasKeys}
			if !p.Since.IsZero() {
				is["since"] = p.Since
			}
			issuers[p.IssuerID] = is
		}
		rep["token_issuers"] = issuers
	}
	rep["plugins"] = plugins
	body, _ := json.Marshal(rep)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, f.opts.URL+"/status", bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Credential)
	req.Header.Set("Content-Type", "application/json")
	res, err := f.opts.Client.Do(req)
	if err != nil {
		f.opts.Logger.Debug("status report failed", "error", err.Error())
		return
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		f.opts.Logger.Debug("status report refused", "status", res.Status)
		return
	}
	f.mu.Lock()
	f.reported = key
	f.mu.Unlock()
}

// keyProblems are the active engine's token issuers whose keys cannot be
// had: the status report carries them (token_issuers, a Gatehouse
// addition to OPA's report), so the gateway's status shows them.
func (f *Follower) keyProblems() []token.KeyProblem {
	if f.opts.Activator == nil || f.opts.Activator.Engines == nil {
		return nil
	}
	if e := f.opts.Activator.Engines.Get(f.opts.TenantID, f.opts.GatewayID); e != nil {
		return e.KeyProblems()
	}
	return nil
}
